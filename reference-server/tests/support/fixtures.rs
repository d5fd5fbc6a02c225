//! The fixtures of `fixtures/<protocol>/`, read the same way by every codec test.

use std::path::PathBuf;

pub fn dir(protocol: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(protocol)
}

/// `fixtures/<protocol>/wire/<name>.json`.
pub fn wire(protocol: &str, name: &str) -> String {
    let path = dir(protocol).join("wire").join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `fixtures/<protocol>/malformed/*.txt`, as (file name, frame text), sorted by name.
pub fn malformed(protocol: &str) -> Vec<(String, String)> {
    let dir = dir(protocol).join("malformed");
    let mut frames: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("a readable fixture");
            (name, text)
        })
        .collect();
    frames.sort();
    frames
}

//! Known failures of one implementation: `<case id> <reason>` per line, `#` for comments.
//! A listed case that fails is reported as an expected failure; one that passes is stale.

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    known_failures: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExpectationsError {
    #[error("cannot read the expectations file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: a line needs a case id and a reason")]
    NoReason { path: String, line: usize },
}

impl Expectations {
    pub fn load(path: &Path) -> Result<Self, ExpectationsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExpectationsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ExpectationsError> {
        let mut known_failures = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, reason) =
                line.split_once(char::is_whitespace)
                    .ok_or(ExpectationsError::NoReason {
                        path: path.to_owned(),
                        line: index + 1,
                    })?;
            known_failures.insert(id.to_owned(), reason.trim().to_owned());
        }
        Ok(Self { known_failures })
    }

    pub fn reason(&self, case_id: &str) -> Option<&str> {
        self.known_failures.get(case_id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_a_case_and_a_reason() {
        let e =
            Expectations::parse("# known\nnodemgr/a/b  echoes a fresh id\n", "x").expect("parses");
        assert_eq!(e.reason("nodemgr/a/b"), Some("echoes a fresh id"));
        assert_eq!(e.reason("nodemgr/a/c"), None);
    }

    #[test]
    fn a_line_without_reason_is_an_error() {
        assert!(matches!(
            Expectations::parse("nodemgr/a/b\n", "x"),
            Err(ExpectationsError::NoReason { line: 1, .. })
        ));
    }
}

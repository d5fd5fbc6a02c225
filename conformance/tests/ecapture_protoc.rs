//! Cross-check with an independent decoder: frames captured from the reference server are
//! decoded by Debian's `protoc --decode=event.LogEntry` and by the suite, and the two must
//! agree field by field. protoc prints the text format: `name: value` lines, `name {` blocks,
//! strings and bytes C-escaped.

use conformance::client::{Frame, StreamClient, Transcript};
use conformance::wire::ecapture::{decode, LogEntry, Payload};
use reference_server::externals::{find_program, skip_or_fail};
use reference_server::protocol::ecapture::records;
use reference_server::protocol::ecapture::source::SourceConfig;
use reference_server::server::start_ecapture;
use reference_server::transport::ecapture::EcaptureConfig;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Frames checked: the heartbeat, the start-up logs and every sample event at least once.
const FRAMES: usize = 24;

type Fields = BTreeMap<String, Vec<u8>>;

#[test]
fn protoc_decodes_every_frame_as_the_suite_does() {
    let Some(protoc) = find_program("protoc") else {
        skip_or_fail("protoc (Debian package protobuf-compiler) is not installed");
        return;
    };
    let frames = capture_frames();
    assert!(frames.len() >= FRAMES, "only {} frames", frames.len());
    for bytes in &frames {
        let ours = decode(bytes).expect("the suite decodes the reference's frames");
        let theirs = protoc_decode(&protoc, bytes);
        assert_eq!(
            theirs,
            fields_of(&ours.entry),
            "frame {}",
            hex::encode(bytes)
        );
    }
}

fn capture_frames() -> Vec<Vec<u8>> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let config = EcaptureConfig {
            source: SourceConfig::Replay {
                events: records::parse_lines(records::SAMPLE).expect("sample"),
                rate: 200.0,
                repeat: true,
            },
            ..EcaptureConfig::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = start_ecapture(listener, config).await.expect("server");
        let wait = Duration::from_secs(5);
        let transcript = Transcript::default();
        let mut client = StreamClient::connect("c", &server.ws_url(), &transcript, wait)
            .await
            .expect("connects");
        let mut frames = Vec::new();
        while frames.len() < FRAMES {
            match client.next_within(wait).await {
                Frame::Binary(bytes) => frames.push(bytes.to_vec()),
                other => panic!("expected a binary frame, got {}", other.describe()),
            }
        }
        frames
    })
}

fn protoc_decode(protoc: &Path, bytes: &[u8]) -> Fields {
    let schema_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/ecapture");
    let mut child = Command::new(protoc)
        .arg("--decode=event.LogEntry")
        .arg(format!("-I{schema_dir}"))
        .arg(format!("{schema_dir}/ecaptureq.proto"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("protoc starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("protoc reads the frame");
    let output = child.wait_with_output().expect("protoc ends");
    assert!(
        output.status.success(),
        "protoc refused {}",
        hex::encode(bytes)
    );
    parse_text_format(&String::from_utf8_lossy(&output.stdout))
}

/// `a: 1` / `b {` / `}` lines into `path → value`, strings unescaped to bytes.
fn parse_text_format(text: &str) -> Fields {
    let mut fields = Fields::new();
    let mut path: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "}" {
            path.pop();
        } else if let Some(name) = line.strip_suffix(" {") {
            path.push(name);
            fields.insert(path.join("."), b"{".to_vec());
        } else if let Some((name, value)) = line.split_once(": ") {
            let key = path
                .iter()
                .copied()
                .chain([name])
                .collect::<Vec<_>>()
                .join(".");
            fields.insert(key, unescape(value));
        }
    }
    fields
}

/// A C-escaped, quoted string (protoc's `\ooo`, `\n`, `\"`, ...) to its bytes; other values
/// (numbers, enum names) as they are.
fn unescape(value: &str) -> Vec<u8> {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.as_bytes().to_vec();
    };
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match bytes.get(i + 1) {
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(d @ b'0'..=b'7') => {
                let digits = &inner[i + 1..(i + 4).min(inner.len())];
                let len = digits
                    .bytes()
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .count();
                let octal = u8::from_str_radix(&digits[..len], 8).unwrap_or(*d);
                (octal, 1 + len)
            }
            Some(other) => (*other, 2),
            None => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// The fields protoc prints for `entry`: those not at their default.
fn fields_of(entry: &LogEntry) -> Fields {
    let mut fields = Fields::new();
    let mut put = |key: &str, value: Vec<u8>| {
        fields.insert(key.to_owned(), value);
    };
    let names = ["", "LOG_TYPE_PROCESS_LOG", "LOG_TYPE_EVENT"];
    if let Some(name) = usize::try_from(entry.log_type)
        .ok()
        .and_then(|i| names.get(i))
    {
        if !name.is_empty() {
            put("log_type", name.as_bytes().to_vec());
        }
    }
    let number = |n: i64| n.to_string().into_bytes();
    match &entry.payload {
        Some(Payload::HeartbeatPayload(b)) => {
            put("heartbeat_payload", b"{".to_vec());
            nonzero(&mut put, "heartbeat_payload.timestamp", b.timestamp, number);
            nonzero(&mut put, "heartbeat_payload.count", b.count, number);
            nonempty(&mut put, "heartbeat_payload.message", b.message.as_bytes());
        }
        Some(Payload::RunLog(line)) => put("run_log", line.as_bytes().to_vec()),
        Some(Payload::EventPayload(e)) => {
            let p = "event_payload";
            put(p, b"{".to_vec());
            nonzero(&mut put, &format!("{p}.timestamp"), e.timestamp, number);
            nonempty(&mut put, &format!("{p}.uuid"), e.uuid.as_bytes());
            nonempty(&mut put, &format!("{p}.src_ip"), e.src_ip.as_bytes());
            nonzero(
                &mut put,
                &format!("{p}.src_port"),
                e.src_port.into(),
                number,
            );
            nonempty(&mut put, &format!("{p}.dst_ip"), e.dst_ip.as_bytes());
            nonzero(
                &mut put,
                &format!("{p}.dst_port"),
                e.dst_port.into(),
                number,
            );
            nonzero(&mut put, &format!("{p}.pid"), e.pid, number);
            nonempty(&mut put, &format!("{p}.pname"), e.pname.as_bytes());
            nonzero(&mut put, &format!("{p}.type"), e.r#type.into(), number);
            nonzero(&mut put, &format!("{p}.length"), e.length.into(), number);
            nonempty(&mut put, &format!("{p}.payload"), &e.payload);
        }
        None => {}
    }
    fields
}

fn nonzero(put: &mut impl FnMut(&str, Vec<u8>), key: &str, n: i64, show: impl Fn(i64) -> Vec<u8>) {
    if n != 0 {
        put(key, show(n));
    }
}

fn nonempty(put: &mut impl FnMut(&str, Vec<u8>), key: &str, bytes: &[u8]) {
    if !bytes.is_empty() {
        put(key, bytes.to_vec());
    }
}

#[test]
fn the_unescaper_reads_protocs_escapes() {
    assert_eq!(unescape(r#""\346\227\245""#), "日".as_bytes());
    assert_eq!(unescape(r#""\336\000a\"""#), b"\xde\x00a\"");
    assert_eq!(unescape(r#""a\r\nb\\""#), b"a\r\nb\\");
    assert_eq!(unescape("LOG_TYPE_EVENT"), b"LOG_TYPE_EVENT");
}

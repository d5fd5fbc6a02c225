//! The JSON Lines form of an event: the format of replay files (`--ecapture-events`) and of
//! the collector's `--jsonl` output. One object per line:
//!
//! ```json
//! {"timestamp":1732270000123456789,"uuid":"4242_4243_curl_5_0","src_ip":"127.0.0.1",
//!  "src_port":50312,"dst_ip":"127.0.0.1","dst_port":8080,"pid":4242,"pname":"curl",
//!  "type":1,"length":18,"payload_text":"GET / HTTP/1.1\r\n\r\n"}
//! ```
//!
//! The payload is `payload_text` (UTF-8) or `payload_hex` (any bytes), exactly one of them.
//! `length` is optional on input and defaults to the payload's length.

use super::pb::Event;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One event as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Unix nanoseconds.
    pub timestamp: i64,
    pub uuid: String,
    pub src_ip: String,
    pub src_port: u32,
    pub dst_ip: String,
    pub dst_port: u32,
    pub pid: i64,
    pub pname: String,
    #[serde(rename = "type")]
    pub kind: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    #[serde(flatten)]
    pub payload: PayloadField,
}

/// The payload, as text when it is UTF-8 and as hex otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadField {
    #[serde(rename = "payload_text")]
    Text(String),
    #[serde(rename = "payload_hex")]
    Hex(String),
}

impl PayloadField {
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::Text(text.to_owned()),
            Err(_) => Self::Hex(hex::encode(bytes)),
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, RecordError> {
        match self {
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
            Self::Hex(digits) => hex::decode(digits).map_err(|e| RecordError::Hex(e.to_string())),
        }
    }
}

/// Why a line is not an event record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("payload_hex is not hex: {0}")]
    Hex(String),
    #[error("the payload is {0} bytes; Event.length is a uint32")]
    TooLong(usize),
}

impl EventRecord {
    pub fn from_event(event: &Event) -> Self {
        Self {
            timestamp: event.timestamp,
            uuid: event.uuid.clone(),
            src_ip: event.src_ip.clone(),
            src_port: event.src_port,
            dst_ip: event.dst_ip.clone(),
            dst_port: event.dst_port,
            pid: event.pid,
            pname: event.pname.clone(),
            kind: event.r#type,
            length: Some(event.length),
            payload: PayloadField::of(&event.payload),
        }
    }

    pub fn to_event(&self) -> Result<Event, RecordError> {
        let payload = self.payload.bytes()?;
        let actual =
            u32::try_from(payload.len()).map_err(|_| RecordError::TooLong(payload.len()))?;
        Ok(Event {
            timestamp: self.timestamp,
            uuid: self.uuid.clone(),
            src_ip: self.src_ip.clone(),
            src_port: self.src_port,
            dst_ip: self.dst_ip.clone(),
            dst_port: self.dst_port,
            pid: self.pid,
            pname: self.pname.clone(),
            r#type: self.kind,
            length: self.length.unwrap_or(actual),
            payload: Bytes::from(payload),
        })
    }
}

/// Parses a replay file: one record per non-blank line; `#` starts a comment line.
pub fn parse_lines(text: &str) -> Result<Vec<Event>, RecordError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(index, line)| parse_line(index + 1, line))
        .collect()
}

fn parse_line(line: usize, text: &str) -> Result<Event, RecordError> {
    let record: EventRecord = serde_json::from_str(text).map_err(|e| RecordError::Line {
        line,
        reason: e.to_string(),
    })?;
    record.to_event().map_err(|e| RecordError::Line {
        line,
        reason: e.to_string(),
    })
}

/// The sample replay file, built into the server so that it has events with no arguments.
pub const SAMPLE: &str = include_str!("../../../../fixtures/ecapture/events.jsonl");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_sample_parses() {
        let events = parse_lines(SAMPLE).expect("the sample parses");
        assert!(events.len() >= 8);
        assert!(events.iter().all(|e| e.length as usize == e.payload.len()));
    }

    #[test]
    fn binary_payloads_round_trip_through_hex_and_text_through_text() {
        for payload in [
            &b"GET / HTTP/1.1\r\n"[..],
            &[0, 159, 146, 150][..],
            "日志".as_bytes(),
        ] {
            let event = Event {
                length: payload.len() as u32,
                payload: Bytes::copy_from_slice(payload),
                ..Event::default()
            };
            let record = EventRecord::from_event(&event);
            let line = serde_json::to_string(&record).expect("serializes");
            let back: EventRecord = serde_json::from_str(&line).expect("parses");
            assert_eq!(back.to_event().expect("valid"), event);
        }
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let error = parse_lines("# comment\n{\"nope\":1}\n").expect_err("invalid");
        assert!(matches!(error, RecordError::Line { line: 2, .. }));
    }
}

//! The eCapture wire format, read by the suite's own copy of the types (compiled from
//! `fixtures/ecapture/ecaptureq.proto` by this crate's build script) and by a small scanner of
//! the top-level fields that owes nothing to the generated code.

#[allow(
    clippy::doc_markdown,
    clippy::derive_partial_eq_without_eq,
    reason = "generated code"
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/event.rs"));
}

pub use pb::log_entry::Payload;
pub use pb::{Event, Heartbeat, LogEntry};
use prost::Message as _;

/// The `LogType` values of the document.
pub const LOG_TYPE_HEARTBEAT: i32 = 0;
pub const LOG_TYPE_PROCESS_LOG: i32 = 1;
pub const LOG_TYPE_EVENT: i32 = 2;
/// `LogEntry`'s field numbers: log_type and the three members of the oneof.
const LOG_ENTRY_FIELDS: [u32; 4] = [1, 2, 3, 4];

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub entry: LogEntry,
    /// The top-level field numbers, in wire order.
    pub fields: Vec<u32>,
}

/// What a `LogEntry` carries, by its oneof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Heartbeat,
    ProcessLog,
    Event,
    /// No member of the oneof is set.
    Empty,
}

impl Kind {
    /// The `log_type` the document pairs with this payload.
    pub fn log_type(self) -> Option<i32> {
        match self {
            Self::Heartbeat => Some(LOG_TYPE_HEARTBEAT),
            Self::ProcessLog => Some(LOG_TYPE_PROCESS_LOG),
            Self::Event => Some(LOG_TYPE_EVENT),
            Self::Empty => None,
        }
    }
}

/// Decodes one frame as a `LogEntry`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let entry = LogEntry::decode(bytes).map_err(|e| format!("not a LogEntry: {e}"))?;
    let fields = top_level_fields(bytes)?;
    Ok(Decoded { entry, fields })
}

pub fn encode(entry: &LogEntry) -> Vec<u8> {
    entry.encode_to_vec()
}

impl Decoded {
    pub fn kind(&self) -> Kind {
        match &self.entry.payload {
            Some(Payload::HeartbeatPayload(_)) => Kind::Heartbeat,
            Some(Payload::RunLog(_)) => Kind::ProcessLog,
            Some(Payload::EventPayload(_)) => Kind::Event,
            None => Kind::Empty,
        }
    }

    /// `log_type` as decoded: an absent field reads as 0, HEARTBEAT.
    pub fn log_type(&self) -> i32 {
        self.entry.log_type
    }

    /// Field numbers the schema's `LogEntry` does not have.
    pub fn unknown_fields(&self) -> Vec<u32> {
        self.fields
            .iter()
            .copied()
            .filter(|f| !LOG_ENTRY_FIELDS.contains(f))
            .collect()
    }

    pub fn heartbeat(&self) -> Option<&Heartbeat> {
        match &self.entry.payload {
            Some(Payload::HeartbeatPayload(beat)) => Some(beat),
            _ => None,
        }
    }

    pub fn event(&self) -> Option<&Event> {
        match &self.entry.payload {
            Some(Payload::EventPayload(event)) => Some(event),
            _ => None,
        }
    }

    pub fn run_log(&self) -> Option<&str> {
        match &self.entry.payload {
            Some(Payload::RunLog(line)) => Some(line),
            _ => None,
        }
    }

    /// One short line for transcripts and failures.
    pub fn describe(&self) -> String {
        let log_type = self.log_type();
        match &self.entry.payload {
            Some(Payload::HeartbeatPayload(b)) => format!(
                "heartbeat log_type={log_type} count={} timestamp={} message={:?}",
                b.count, b.timestamp, b.message
            ),
            Some(Payload::RunLog(line)) => format!(
                "process log log_type={log_type} {:?}",
                crate::check::truncate(line, 160)
            ),
            Some(Payload::EventPayload(e)) => describe_event(log_type, e),
            None => format!("LogEntry with no payload, log_type={log_type}"),
        }
    }
}

fn describe_event(log_type: i32, e: &Event) -> String {
    format!(
        "event log_type={log_type} type={} uuid={} {}:{} -> {}:{} pid={} pname={} length={} payload={} bytes timestamp={}",
        e.r#type, e.uuid, e.src_ip, e.src_port, e.dst_ip, e.dst_port, e.pid, e.pname, e.length,
        e.payload.len(), e.timestamp
    )
}

/// A frame described for a transcript: decoded when it decodes.
pub fn describe_frame(bytes: &[u8]) -> String {
    match decode(bytes) {
        Ok(decoded) => decoded.describe(),
        Err(error) => format!("{} bytes that do not decode ({error})", bytes.len()),
    }
}

/// The field numbers of the top level of a protobuf message, read straight off the bytes.
pub fn top_level_fields(mut bytes: &[u8]) -> Result<Vec<u32>, String> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let skip = match key & 7 {
            0 => read_varint(&mut bytes).map(|_| 0)?,
            1 => 8,
            2 => usize::try_from(read_varint(&mut bytes)?).map_err(|_| "length out of range")?,
            5 => 4,
            other => return Err(format!("wire type {other} at the top level")),
        };
        bytes = bytes
            .get(skip..)
            .ok_or_else(|| format!("field {number} runs past the end of the frame"))?;
        fields.push(number);
    }
    Ok(fields)
}

fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("a varint runs past the end")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanner_sees_the_fields_prost_wrote() {
        let entry = LogEntry {
            log_type: LOG_TYPE_PROCESS_LOG,
            payload: Some(Payload::RunLog("x".to_owned())),
        };
        let bytes = encode(&entry);
        assert_eq!(top_level_fields(&bytes), Ok(vec![1, 4]));
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded.kind(), Kind::ProcessLog);
        assert!(decoded.unknown_fields().is_empty());
    }

    #[test]
    fn a_heartbeat_has_no_log_type_on_the_wire() {
        let entry = LogEntry {
            log_type: LOG_TYPE_HEARTBEAT,
            payload: Some(Payload::HeartbeatPayload(Heartbeat::default())),
        };
        assert_eq!(top_level_fields(&encode(&entry)), Ok(vec![3]));
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let entry = LogEntry {
            log_type: LOG_TYPE_PROCESS_LOG,
            payload: Some(Payload::RunLog("some text".to_owned())),
        };
        let bytes = encode(&entry);
        assert!(decode(&bytes[..bytes.len() - 2]).is_err());
    }
}

//! Builds `LogEntry` frames and encodes them: one serialized `LogEntry` per binary frame, with
//! no length prefix. This is the one place where faults bend the wire format.

use super::pb::{log_entry::Payload, Event, Heartbeat, LogEntry, LogType};
use crate::faults::{Fault, Faults};
use bytes::Bytes;
use prost::Message as _;

/// One frame as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Binary(Bytes),
    /// Only under the `ecapture/text-heartbeats` fault.
    Text(String),
}

impl Frame {
    pub fn len(&self) -> usize {
        match self {
            Self::Binary(bytes) => bytes.len(),
            Self::Text(text) => text.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The heartbeat eCapture sends: `{timestamp, count, message: "heartbeat:<count>"}`. Its
/// `log_type` is HEARTBEAT, enum value 0, so it is absent on the wire.
pub fn heartbeat(unix_seconds: i64, count: i64) -> LogEntry {
    LogEntry {
        log_type: LogType::Heartbeat.into(),
        payload: Some(Payload::HeartbeatPayload(Heartbeat {
            timestamp: unix_seconds,
            count,
            message: format!("heartbeat:{count}"),
        })),
    }
}

pub fn run_log(line: &str) -> LogEntry {
    LogEntry {
        log_type: LogType::ProcessLog.into(),
        payload: Some(Payload::RunLog(line.to_owned())),
    }
}

pub fn event(event: Event) -> LogEntry {
    LogEntry {
        log_type: LogType::Event.into(),
        payload: Some(Payload::EventPayload(event)),
    }
}

/// Encodes entries, applying the server's faults.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    faults: Faults,
}

impl Encoder {
    pub fn new(faults: Faults) -> Self {
        Self { faults }
    }

    pub fn encode(&self, mut entry: LogEntry) -> Frame {
        self.bend_fields(&mut entry);
        if self.faults.has(Fault::EcaptureTextHeartbeats) {
            if let Some(Payload::HeartbeatPayload(beat)) = &entry.payload {
                return Frame::Text(heartbeat_json(beat));
            }
        }
        let mut bytes = entry.encode_to_vec();
        self.bend_bytes(&entry, &mut bytes);
        Frame::Binary(bytes.into())
    }

    fn bend_fields(&self, entry: &mut LogEntry) {
        let has = |fault| self.faults.has(fault);
        match &mut entry.payload {
            Some(Payload::EventPayload(event)) => {
                if has(Fault::EcaptureLogTypeMismatch) {
                    entry.log_type = LogType::ProcessLog.into();
                }
                self.bend_event(event);
            }
            Some(Payload::HeartbeatPayload(beat)) => {
                if has(Fault::EcaptureHeartbeatMillis) {
                    beat.timestamp *= 1000;
                }
                if has(Fault::EcaptureHeartbeatMessageVersion) {
                    beat.message = "ecapture reference v1".to_owned();
                }
                if has(Fault::EcapturePayloadMissing) {
                    entry.payload = None;
                }
            }
            Some(Payload::RunLog(_)) | None => {}
        }
    }

    fn bend_event(&self, event: &mut Event) {
        let has = |fault| self.faults.has(fault);
        if has(Fault::EcaptureWrongLength) {
            event.length = event.length.wrapping_add(1);
        }
        if has(Fault::EcapturePortOverflow) {
            event.src_port += 65_536;
        }
        if has(Fault::EcaptureBadIp) {
            event.src_ip = format!("{}:{}", event.src_ip, event.src_port);
        }
        if has(Fault::EcaptureEventSeconds) {
            event.timestamp /= 1_000_000_000;
        }
        if has(Fault::EcaptureOddUuids) {
            event.uuid = uuid::Uuid::new_v4().to_string();
        }
        if has(Fault::EcaptureUnknownEventType) {
            event.r#type = 42;
        }
    }

    fn bend_bytes(&self, entry: &LogEntry, bytes: &mut Vec<u8>) {
        let is_event = matches!(entry.payload, Some(Payload::EventPayload(_)));
        if is_event && self.faults.has(Fault::EcaptureTruncatedEvents) {
            bytes.truncate(bytes.len().saturating_sub(3));
        }
        if self.faults.has(Fault::EcaptureUnknownField) {
            // Field 15, varint 1: a field the schema does not have.
            bytes.extend_from_slice(&[0x78, 0x01]);
        }
    }
}

fn heartbeat_json(beat: &Heartbeat) -> String {
    serde_json::json!({
        "timestamp": beat.timestamp,
        "count": beat.count,
        "message": beat.message,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_leaves_log_type_off_the_wire() {
        let Frame::Binary(bytes) = Encoder::default().encode(heartbeat(1_700_000_000, 0)) else {
            panic!("a binary frame");
        };
        // The first byte is the tag of field 3 (heartbeat_payload), not of field 1.
        assert_eq!(bytes[0], (3 << 3) | 2);
        let back = LogEntry::decode(bytes).expect("decodes");
        assert_eq!(back.log_type, 0);
        assert_eq!(back, heartbeat(1_700_000_000, 0));
    }

    #[test]
    fn the_heartbeat_message_names_its_count() {
        let Some(Payload::HeartbeatPayload(beat)) = heartbeat(5, 7).payload else {
            panic!("a heartbeat");
        };
        assert_eq!(beat.message, "heartbeat:7");
    }
}

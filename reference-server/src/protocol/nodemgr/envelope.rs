//! The unified envelope `{type, id, timestamp, data}` (seed 001 §消息格式).

use super::error::DecodeError;
use super::messages::{Data, NodeMessage};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// An outgoing message, ready to encode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub data: Payload,
}

/// The `data` of an outgoing message. Most are built as a [`Value`]; an acknowledgement, the
/// bulk of what the core sends (one per heartbeat), is typed, so that answering a heartbeat
/// builds no map (docs/performance.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    Value(Value),
    Received(Received),
}

/// `{"node_id": ..., "received": ...}` of `heartbeat_ack` and `command_received`, its keys in
/// the order a [`Value`] writes them (sorted), so that both spell it alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Received {
    pub node_id: String,
    pub received: bool,
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

impl Envelope {
    pub fn new(
        kind: &'static str,
        id: impl Into<String>,
        at: DateTime<Utc>,
        data: impl Into<Payload>,
    ) -> Self {
        Self {
            kind,
            id: id.into(),
            timestamp: rfc3339(at),
            data: data.into(),
        }
    }

    pub fn encode(&self) -> String {
        // Room for the common answers at once (a heartbeat_ack is about 170 bytes; serde_json
        // starts at 128 and grows).
        let mut out = Vec::with_capacity(256);
        // Serializing a struct of strings and a Value into memory cannot fail, and it writes
        // UTF-8.
        let _ = serde_json::to_writer(&mut out, self);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `2025-01-21T10:00:00.000Z`: RFC 3339 in UTC, as §最佳实践 asks. Written digit by digit:
/// every heartbeat needs two (its sample's and its ack's), and chrono's formatter was about
/// a tenth of a heartbeat's decoding and encoding. Years outside 0-9999 and leap seconds,
/// which that layout cannot hold as is, go to chrono.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    let (date, time) = (at.date_naive(), at.time());
    let millis = time.nanosecond() / 1_000_000;
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999);
    let Some(year) = year.filter(|_| millis < 1000) else {
        return at.to_rfc3339_opts(SecondsFormat::Millis, true);
    };
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let fields = [
        (0, 4, year),
        (5, 2, date.month()),
        (8, 2, date.day()),
        (11, 2, time.hour()),
        (14, 2, time.minute()),
        (17, 2, time.second()),
        (20, 3, millis),
    ];
    for (start, width, mut value) in fields {
        for digit in out[start..start + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out.iter().map(|&byte| char::from(byte)).collect()
}

/// A decoded node frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub id: String,
    pub sent_at: DateTime<FixedOffset>,
    pub message: NodeMessage,
}

/// A frame that could not be decoded, with the request id when it could be read, so that the
/// error reply can echo it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: Option<String>,
    pub error: DecodeError,
}

/// Decodes one text frame sent by a node.
pub fn decode_node_frame(text: &str) -> Result<Inbound, Rejection> {
    match decode_well_formed(text) {
        Some(inbound) => Ok(inbound),
        None => decode_via_value(text),
    }
}

/// The envelope as a well-formed frame spells it: four strings, the data left unparsed.
#[derive(Deserialize)]
struct WireEnvelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The common case in one typed pass, without building a [`Value`] tree (most of a
/// heartbeat's decoding time went there). `None` for anything unusual, which
/// [`decode_via_value`] then decodes or rejects with its reason; the two agree on every frame
/// this accepts (`reference-server/tests/nodemgr_codec.rs`).
fn decode_well_formed(text: &str) -> Option<Inbound> {
    let wire: WireEnvelope<'_> = serde_json::from_str(text).ok()?;
    let data = wire.data.get();
    if !data.starts_with('{') {
        return None;
    }
    let sent_at = DateTime::parse_from_rfc3339(&wire.timestamp).ok()?;
    let message = NodeMessage::from_parts(&wire.kind, Data::Text(data)).ok()?;
    Some(Inbound {
        id: wire.id.into_owned(),
        sent_at,
        message,
    })
}

/// Decodes one text frame through a [`Value`] tree: slower than [`decode_node_frame`]'s
/// common case, and it says what is wrong with a frame it cannot decode.
pub fn decode_via_value(text: &str) -> Result<Inbound, Rejection> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejection {
        id: None,
        error: DecodeError::Json(e.to_string()),
    })?;
    let Value::Object(object) = value else {
        return Err(Rejection {
            id: None,
            error: DecodeError::NotAnObject,
        });
    };
    let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    decode_object(object).map_err(|error| Rejection {
        id: id.clone(),
        error,
    })
}

fn decode_object(mut object: Map<String, Value>) -> Result<Inbound, DecodeError> {
    let kind = take_string(&mut object, "type")?;
    let id = take_string(&mut object, "id")?;
    let timestamp = take_string(&mut object, "timestamp")?;
    let data = object
        .remove("data")
        .ok_or(DecodeError::MissingField("data"))?;
    if !data.is_object() {
        return Err(DecodeError::WrongType {
            field: "data",
            expected: "an object",
        });
    }
    let sent_at = DateTime::parse_from_rfc3339(&timestamp)
        .map_err(|_| DecodeError::BadTimestamp(timestamp.clone()))?;
    let message = NodeMessage::from_parts(&kind, Data::Value(data))?;
    Ok(Inbound {
        id,
        sent_at,
        message,
    })
}

fn take_string(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, DecodeError> {
    match object.remove(field) {
        None | Some(Value::Null) => Err(DecodeError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DecodeError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_acknowledgement_is_spelled_as_its_value_would_be() {
        let at = DateTime::UNIX_EPOCH;
        let typed = super::super::messages::received_data(true, "node-1");
        let as_value = serde_json::json!({ "received": true, "node_id": "node-1" });
        assert_eq!(
            Envelope::new("heartbeat_ack", "id-1", at, typed).encode(),
            Envelope::new("heartbeat_ack", "id-1", at, as_value).encode()
        );
    }

    proptest::proptest! {
        /// Any instant from year -251,000 to 255,000 reads as chrono writes it (leap seconds:
        /// below).
        #[test]
        fn rfc3339_is_written_as_chrono_writes_it(
            seconds in -8_000_000_000_000_i64..8_000_000_000_000,
            nanos in 0_u32..1_000_000_000,
        ) {
            let at = DateTime::from_timestamp(seconds, nanos).expect("in chrono's range");
            proptest::prop_assert_eq!(rfc3339(at), at.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
    }

    #[test]
    fn rfc3339_of_the_edges_of_its_layout() {
        for text in [
            "0000-01-01T00:00:00.000Z",
            "1970-01-01T00:00:00.000Z",
            "2025-01-21T10:00:00.999Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let at: DateTime<Utc> = text.parse().expect("valid");
            assert_eq!(rfc3339(at), text);
        }
        let leap = DateTime::from_timestamp(1_483_228_799, 1_500_000_000).expect("leap second");
        assert_eq!(rfc3339(leap), "2016-12-31T23:59:60.500Z");
    }

    /// The fast path is what keeps a heartbeat cheap; a change that sends the document's
    /// frames down the general path would still decode them, only slower.
    #[test]
    fn the_documents_node_frames_take_the_typed_path() {
        for frame in [
            include_str!("../../../../fixtures/nodemgr/wire/node_register.json"),
            include_str!("../../../../fixtures/nodemgr/wire/heartbeat.json"),
            include_str!("../../../../fixtures/nodemgr/wire/command_started.json"),
            include_str!("../../../../fixtures/nodemgr/wire/command_result.json"),
        ] {
            let fast = decode_well_formed(frame).expect("decoded by the typed path");
            assert_eq!(Ok(fast), decode_via_value(frame));
        }
    }
}

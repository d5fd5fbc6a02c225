//! The unified envelope `{type, id, timestamp, data}` (seed 001 §消息格式).

use super::error::DecodeError;
use super::messages::{Data, Heartbeat, NodeMessage};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike, Utc};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
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
        if let Payload::Received(received) = &self.data {
            return self.encode_received(received);
        }
        // Room for the common answers at once (serde_json starts at 128 and grows).
        let mut out = Vec::with_capacity(256);
        // Serializing a struct of strings and a Value into memory cannot fail, and it writes
        // UTF-8.
        let _ = serde_json::to_writer(&mut out, self);
        String::from_utf8(out).unwrap_or_default()
    }

    /// An acknowledgement, one per heartbeat, written piece by piece: serde_json scans every
    /// string it writes, key names and the timestamp too, byte by byte for what to escape,
    /// and that was most of an ack's cost. Spelled exactly as serde_json spells it (tests
    /// below).
    fn encode_received(&self, received: &Received) -> String {
        let mut out = String::with_capacity(112 + self.id.len() + received.node_id.len());
        out.push_str("{\"type\":");
        push_json_string(&mut out, self.kind);
        out.push_str(",\"id\":");
        push_json_string(&mut out, &self.id);
        out.push_str(",\"timestamp\":");
        push_json_string(&mut out, &self.timestamp);
        out.push_str(",\"data\":{\"node_id\":");
        push_json_string(&mut out, &received.node_id);
        out.push_str(if received.received {
            ",\"received\":true}}"
        } else {
            ",\"received\":false}}"
        });
        out
    }
}

/// `text` as a JSON string. Copied as it is when nothing in it needs escaping (the common
/// case: serde_json escapes only `"`, `\\` and control characters), else through serde_json.
fn push_json_string(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // Serializing a string into memory cannot fail.
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
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

/// The envelope as a well-formed frame spells it: four strings, the data left unparsed, or
/// parsed on the way when it is a heartbeat's ([`WireData`]).
struct WireEnvelope<'a> {
    kind: Cow<'a, str>,
    id: Cow<'a, str>,
    timestamp: Cow<'a, str>,
    data: WireData<'a>,
}

/// A well-formed frame's `data`. Most frames are heartbeats whose `type` comes before their
/// `data`, as the document writes them; their data is parsed in the same pass as the envelope
/// instead of being skipped over and read again (docs/performance.md).
enum WireData<'a> {
    Text(&'a str),
    Heartbeat(Heartbeat),
}

impl<'de> Deserialize<'de> for WireEnvelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = WireEnvelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a message envelope")
    }

    /// Like a derived struct's: unknown keys are skipped, a missing or repeated one is an
    /// error (and [`decode_via_value`] then decides).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut kind, mut id, mut timestamp, mut data) = (None, None, None, None);
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "type" => once(&mut kind, "type", map.next_value::<Text>()?.0)?,
                "id" => once(&mut id, "id", map.next_value::<Text>()?.0)?,
                "timestamp" => once(&mut timestamp, "timestamp", map.next_value::<Text>()?.0)?,
                "data" if kind.as_deref() == Some("heartbeat") => {
                    let ObjectOnly(heartbeat) = map.next_value()?;
                    once(&mut data, "data", WireData::Heartbeat(heartbeat))?
                }
                "data" => {
                    let text = map.next_value::<&'de RawValue>()?.get();
                    once(&mut data, "data", WireData::Text(text))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(WireEnvelope {
            kind: kind.ok_or_else(|| de::Error::missing_field("type"))?,
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            timestamp: timestamp.ok_or_else(|| de::Error::missing_field("timestamp"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

/// A string of the frame, borrowed from it unless it holds escapes (serde's own `Cow<str>`
/// always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(E::duplicate_field(field)),
    }
}

/// `T` read only from a JSON object: a derived struct would take an array too, which
/// [`decode_via_value`] refuses as `data`.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        let visitor = ObjectVisitor(std::marker::PhantomData);
        deserializer.deserialize_map(visitor).map(ObjectOnly)
    }
}

/// The common case in one typed pass, without building a [`Value`] tree (most of a
/// heartbeat's decoding time went there). `None` for anything unusual, which
/// [`decode_via_value`] then decodes or rejects with its reason; the two agree on every frame
/// this accepts (`reference-server/tests/nodemgr_codec.rs`).
fn decode_well_formed(text: &str) -> Option<Inbound> {
    let wire: WireEnvelope<'_> = serde_json::from_str(text).ok()?;
    let sent_at = DateTime::parse_from_rfc3339(&wire.timestamp).ok()?;
    let message = match wire.data {
        WireData::Heartbeat(heartbeat) => NodeMessage::Heartbeat(heartbeat),
        WireData::Text(data) if data.starts_with('{') => {
            NodeMessage::from_parts(&wire.kind, Data::Text(data)).ok()?
        }
        WireData::Text(_) => return None,
    };
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
        /// The hand-written acknowledgement is byte for byte what serde_json writes, whatever
        /// the strings hold (quotes, backslashes, control and non-ASCII characters).
        #[test]
        fn an_acknowledgement_is_spelled_as_serde_json_spells_it(
            id in ".{0,40}",
            node_id in "[a-z\"\\\\\\x00-\\x1f\\x7f\u{e9}\u{6b22}-]{0,40}",
            received: bool,
            kind in proptest::sample::select(vec!["heartbeat_ack", "command_received"]),
        ) {
            let at = DateTime::from_timestamp(1_737_453_600, 123_000_000).expect("valid");
            let data = super::super::messages::received_data(received, &node_id);
            let envelope = Envelope::new(kind, id, at, data);
            let by_serde = serde_json::to_string(&envelope).expect("serializes");
            proptest::prop_assert_eq!(envelope.encode(), by_serde);
        }

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

    #[test]
    fn strings_are_borrowed_from_the_frame_unless_they_hold_escapes() {
        let plain: Text = serde_json::from_str(r#""heartbeat""#).expect("a string");
        assert!(matches!(plain.0, Cow::Borrowed("heartbeat")));
        let escaped: Text = serde_json::from_str(r#""heart\u0062eat""#).expect("a string");
        assert!(matches!(escaped.0, Cow::Owned(ref text) if text == "heartbeat"));
    }

    /// A heartbeat's data is parsed with its envelope, yet only an object is taken as data,
    /// and a repeated key is left to the general path, as before.
    #[test]
    fn the_single_pass_takes_only_what_the_general_path_takes() {
        let metrics = r#"{"cpu_usage":1,"memory_usage":2,"disk_usage":3,"load_average":4}"#;
        let at = r#""timestamp":"2025-01-21T10:00:00Z""#;
        let as_array =
            format!(r#"{{"type":"heartbeat","id":"1",{at},"data":[null,null,{metrics}]}}"#);
        let type_twice = format!(
            r#"{{"type":"heartbeat","id":"1",{at},"data":{{"metrics":{metrics}}},"type":"x"}}"#
        );
        for frame in [as_array, type_twice] {
            assert_eq!(decode_well_formed(&frame), None, "{frame}");
            assert_eq!(decode_node_frame(&frame), decode_via_value(&frame));
        }
        let data_first =
            format!(r#"{{"data":{{"metrics":{metrics}}},"type":"heartbeat","id":"1",{at}}}"#);
        let escaped = format!(
            r#"{{"typ\u0065":"heart\u0062eat","id":"a\"b",{at},"data":{{"metrics":{metrics}}}}}"#
        );
        for frame in [data_first, escaped] {
            let fast = decode_well_formed(&frame).expect("decoded by the typed path");
            assert_eq!(Ok(fast), decode_via_value(&frame), "{frame}");
        }
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

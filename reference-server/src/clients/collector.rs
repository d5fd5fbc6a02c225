//! The reference eCapture collector: connects (with an `Origin` header, which eCapture
//! requires), decodes every frame as a `LogEntry` by its oneof, and reports each entry as a
//! readable line and, optionally, as a JSON Lines record.
//!
//! The record format (one object per entry) is what `conformance client --protocol ecapture`
//! grades a collector by:
//!
//! | entry | record |
//! | --- | --- |
//! | event | `{"log_type":2,"event":{<EventRecord>}}` |
//! | heartbeat | `{"log_type":0,"heartbeat":{"timestamp":..,"count":..,"message":".."}}` |
//! | process log | `{"log_type":1,"run_log":".."}` |
//! | no payload | `{"log_type":N,"empty":true}` |
//! | undecodable | `{"error":"decode","detail":"..","bytes":N}` or `{"error":"text-frame","bytes":N}` |
//!
//! `log_type` is the number on the wire, 0 when absent.

use crate::faults::{Fault, Faults};
use crate::protocol::ecapture::pb::log_entry::Payload;
use crate::protocol::ecapture::pb::{Event, LogEntry};
use crate::protocol::ecapture::{event_type_name, EventRecord};
use futures_util::StreamExt;
use prost::Message as _;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The Origin the document's Go example sends.
pub const DEFAULT_ORIGIN: &str = "http://localhost/";
/// Payload bytes shown on a readable line; JSON Lines records carry them all.
const SHOWN_PAYLOAD: usize = 160;

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub url: String,
    pub origin: String,
    /// Stop after this many entries.
    pub max_entries: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// `ecapture-collector/*` faults: deliberate mistakes, to prove the client probe fails.
    pub faults: Faults,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot connect to {url}: {source}; is the eCapture server running with --ecaptureq?")]
    Connect {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("{0} is not a ws:// URL")]
    BadUrl(String),
    #[error("the connection failed: {0}")]
    Stream(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What a collection saw, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub events: u64,
    pub heartbeats: u64,
    pub logs: u64,
    pub empty: u64,
    pub undecodable: u64,
}

impl Tally {
    pub fn entries(&self) -> u64 {
        self.events + self.heartbeats + self.logs + self.empty
    }
}

/// Where reports go: readable lines, JSON Lines records, or both.
pub struct Sinks<'a> {
    pub readable: Option<&'a mut (dyn Write + Send)>,
    pub jsonl: Option<&'a mut (dyn Write + Send)>,
}

/// Collects until the server closes, `max_entries` or `duration`; closes politely when it
/// is the one to stop.
pub async fn run(config: &CollectorConfig, sinks: &mut Sinks<'_>) -> Result<Tally, CollectError> {
    let mut socket = connect(config).await?;
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tally = Tally::default();
    let mut events_seen = 0u64;
    loop {
        let next = match deadline {
            Some(at) => match tokio::time::timeout_at(at, socket.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => socket.next().await,
        };
        let report = match next {
            None => return finish(sinks, tally),
            Some(message) => match message? {
                Message::Binary(bytes) => decode(&bytes),
                Message::Text(text) => {
                    Report::Undecodable(json!({"error": "text-frame", "bytes": text.len()}))
                }
                Message::Close(_) => return finish(sinks, tally),
                _ => continue,
            },
        };
        if report.is_undecodable() && config.faults.has(Fault::CollectorStopOnGarbage) {
            return finish(sinks, tally);
        }
        if report.is_event() {
            events_seen += 1;
        }
        if !skipped_by_fault(&report, &config.faults, events_seen) {
            report.write(sinks, &mut tally, &config.faults)?;
        }
        if config.max_entries.is_some_and(|max| tally.entries() >= max) {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
    finish(sinks, tally)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(config: &CollectorConfig) -> Result<Socket, CollectError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|_| CollectError::BadUrl(config.url.clone()))?;
    let origin = HeaderValue::from_str(&config.origin)
        .map_err(|_| CollectError::BadUrl(config.origin.clone()))?;
    if !config.faults.has(Fault::CollectorNoOrigin) {
        request.headers_mut().insert("Origin", origin);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|source| CollectError::Connect {
            url: config.url.clone(),
            source,
        })?;
    Ok(socket)
}

/// Entries a faulty collector leaves out.
fn skipped_by_fault(report: &Report, faults: &Faults, events_seen: u64) -> bool {
    let Report::Entry(entry) = report else {
        return false;
    };
    let has = |fault| faults.has(fault);
    match &entry.payload {
        Some(Payload::EventPayload(event)) => {
            (has(Fault::CollectorKnownTypesOnly) && event.r#type > 5)
                || (has(Fault::CollectorSkipEmpty) && event.payload.is_empty())
                || (has(Fault::CollectorLoseEvents) && events_seen % 100 == 0)
        }
        Some(Payload::RunLog(_)) => has(Fault::CollectorDropRunLogs),
        _ => has(Fault::CollectorTrustLogType) && entry.log_type == 0,
    }
}

fn finish(sinks: &mut Sinks<'_>, tally: Tally) -> Result<Tally, CollectError> {
    flush(sinks)?;
    Ok(tally)
}

fn flush(sinks: &mut Sinks<'_>) -> std::io::Result<()> {
    if let Some(out) = sinks.readable.as_mut() {
        out.flush()?;
    }
    if let Some(out) = sinks.jsonl.as_mut() {
        out.flush()?;
    }
    Ok(())
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Entry(LogEntry),
    Undecodable(Value),
}

/// Decodes by the oneof, whatever `log_type` says (HEARTBEAT is 0 and absent on the wire).
pub fn decode(bytes: &[u8]) -> Report {
    match LogEntry::decode(bytes) {
        Ok(entry) => Report::Entry(entry),
        Err(error) => Report::Undecodable(
            json!({"error": "decode", "detail": error.to_string(), "bytes": bytes.len()}),
        ),
    }
}

impl Report {
    fn is_undecodable(&self) -> bool {
        matches!(self, Self::Undecodable(_))
    }

    fn is_event(&self) -> bool {
        matches!(
            self,
            Self::Entry(LogEntry {
                payload: Some(Payload::EventPayload(_)),
                ..
            })
        )
    }

    /// Writes and flushes the entry's line(s): a reader sees each entry as it arrives.
    fn write(
        &self,
        sinks: &mut Sinks<'_>,
        tally: &mut Tally,
        faults: &Faults,
    ) -> std::io::Result<()> {
        self.count(tally);
        if let Some(out) = sinks.readable.as_mut() {
            writeln!(out, "{}", self.readable())?;
            out.flush()?;
        }
        if let Some(out) = sinks.jsonl.as_mut() {
            let mut record = self.record();
            if faults.has(Fault::CollectorLossyText) {
                lossy_payload(&mut record);
            }
            writeln!(out, "{record}")?;
            out.flush()?;
        }
        Ok(())
    }

    fn count(&self, tally: &mut Tally) {
        let slot = match self {
            Self::Undecodable(_) => &mut tally.undecodable,
            Self::Entry(entry) => match &entry.payload {
                Some(Payload::EventPayload(_)) => &mut tally.events,
                Some(Payload::HeartbeatPayload(_)) => &mut tally.heartbeats,
                Some(Payload::RunLog(_)) => &mut tally.logs,
                None => &mut tally.empty,
            },
        };
        *slot += 1;
    }

    /// The JSON Lines record of this frame.
    pub fn record(&self) -> Value {
        let entry = match self {
            Self::Undecodable(value) => return value.clone(),
            Self::Entry(entry) => entry,
        };
        let log_type = entry.log_type;
        match &entry.payload {
            Some(Payload::EventPayload(event)) => {
                json!({"log_type": log_type, "event": EventRecord::from_event(event)})
            }
            Some(Payload::HeartbeatPayload(beat)) => json!({"log_type": log_type, "heartbeat": {
                "timestamp": beat.timestamp, "count": beat.count, "message": beat.message}}),
            Some(Payload::RunLog(line)) => json!({"log_type": log_type, "run_log": line}),
            None => json!({"log_type": log_type, "empty": true}),
        }
    }

    /// One readable line.
    pub fn readable(&self) -> String {
        let entry = match self {
            Self::Undecodable(value) => return format!("UNDECODABLE {value}"),
            Self::Entry(entry) => entry,
        };
        match &entry.payload {
            Some(Payload::EventPayload(event)) => readable_event(event),
            Some(Payload::HeartbeatPayload(beat)) => {
                format!(
                    "HEARTBEAT #{} at {} {:?}",
                    beat.count, beat.timestamp, beat.message
                )
            }
            Some(Payload::RunLog(line)) => format!("LOG {line}"),
            None => format!("EMPTY log_type={}", entry.log_type),
        }
    }
}

/// Under `ecapture-collector/lossy-text`: the payload as lossy UTF-8 text.
fn lossy_payload(record: &mut Value) {
    let Some(event) = record.get_mut("event").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(digits) = event
        .remove("payload_hex")
        .and_then(|v| v.as_str().map(str::to_owned))
    {
        let bytes = hex::decode(digits).unwrap_or_default();
        event.insert(
            "payload_text".to_owned(),
            String::from_utf8_lossy(&bytes).into(),
        );
    }
}

fn readable_event(event: &Event) -> String {
    let when = chrono::DateTime::from_timestamp_nanos(event.timestamp)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!(
        "EVENT {when} {} {}[{}] {}:{} -> {}:{} uuid={} length={} {}",
        event_type_name(event.r#type),
        event.pname,
        event.pid,
        event.src_ip,
        event.src_port,
        event.dst_ip,
        event.dst_port,
        event.uuid,
        event.length,
        shown_payload(&event.payload),
    )
}

/// The payload as escaped text when it is UTF-8, as hex otherwise; cut to a screenful.
fn shown_payload(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(SHOWN_PAYLOAD)];
    let more = if cut.len() < payload.len() { "…" } else { "" };
    match std::str::from_utf8(payload) {
        Ok(_) => {
            let text = String::from_utf8_lossy(cut);
            format!("text \"{}{more}\"", text.escape_debug())
        }
        Err(_) => format!("hex {}{more}", hex::encode(cut)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ecapture::entries;
    use bytes::Bytes;

    #[test]
    fn a_binary_payload_is_shown_as_hex_and_text_as_text() {
        let mut event = Event {
            payload: Bytes::from_static(&[0xff, 0xfe]),
            ..Event::default()
        };
        assert!(readable_event(&event).ends_with("hex fffe"));
        event.payload = Bytes::from_static(b"GET /\r\n");
        assert!(readable_event(&event).ends_with("text \"GET /\\r\\n\""));
    }

    #[test]
    fn a_heartbeat_without_log_type_is_reported_as_a_heartbeat() {
        let bytes = entries::heartbeat(1, 0).encode_to_vec();
        let record = decode(&bytes).record();
        assert_eq!(record["log_type"], 0);
        assert_eq!(record["heartbeat"]["message"], "heartbeat:0");
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let record = decode(&[0xff, 0xff, 0xff]).record();
        assert_eq!(record["error"], "decode");
    }
}

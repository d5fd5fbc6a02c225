//! Grades an eCapture collector: the suite plays the server, pushes a scripted stream (a
//! heartbeat with `log_type` absent, a process log, events with edge cases, an undecodable
//! frame, a large frame, a burst), closes, and compares what the collector reports on its
//! standard output, one JSON record per entry (the format of `reference-server
//! ecapture-collect --jsonl -`, in fixtures/ecapture/README.md), with what was sent.

use super::{bind, spec, ProbeSession, Results};
pub use super::{ProbeConfig, ProbeError};
use crate::case::{Failure, Level, Source};
use crate::check::{compact, ensure};
use crate::client::Transcript;
use crate::report::{CaseSpec, Report};
use crate::wire::ecapture::{encode, Event, Heartbeat, LogEntry, Payload};
use crate::wire::ecapture::{LOG_TYPE_EVENT, LOG_TYPE_HEARTBEAT, LOG_TYPE_PROCESS_LOG};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use Level::{Must, Should};
use Source::{Documented, Inferred};

/// Events in the burst.
const BURST: usize = 2000;
/// Payload of the large frame.
const LARGE: usize = 1024 * 1024;
/// The process log sent last; the collector has reported everything once it reports this.
const END_MARKER: &str = "{\"message\":\"conformance: end of script\"}";

pub const CASES: &[CaseSpec] = &[
    spec(
        "ecapture-client/handshake/sends-origin",
        Must,
        Inferred("E6: eCapture refuses a handshake without an Origin header (403)"),
        "nothing: accepts the handshake",
        "the handshake carries an Origin header",
    ),
    spec(
        "ecapture-client/decode/heartbeat-without-log-type",
        Must,
        Documented("002 §LogType: LOG_TYPE_HEARTBEAT (0); §LogEntry oneof payload"),
        "a heartbeat whose log_type is absent on the wire (0)",
        "a heartbeat record with log_type 0, its count and message",
    ),
    spec(
        "ecapture-client/decode/process-log",
        Must,
        Documented("002 §LogEntry: string run_log"),
        "a process log",
        "a run_log record with the same text",
    ),
    spec(
        "ecapture-client/decode/event-fields",
        Must,
        Documented("002 §Event"),
        "an HTTP/1.1 request event",
        "an event record with all eleven fields as sent",
    ),
    spec(
        "ecapture-client/decode/empty-payload",
        Must,
        Documented("002 §Event: uint32 length, []byte payload"),
        "an event with an empty payload",
        "the event reported with length 0 and no payload bytes",
    ),
    spec(
        "ecapture-client/decode/binary-payload",
        Must,
        Documented("002 §Event: []byte payload; 说明: is_binary / payload_binary"),
        "an event whose payload is not UTF-8",
        "the payload bytes reported exactly",
    ),
    spec(
        "ecapture-client/decode/utf8-payload",
        Must,
        Documented("002 §Event: []byte payload; 说明: payload_utf8"),
        "an event whose payload is UTF-8 with Chinese text",
        "the payload bytes reported exactly",
    ),
    spec(
        "ecapture-client/decode/unknown-event-type",
        Must,
        Inferred("E3: eCapture uses type values beyond the document's 0-4"),
        "an event of type 77",
        "the event reported, with type 77",
    ),
    spec(
        "ecapture-client/decode/large-frame",
        Must,
        Inferred("E6: frames are as large as the captured payload"),
        "an event with a 1 MiB payload",
        "the event reported with every payload byte",
    ),
    spec(
        "ecapture-client/robustness/skips-undecodable-frame",
        Should,
        Documented("002 §集成示例: proto.Unmarshal 失败时 continue"),
        "a binary frame that is not a LogEntry, then more entries",
        "the entries after it reported",
    ),
    spec(
        "ecapture-client/robustness/burst",
        Must,
        Inferred("E6: eCapture pushes as fast as it captures"),
        "2000 events in one write",
        "every one reported, in order",
    ),
];

/// What the suite sends, in order, and keeps to compare.
struct Script {
    heartbeat: Heartbeat,
    log: String,
    plain: Event,
    empty: Event,
    binary: Event,
    utf8: Event,
    unknown_type: Event,
    after_garbage: Event,
    large: Event,
    burst: Vec<Event>,
}

fn event(uuid: &str, kind: u32, payload: &[u8]) -> Event {
    Event {
        timestamp: 1_732_270_000_123_456_789,
        uuid: uuid.to_owned(),
        src_ip: "127.0.0.1".to_owned(),
        src_port: 50_312,
        dst_ip: "::1".to_owned(),
        dst_port: 8080,
        pid: 4242,
        pname: "curl".to_owned(),
        r#type: kind,
        length: payload.len() as u32,
        payload: Bytes::copy_from_slice(payload),
    }
}

impl Script {
    fn new() -> Self {
        let burst = (0..BURST)
            .map(|n| {
                event(
                    &format!("4242_4242_burst_{n}_0"),
                    1,
                    b"GET /burst HTTP/1.1\r\n\r\n",
                )
            })
            .collect();
        Self {
            heartbeat: Heartbeat {
                timestamp: 1_732_270_000,
                count: 0,
                message: "heartbeat:0".to_owned(),
            },
            log: "{\"level\":\"info\",\"message\":\"probe started\"}".to_owned(),
            plain: event(
                "4242_4242_curl_5_0",
                1,
                b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            ),
            empty: event("4242_4242_curl_5_1", 3, b""),
            binary: event(
                "4242_4242_curl_6_1",
                3,
                &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x00],
            ),
            utf8: event(
                "4242_4242_curl_7_0",
                1,
                "POST /api/日志 HTTP/1.1\r\n\r\n{\"消息\":\"你好\"}".as_bytes(),
            ),
            unknown_type: event("4242_4242_curl_8_0", 77, b"\x81\x05hello"),
            after_garbage: event(
                "4242_4242_curl_9_0",
                1,
                b"GET /after-garbage HTTP/1.1\r\n\r\n",
            ),
            large: event("4242_4242_curl_10_1", 3, &large_payload()),
            burst,
        }
    }

    /// The frames, in order: entries, one undecodable frame, more entries, the end marker.
    fn frames(&self) -> Vec<Vec<u8>> {
        let mut frames = vec![
            // HEARTBEAT is 0: prost, like Go's encoder, leaves log_type off the wire.
            encode(&entry(
                LOG_TYPE_HEARTBEAT,
                Payload::HeartbeatPayload(self.heartbeat.clone()),
            )),
            encode(&entry(
                LOG_TYPE_PROCESS_LOG,
                Payload::RunLog(self.log.clone()),
            )),
        ];
        for event in [
            &self.plain,
            &self.empty,
            &self.binary,
            &self.utf8,
            &self.unknown_type,
        ] {
            frames.push(event_frame(event));
        }
        frames.push(vec![0xff, 0xff, 0xff, 0xff]);
        frames.push(event_frame(&self.after_garbage));
        frames.push(event_frame(&self.large));
        frames.extend(self.burst.iter().map(event_frame));
        frames.push(encode(&entry(
            LOG_TYPE_PROCESS_LOG,
            Payload::RunLog(END_MARKER.to_owned()),
        )));
        frames
    }
}

fn large_payload() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

fn entry(log_type: i32, payload: Payload) -> LogEntry {
    LogEntry {
        log_type,
        payload: Some(payload),
    }
}

fn event_frame(event: &Event) -> Vec<u8> {
    encode(&entry(LOG_TYPE_EVENT, Payload::EventPayload(event.clone())))
}

pub async fn run_probe(config: &ProbeConfig) -> Result<Report, ProbeError> {
    run_probe_on(bind(config).await?, config).await
}

/// The probe on a listener the caller bound.
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
) -> Result<Report, ProbeError> {
    run_probe_reading(listener, config, None).await
}

/// The probe with `given` reports filled by the caller (a collector in this process), or
/// else read from the started client's stdout.
pub async fn run_probe_reading(
    listener: TcpListener,
    config: &ProbeConfig,
    given: Option<Reports>,
) -> Result<Report, ProbeError> {
    let mut session =
        ProbeSession::start_capturing(&listener, config, "/", "ecapture server", true)?;
    let captured = given.is_some() || session.stdout.is_some();
    let reports = given.unwrap_or_default();
    if let Some(stdout) = session.stdout.take() {
        tokio::spawn(reports.clone().read(stdout));
    }
    let mut results = Results::default();
    let stop = drive(
        &listener,
        config.wait,
        &session.transcript,
        &mut results,
        &reports,
    )
    .await;
    if stop.is_ok() {
        grade(&Script::new(), &reports.snapshot(), &mut results, captured);
    }
    Ok(session.report("ecapture-client", CASES, results, stop, config))
}

/// The JSON records the collector printed so far.
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<Value>>>);

impl Reports {
    /// Takes one line of the collector's output; lines that are not JSON are ignored.
    pub fn push_line(&self, line: &str) {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(value);
        }
    }

    async fn read(self, stdout: tokio::process::ChildStdout) {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            self.push_line(&line);
        }
    }

    fn snapshot(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn has_end_marker(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|r| r["run_log"] == END_MARKER)
    }
}

async fn drive(
    listener: &TcpListener,
    wait: Duration,
    transcript: &Transcript,
    results: &mut Results,
    reports: &Reports,
) -> Result<(), String> {
    let (tcp, _) = tokio::time::timeout(wait, listener.accept())
        .await
        .map_err(|_| format!("no client connected within {} s", wait.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut origin = None;
    #[allow(
        clippy::result_large_err,
        reason = "the callback type is tungstenite's"
    )]
    let callback = |request: &Request, response: Response| {
        origin = request
            .headers()
            .get("origin")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Ok(response)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
    transcript.record("suite", "⇠", &format!("handshake, Origin: {origin:?}"));
    results.check(
        "ecapture-client/handshake/sends-origin",
        ensure(origin.is_some(), "an Origin header", "none"),
    );
    let frames = Script::new().frames();
    transcript.record("suite", "→", &format!("{} frames: heartbeat, process log, 5 events, 4 undecodable bytes, an event, a 1 MiB event, a burst of {BURST}, the end marker", frames.len()));
    for frame in frames {
        ws.feed(Message::binary(frame))
            .await
            .map_err(|e| format!("sending: {e}"))?;
    }
    ws.flush().await.map_err(|e| format!("sending: {e}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    while !reports.has_end_marker() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    transcript.record("suite", "→", "close 1000");
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

fn grade(script: &Script, reports: &[Value], results: &mut Results, captured: bool) {
    let ids = CASES
        .iter()
        .map(|c| c.id)
        .filter(|id| !id.contains("/handshake/"));
    if !captured {
        for id in ids {
            results.set(id, Err(Failure::Unimplemented(
                "the client was not started by the suite, so its reports cannot be read: pass its command after --".to_owned(),
            )));
        }
        return;
    }
    let found = |uuid: &str| reports.iter().find(|r| r["event"]["uuid"] == uuid);
    results.check(
        "ecapture-client/decode/heartbeat-without-log-type",
        heartbeat_reported(reports, &script.heartbeat),
    );
    results.check(
        "ecapture-client/decode/process-log",
        ensure(
            reports.iter().any(|r| r["run_log"] == script.log.as_str()),
            format!("a record with run_log {:?}", script.log),
            summary(reports),
        ),
    );
    let pairs = [
        ("ecapture-client/decode/event-fields", &script.plain),
        ("ecapture-client/decode/empty-payload", &script.empty),
        ("ecapture-client/decode/binary-payload", &script.binary),
        ("ecapture-client/decode/utf8-payload", &script.utf8),
        (
            "ecapture-client/decode/unknown-event-type",
            &script.unknown_type,
        ),
        (
            "ecapture-client/robustness/skips-undecodable-frame",
            &script.after_garbage,
        ),
        ("ecapture-client/decode/large-frame", &script.large),
    ];
    for (id, sent) in pairs {
        results.check(id, event_reported(found(&sent.uuid), sent, reports));
    }
    results.check(
        "ecapture-client/robustness/burst",
        burst_reported(reports, &script.burst),
    );
}

fn summary(reports: &[Value]) -> String {
    let kinds = |key: &str| reports.iter().filter(|r| r.get(key).is_some()).count();
    format!(
        "{} records: {} events, {} heartbeats, {} process logs",
        reports.len(),
        kinds("event"),
        kinds("heartbeat"),
        kinds("run_log")
    )
}

fn heartbeat_reported(reports: &[Value], sent: &Heartbeat) -> Result<(), Failure> {
    let record = reports
        .iter()
        .find(|r| r.get("heartbeat").is_some())
        .ok_or_else(|| Failure::mismatch("a heartbeat record", summary(reports)))?;
    let beat = &record["heartbeat"];
    let matches = record["log_type"] == 0
        && beat["count"] == sent.count
        && beat["timestamp"] == sent.timestamp
        && beat["message"] == sent.message.as_str();
    ensure(
        matches,
        format!(
            "log_type 0, count {}, timestamp {}, message {:?}",
            sent.count, sent.timestamp, sent.message
        ),
        compact(record),
    )
}

/// The payload bytes of a record: `payload_text` or `payload_hex`.
fn reported_payload(record: &Value) -> Option<Vec<u8>> {
    if let Some(text) = record["payload_text"].as_str() {
        return Some(text.as_bytes().to_vec());
    }
    hex::decode(record["payload_hex"].as_str()?).ok()
}

fn event_reported(record: Option<&Value>, sent: &Event, reports: &[Value]) -> Result<(), Failure> {
    let record = record.ok_or_else(|| {
        Failure::mismatch(
            format!("an event record with uuid {}", sent.uuid),
            summary(reports),
        )
    })?;
    ensure(
        record["log_type"] == LOG_TYPE_EVENT,
        "log_type 2",
        compact(record),
    )?;
    let e = &record["event"];
    let fields = [
        ("timestamp", e["timestamp"] == sent.timestamp),
        ("src_ip", e["src_ip"] == sent.src_ip.as_str()),
        ("src_port", e["src_port"] == sent.src_port),
        ("dst_ip", e["dst_ip"] == sent.dst_ip.as_str()),
        ("dst_port", e["dst_port"] == sent.dst_port),
        ("pid", e["pid"] == sent.pid),
        ("pname", e["pname"] == sent.pname.as_str()),
        ("type", e["type"] == sent.r#type),
        ("length", e["length"] == sent.length),
        (
            "payload",
            reported_payload(e).as_deref() == Some(&sent.payload[..]),
        ),
    ];
    match fields.iter().find(|(_, ok)| !ok) {
        None => Ok(()),
        Some((name, _)) => Err(Failure::mismatch(
            format!("{name} as sent in event {}", sent.uuid),
            crate::check::truncate(&compact(e), 300),
        )),
    }
}

fn burst_reported(reports: &[Value], burst: &[Event]) -> Result<(), Failure> {
    let reported: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["event"]["uuid"].as_str())
        .filter(|uuid| uuid.contains("_burst_"))
        .collect();
    let sent: Vec<&str> = burst.iter().map(|e| e.uuid.as_str()).collect();
    ensure(
        reported == sent,
        format!("the {} burst events in order", sent.len()),
        format!(
            "{} burst events reported{}",
            reported.len(),
            if reported.len() == sent.len() {
                ", out of order"
            } else {
                ""
            }
        ),
    )
}

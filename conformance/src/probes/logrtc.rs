//! Grades a logrtc producer (seed 000): the suite plays the signaling server and, with its
//! own WebRTC peer, the consumers. One scripted session: registration, a consumer and its
//! offer, the `logs` channel and its entries, a second consumer beside the first, the first
//! leaving, a new one joining, and the server going away to see the producer come back.
//!
//! The producer under test must be logging while it is graded (the demo producer logs 5
//! entries a second). When every entry carries a numeric `fields.seq`, order and loss are
//! checked exactly; otherwise timestamps must not go backwards.

use std::time::{Duration, Instant};

use super::{accept, bind, spec, ProbeSession, Results};
pub use super::{ProbeConfig, ProbeError};
use crate::case::{CaseResult, Failure, Level, Outcome, Source};
use crate::check::{compact, ensure, TimestampForm};
use crate::client::webrtc::{
    candidate_from_message, candidate_message, ChannelMessage, ChannelReader, Peer,
};
use crate::client::{Event, WsClient};
use crate::report::{CaseSpec, Report};
use crate::wire::logrtc::check_log_entry;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use Level::{Must, Should};
use Source::{Documented, Inferred};

/// Entries read from each channel before it is judged.
pub const ENTRIES_PER_CHANNEL: usize = 10;

pub const PRODUCER_CASES: &[CaseSpec] = &[
    spec(
        "logrtc-producer/register/first-message",
        Must,
        Documented("000 §2 注册为日志生产者"),
        "nothing: the producer connects",
        "the first message is register with role producer and a non-empty string client_id",
    ),
    spec(
        "logrtc-producer/offer/answers-consumer-connected",
        Must,
        Documented("000 §4.2 创建并发送Offer"),
        "consumer_connected",
        "a webrtc_offer to that consumer_id with a string sdp",
    ),
    spec(
        "logrtc-producer/offer/candidates-addressed",
        Must,
        Inferred("L4: every relay names its recipient in `to`"),
        "the answer",
        "every ice_candidate names the consumer in `to` and carries a candidate string",
    ),
    spec(
        "logrtc-producer/channel/named-logs",
        Must,
        Documented("000 §4.1 createDataChannel('logs')"),
        "the answer and our candidates",
        "a data channel labelled `logs` opens",
    ),
    spec(
        "logrtc-producer/channel/ordered",
        Must,
        Documented("000 §4.1 { ordered: true }"),
        "nothing",
        "the `logs` channel is ordered",
    ),
    spec(
        "logrtc-producer/entries/standard-format",
        Must,
        Documented("000 §5 标准日志格式"),
        "nothing: the producer logs",
        "every message is a log entry with string timestamp (ISO 8601), level (ERROR/WARN/INFO/DEBUG), target and message",
    ),
    spec(
        "logrtc-producer/entries/in-order",
        Must,
        Inferred("L8: entries keep their order on the channel"),
        "nothing",
        "fields.seq rises by one from entry to entry (or, without seq, timestamps never go back)",
    ),
    spec(
        "logrtc-producer/consumers/several-at-once",
        Should,
        Documented("000 §完整接入清单 可选步骤: 实现多消费者支持"),
        "consumer_connected for a second consumer while the first is connected",
        "both channels carry entries",
    ),
    spec(
        "logrtc-producer/consumers/closes-departed",
        Should,
        Inferred("L5: consumer_disconnected tells the producer a consumer left"),
        "consumer_disconnected for the first consumer",
        "its `logs` channel closes",
    ),
    spec(
        "logrtc-producer/consumers/serves-newcomer",
        Must,
        Inferred("L4, L5: a producer survives a consumer leaving and serves the next"),
        "consumer_connected for a new consumer after one left",
        "a fresh offer and a `logs` channel carrying entries",
    ),
    spec(
        "logrtc-producer/reconnect/after-server-loss",
        Must,
        Documented("000 §完整接入清单 必需步骤: 实现自动重连机制"),
        "a close 1001 of the signaling connection",
        "the producer connects again and registers with the same client_id",
    ),
];

/// Which client the suite grades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Producer,
    Consumer,
}

pub async fn run_probe(config: &ProbeConfig, role: Role) -> Result<Report, ProbeError> {
    run_probe_on(bind(config).await?, config, role).await
}

/// The probe on a listener the caller bound (tests start the client in-process).
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
    role: Role,
) -> Result<Report, ProbeError> {
    let (playing, protocol, cases) = match role {
        Role::Producer => ("logrtc signaling server", "logrtc-producer", PRODUCER_CASES),
        Role::Consumer => (
            "logrtc signaling server and producer",
            "logrtc-consumer",
            CONSUMER_CASES,
        ),
    };
    let session = ProbeSession::start(&listener, config, "/signaling", playing)?;
    let mut results = Results::default();
    let stop = match role {
        Role::Producer => drive_producer(&listener, config.wait, &session, &mut results).await,
        Role::Consumer => drive_consumer(&listener, config.wait, &session, &mut results).await,
    };
    Ok(session.report(protocol, cases, results, stop, config))
}

fn case(index: usize) -> &'static str {
    PRODUCER_CASES[index].id
}

async fn drive_producer(
    listener: &TcpListener,
    wait: Duration,
    session: &ProbeSession,
    results: &mut Results,
) -> Result<(), String> {
    let (mut ws, _) = accept(listener, wait, &session.transcript, "server").await?;
    let producer_id = expect_register(&mut ws, wait, results).await?;
    ws.send_json(&json!({"type": "registered", "client_id": producer_id, "role": "producer"}))
        .await
        .map_err(|e| e.to_string())?;

    let mut first = connect_consumer(
        &mut ws,
        &producer_id,
        "conformance-consumer-1",
        wait,
        results,
    )
    .await?;
    let entries = read_entries(&mut first.reader, ENTRIES_PER_CHANNEL, wait).await;
    results.set(case(5), entries.format.clone());
    results.check(case(6), entries.order.clone());
    entries.require_some().map_err(|e| e.to_string())?;

    let mut second = connect_consumer(
        &mut ws,
        &producer_id,
        "conformance-consumer-2",
        wait,
        results,
    )
    .await?;
    let both = read_entries(&mut second.reader, 3, wait)
        .await
        .require_some()
        .is_ok()
        && read_entries(&mut first.reader, 3, wait)
            .await
            .require_some()
            .is_ok();
    results.check(
        case(7),
        ensure(both, "entries on both channels", "one channel fell silent"),
    );

    ws.send_json(
        &json!({"type": "consumer_disconnected", "consumer_id": "conformance-consumer-1"}),
    )
    .await
    .map_err(|e| e.to_string())?;
    results.check(case(8), channel_closes(&mut first.reader, wait).await);
    first.peer.close().await;

    let mut newcomer = connect_consumer(
        &mut ws,
        &producer_id,
        "conformance-consumer-3",
        wait,
        results,
    )
    .await;
    let served = match &mut newcomer {
        Ok(consumer) => read_entries(&mut consumer.reader, 3, wait)
            .await
            .require_some(),
        Err(why) => Err(Failure::mismatch("a fresh offer and channel", why.as_str())),
    };
    results.check(case(9), served);
    for consumer in [Some(second), newcomer.ok()].into_iter().flatten() {
        consumer.peer.close().await;
    }

    ws.close_with(1001, "conformance probe: reconnect test")
        .await;
    let back = expect_reconnect(listener, wait, session, &producer_id).await;
    results.check(case(10), back);
    Ok(())
}

/// The client's first message, which should be its `register`.
async fn first_message(ws: &mut WsClient, wait: Duration, client: &str) -> Result<Value, String> {
    match ws.next_event_within(wait).await {
        Event::Json(message) => Ok(message),
        other => Err(format!(
            "the {client} sent {} instead of register",
            other.describe()
        )),
    }
}

async fn expect_register(
    ws: &mut WsClient,
    wait: Duration,
    results: &mut Results,
) -> Result<String, String> {
    let register = first_message(ws, wait, "producer").await?;
    let client_id = register["client_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let ok =
        register["type"] == "register" && register["role"] == "producer" && client_id.is_some();
    results.check(
        case(0),
        ensure(
            ok,
            "register, role producer, a client_id",
            compact(&register),
        ),
    );
    client_id.ok_or_else(|| format!("no client_id in {}", compact(&register)))
}

async fn expect_reconnect(
    listener: &TcpListener,
    wait: Duration,
    session: &ProbeSession,
    producer_id: &str,
) -> Result<(), Failure> {
    let (mut ws, _) = accept(listener, wait, &session.transcript, "server")
        .await
        .map_err(|why| Failure::mismatch("a new connection", why))?;
    match ws.next_event_within(wait).await {
        Event::Json(m) if m["type"] == "register" && m["client_id"] == producer_id => Ok(()),
        other => Err(Failure::mismatch(
            format!("register as {producer_id:?} again"),
            other.describe(),
        )),
    }
}

/// A consumer the suite connected: its peer and its `logs` channel.
struct Consumer {
    peer: Peer,
    reader: ChannelReader,
}

/// Announces a consumer, answers the producer's offer, exchanges candidates until a data
/// channel opens, and grades the offer, the candidates and the channel on the way.
async fn connect_consumer(
    ws: &mut WsClient,
    producer_id: &str,
    consumer_id: &str,
    wait: Duration,
    results: &mut Results,
) -> Result<Consumer, String> {
    ws.send_json(&json!({"type": "consumer_connected", "consumer_id": consumer_id}))
        .await
        .map_err(|e| e.to_string())?;
    let offer = expect_offer(ws, consumer_id, wait).await;
    results.worst(
        case(1),
        offer
            .as_ref()
            .map(|_| ())
            .map_err(|why| Failure::mismatch("a webrtc_offer", why.as_str())),
    );
    let (mut peer, answer) = Peer::answer(&offer?).await?;
    let reply =
        json!({"type": "webrtc_answer", "from": consumer_id, "to": producer_id, "sdp": answer});
    ws.send_json(&reply).await.map_err(|e| e.to_string())?;
    let mut exchange = CandidateExchange::new(consumer_id, producer_id);
    let deadline = Instant::now() + wait;
    let reader = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no data channel opened within {} s",
                wait.as_secs()
            ));
        }
        if let Step::Channel(reader) = exchange.step(ws, &mut peer, left).await? {
            break reader;
        }
    };
    results.worst(case(2), exchange.verdict());
    results.worst(
        case(3),
        ensure(
            reader.label == "logs",
            "the label `logs`",
            format!("{:?}", reader.label),
        ),
    );
    results.worst(
        case(4),
        ensure(reader.ordered, "an ordered channel", "an unordered channel"),
    );
    Ok(Consumer { peer, reader })
}

async fn expect_offer(
    ws: &mut WsClient,
    consumer_id: &str,
    wait: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_event_within(left).await {
            Event::Json(m) if m["type"] == "webrtc_offer" => {
                return match (m["to"] == consumer_id, m["sdp"].as_str()) {
                    (true, Some(sdp)) => Ok(sdp.to_owned()),
                    _ => Err(format!(
                        "{} (wanted `to` {consumer_id:?} and a string sdp)",
                        compact(&m)
                    )),
                };
            }
            Event::Json(_) => {}
            other => return Err(other.describe()),
        }
    }
}

/// What a channel's first entries showed.
#[derive(Debug)]
struct Entries {
    count: usize,
    format: CaseResult,
    order: Result<(), Failure>,
}

impl Entries {
    fn require_some(&self) -> Result<(), Failure> {
        ensure(self.count > 0, "log entries on the channel", "none")
    }
}

/// Reads up to `wanted` entries (waiting at most `wait` for each) and judges them.
async fn read_entries(reader: &mut ChannelReader, wanted: usize, wait: Duration) -> Entries {
    let mut entries = Vec::new();
    let mut format: Result<(), Failure> = Ok(());
    while entries.len() < wanted {
        let text = match reader.next_within(wait).await {
            Some(ChannelMessage::Text(_, text)) => text,
            Some(ChannelMessage::Binary(_, data)) => {
                format = format.and(Err(Failure::mismatch(
                    "text messages",
                    format!("a binary message of {} bytes", data.len()),
                )));
                continue;
            }
            Some(ChannelMessage::Closed(_)) | None => break,
        };
        match serde_json::from_str::<Value>(&text) {
            // Batches are for consumers that asked for them (L10); the suite did not.
            Ok(Value::Array(batch)) => {
                format = format.and(Err(Failure::mismatch(
                    "one entry per message (no batch was asked for)",
                    "a JSON array",
                )));
                entries.extend(batch);
            }
            Ok(entry) => entries.push(entry),
            Err(_) => {
                format = format.and(Err(Failure::mismatch(
                    "a JSON log entry",
                    crate::check::truncate(&text, 200),
                )))
            }
        }
    }
    if entries.is_empty() {
        let none = Failure::mismatch(
            "log entries on the `logs` channel",
            format!("none within {} s", wait.as_secs()),
        );
        return Entries {
            count: 0,
            format: format.and(Err(none.clone())).map(|()| Outcome::Pass),
            order: Err(none),
        };
    }
    let format = format.and_then(|()| judge_format(&entries));
    Entries {
        count: entries.len(),
        format,
        order: judge_order(&entries),
    }
}

fn judge_format(entries: &[Value]) -> CaseResult {
    let mut without_offset = None;
    for entry in entries {
        match check_log_entry(entry) {
            Ok(TimestampForm::IsoWithoutOffset) => {
                without_offset = Some(compact(&entry["timestamp"]))
            }
            Ok(_) => {}
            Err(why) => return Err(Failure::mismatch("a standard log entry", why)),
        }
    }
    Ok(match without_offset {
        // ISO 8601 without an offset is still ISO 8601, but leaves the reader to guess the zone.
        Some(stamp) => Outcome::Variant(format!("timestamp {stamp} has no offset or Z")),
        None => Outcome::Pass,
    })
}

fn judge_order(entries: &[Value]) -> Result<(), Failure> {
    let seqs: Option<Vec<u64>> = entries
        .iter()
        .map(|e| e["fields"]["seq"].as_u64())
        .collect();
    if let Some(seqs) = seqs {
        return match seqs.windows(2).find(|pair| pair[1] != pair[0] + 1) {
            Some(pair) => Err(Failure::mismatch(
                "seq rising by one",
                format!("{} then {}", pair[0], pair[1]),
            )),
            None => Ok(()),
        };
    }
    let stamps: Vec<chrono::DateTime<chrono::FixedOffset>> = entries
        .iter()
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str()?).ok())
        .collect();
    match stamps.windows(2).find(|pair| pair[1] < pair[0]) {
        Some(pair) => Err(Failure::mismatch(
            "timestamps that never go back",
            format!("{} then {}", pair[0], pair[1]),
        )),
        None => Ok(()),
    }
}

async fn channel_closes(reader: &mut ChannelReader, wait: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.next_within(left).await {
            Some(ChannelMessage::Closed(_)) => return Ok(()),
            Some(_) => continue,
            None => {
                return Err(Failure::mismatch(
                    "the channel closed",
                    format!("still open after {} s", wait.as_secs()),
                ))
            }
        }
    }
}

/// The producer the suite plays when it grades a consumer.
pub const PROBE_PRODUCER_ID: &str = "conformance-producer";
/// Entries the suite sends once the consumer's channel is open.
pub const ENTRIES_TO_CONSUMER: u64 = 50;

pub const CONSUMER_CASES: &[CaseSpec] = &[
    spec(
        "logrtc-consumer/register/as-consumer",
        Should,
        Inferred("L1: consumers register with role consumer"),
        "nothing: the consumer connects",
        "the first message is register with role consumer",
    ),
    spec(
        "logrtc-consumer/watch/chooses-listed-producer",
        Should,
        Inferred("L3: a consumer chooses a producer with watch"),
        "registered, listing one producer",
        "watch with that producer_id",
    ),
    spec(
        "logrtc-consumer/answer/answers-offer",
        Must,
        Documented("000 §4.3 处理Answer和ICE候选"),
        "a webrtc_offer from the producer with an ordered `logs` channel",
        "a webrtc_answer to the producer with a string sdp",
    ),
    spec(
        "logrtc-consumer/answer/candidates-addressed",
        Must,
        Inferred("L4: every relay names its recipient in `to`"),
        "our candidates",
        "every ice_candidate names the producer in `to` and carries a candidate",
    ),
    spec(
        "logrtc-consumer/channel/opens",
        Must,
        Documented("000 §4.1 createDataChannel('logs')"),
        "nothing",
        "the `logs` channel opens",
    ),
    spec(
        "logrtc-consumer/channel/stays-open-while-logs-flow",
        Should,
        Inferred("L8: the consumer reads entries until it leaves"),
        "50 standard log entries",
        "the channel and the signaling connection are still open a second later",
    ),
];

fn consumer_case(index: usize) -> &'static str {
    CONSUMER_CASES[index].id
}

async fn drive_consumer(
    listener: &TcpListener,
    wait: Duration,
    session: &ProbeSession,
    results: &mut Results,
) -> Result<(), String> {
    let (mut ws, _) = accept(listener, wait, &session.transcript, "server").await?;
    let consumer_id = expect_consumer_register(&mut ws, wait, results).await?;
    expect_watch(&mut ws, wait, results).await?;

    let (mut peer, channel, offer) = Peer::offer().await?;
    let offer_message =
        json!({"type": "webrtc_offer", "from": PROBE_PRODUCER_ID, "to": consumer_id, "sdp": offer});
    ws.send_json(&offer_message)
        .await
        .map_err(|e| e.to_string())?;
    let opening = tokio::spawn(crate::client::webrtc::wait_open(channel, wait));
    let mut exchange = CandidateExchange::new(PROBE_PRODUCER_ID, &consumer_id);
    let mut answered = false;
    let deadline = Instant::now() + wait;
    while !opening.is_finished() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Short steps: the channel opening is watched by the task, not by the exchange.
        let step = exchange
            .step(&mut ws, &mut peer, left.min(Duration::from_millis(100)))
            .await?;
        if let Step::Message(m) = step {
            if m["type"] == "webrtc_answer" {
                let accepted = accept_answer(&mut peer, &m).await;
                answered = accepted.is_ok();
                results.check(consumer_case(2), accepted);
            }
        }
    }
    if !answered {
        results.set(
            consumer_case(2),
            Err(Failure::mismatch(
                "a webrtc_answer",
                format!("none within {} s", wait.as_secs()),
            )),
        );
    }
    results.check(consumer_case(3), exchange.verdict());
    let reader = opening.await.ok().flatten();
    results.check(
        consumer_case(4),
        ensure(
            reader.is_some(),
            "the channel open",
            format!("not open within {} s", wait.as_secs()),
        ),
    );
    let mut reader = reader.ok_or("the logs channel never opened")?;
    results.check(consumer_case(5), feed_entries(&mut ws, &mut reader).await);
    peer.close().await;
    Ok(())
}

/// Applies a consumer's answer: it must name the suite's producer in `to` and carry an SDP
/// that webrtc-rs accepts.
async fn accept_answer(peer: &mut Peer, answer: &Value) -> Result<(), Failure> {
    match answer["sdp"]
        .as_str()
        .filter(|_| answer["to"] == PROBE_PRODUCER_ID)
    {
        Some(sdp) => peer
            .accept_answer(sdp)
            .await
            .map_err(|why| Failure::mismatch("an answer webrtc-rs accepts", why)),
        None => Err(Failure::mismatch(
            format!("`to` {PROBE_PRODUCER_ID:?} and a string sdp"),
            compact(answer),
        )),
    }
}

/// What one step of an offer/answer exchange brought.
enum Step {
    /// The remote side opened a data channel.
    Channel(ChannelReader),
    /// A signaling message other than a candidate, for the caller.
    Message(Value),
    Idle,
}

/// Trades candidates between the suite's peer and the client under test, as the signaling
/// server would relay them (L4): ours go out with `from` (the peer the suite plays) and `to`
/// (the client); the client's must name the suite's peer in `to`.
struct CandidateExchange<'a> {
    suite_id: &'a str,
    client_id: &'a str,
    misaddressed: Option<String>,
}

impl<'a> CandidateExchange<'a> {
    fn new(suite_id: &'a str, client_id: &'a str) -> Self {
        CandidateExchange {
            suite_id,
            client_id,
            misaddressed: None,
        }
    }

    async fn step(
        &mut self,
        ws: &mut WsClient,
        peer: &mut Peer,
        wait: Duration,
    ) -> Result<Step, String> {
        tokio::select! {
            Some(channel) = peer.channels.recv() => Ok(Step::Channel(ChannelReader::follow(channel).await)),
            Some(candidate) = peer.local_candidates.recv() => {
                let mut message = candidate_message(self.client_id, &candidate);
                message["from"] = json!(self.suite_id);
                ws.send_json(&message).await.map_err(|e| e.to_string())?;
                Ok(Step::Idle)
            }
            event = ws.next_event_within(wait) => match event {
                Event::Json(m) if m["type"] == "ice_candidate" => {
                    match (m["to"] == self.suite_id, candidate_from_message(&m)) {
                        (true, Some(candidate)) => peer.add_candidate(candidate).await,
                        _ => self.misaddressed = Some(compact(&m)),
                    }
                    Ok(Step::Idle)
                }
                Event::Json(m) => Ok(Step::Message(m)),
                Event::Silence(_) => Ok(Step::Idle),
                other => Err(format!("the signaling connection ended: {}", other.describe())),
            },
        }
    }

    /// Whether every candidate the client sent was addressed to the suite's peer.
    fn verdict(&self) -> Result<(), Failure> {
        match &self.misaddressed {
            None => Ok(()),
            Some(message) => Err(Failure::mismatch(
                format!("`to` {:?} and a candidate", self.suite_id),
                message,
            )),
        }
    }
}

async fn expect_consumer_register(
    ws: &mut WsClient,
    wait: Duration,
    results: &mut Results,
) -> Result<String, String> {
    let first = first_message(ws, wait, "consumer").await?;
    let registered = first["type"] == "register" && first["role"] == "consumer";
    results.check(
        consumer_case(0),
        ensure(registered, "register with role consumer", compact(&first)),
    );
    let consumer_id = first["client_id"]
        .as_str()
        .unwrap_or("conformance-assigned-consumer")
        .to_owned();
    let listing = json!([{"client_id": PROBE_PRODUCER_ID, "metadata": {"system_name": "conformance probe"}, "registered_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}]);
    let answer = json!({"type": "registered", "client_id": consumer_id, "role": "consumer", "producers": listing});
    ws.send_json(&answer).await.map_err(|e| e.to_string())?;
    Ok(consumer_id)
}

/// Waits for `watch`, answering `list_producers` meanwhile. A consumer that never watches is
/// still offered a channel: the document's consumer waits for offers without choosing.
async fn expect_watch(
    ws: &mut WsClient,
    wait: Duration,
    results: &mut Results,
) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.next_event_within(left).await {
            Event::Json(m) if m["type"] == "watch" => {
                let chosen = m["producer_id"] == PROBE_PRODUCER_ID;
                results.check(
                    consumer_case(1),
                    ensure(
                        chosen,
                        format!("producer_id {PROBE_PRODUCER_ID:?}"),
                        compact(&m),
                    ),
                );
                let watching =
                    json!({"type": "watching", "producer_id": PROBE_PRODUCER_ID, "online": true});
                return ws.send_json(&watching).await.map_err(|e| e.to_string());
            }
            Event::Json(m) if m["type"] == "list_producers" => {
                let listing = json!({"type": "producer_list", "producers": [{"client_id": PROBE_PRODUCER_ID, "metadata": {}}]});
                ws.send_json(&listing).await.map_err(|e| e.to_string())?;
            }
            Event::Json(_) => {}
            Event::Silence(_) => {
                results.check(
                    consumer_case(1),
                    Err(Failure::mismatch(
                        "watch",
                        format!("none within {} s", wait.as_secs()),
                    )),
                );
                return Ok(());
            }
            other => {
                return Err(format!(
                    "the signaling connection ended: {}",
                    other.describe()
                ))
            }
        }
    }
}

/// Sends numbered entries on our channel, then checks that the consumer kept both the channel
/// and the signaling connection open.
async fn feed_entries(ws: &mut WsClient, reader: &mut ChannelReader) -> Result<(), Failure> {
    for seq in 1..=ENTRIES_TO_CONSUMER {
        let level = crate::wire::logrtc::LEVELS[(seq % 4) as usize];
        let entry = json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": level,
            "target": "conformance::probe",
            "message": format!("conformance probe entry {seq}"),
            "fields": {"seq": seq},
        });
        reader
            .channel
            .send_text(&entry.to_string())
            .await
            .map_err(|e| Failure::mismatch("the channel accepting entries", e))?;
    }
    if let Some(ChannelMessage::Closed(_)) = reader.next_within(Duration::from_secs(1)).await {
        return Err(Failure::mismatch(
            "the channel open",
            "the consumer closed it",
        ));
    }
    match ws.next_event_within(Duration::from_millis(100)).await {
        Event::Close(_) | Event::Dropped(_) => Err(Failure::mismatch(
            "the signaling connection open",
            "it closed",
        )),
        _ => Ok(()),
    }
}

//! Grades an sfu client (a page, an app, an SDK): the suite plays the SFU through one session.
//! It accepts the protoo socket, answers `join` with one stream already in the room, answers
//! `publish` and `subscribe` with its own str0m peers (ICE-lite on loopback, as an SFU), announces
//! a second stream with `stream-add`, and watches for keepalives. Media is real: the client's
//! published Opus or VP8 must arrive, and the streams it subscribes to are sent to it.

use super::{accept_selecting, bind, spec, Accepted, ProbeSession, Results};
pub use super::{ProbeConfig, ProbeError};
use crate::case::{Failure, Level, Source};
use crate::check::{compact, ensure};
use crate::client::media::{MediaPeer, PeerReport};
use crate::client::{Event, WsClient};
use crate::report::{CaseSpec, Report};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

use Level::{Must, Should};
use Source::{Documented, Inferred};

/// The stream in the room before the client joins, and the one announced after.
const STREAM_IN_ROOM: &str = "probe-peer-a#0000A1";
const STREAM_ADDED: &str = "probe-peer-b#0000B1";
const SFU_ID: &str = "probe_sfu";

pub const CASES: &[CaseSpec] = &[
    spec(
        "sfu-client/connection/peer-query",
        Must,
        Documented("004 §5 websocket连接: ws://$host:$port/ws?peer=$uid"),
        "nothing: the client connects",
        "the URL carries a non-empty peer",
    ),
    spec(
        "sfu-client/connection/protoo-subprotocol",
        Should,
        Inferred("S1: protoo clients ask for the `protoo` subprotocol"),
        "nothing",
        "the handshake offers Sec-WebSocket-Protocol: protoo",
    ),
    spec(
        "sfu-client/join/first-request",
        Must,
        Documented("004 §5 加入房间"),
        "nothing",
        "the first frame is {request: true, id: <integer>, method: join, data: {rid: <string>}}",
    ),
    spec(
        "sfu-client/requests/integer-unique-ids",
        Must,
        Inferred("S2: protoo request ids are integers, one per request"),
        "answers to every request",
        "every request is {request: true} with an integer id not used before",
    ),
    spec(
        "sfu-client/keepalive/sent",
        Must,
        Inferred("S6: a client sends keepalive with its rid, every 20 s or less"),
        "nothing for a while",
        "a keepalive naming the joined rid within twice the probe's wait",
    ),
    spec(
        "sfu-client/publish/offer",
        Must,
        Documented("004 §5 发布流; §1 opus, vp8"),
        "nothing",
        "publish carries the rid, jsep {type: offer, sdp} with an Opus or VP8 line, and a well-typed minfo if any",
    ),
    spec(
        "sfu-client/publish/media-arrives",
        Must,
        Documented("004 §1 基于SFU架构，音频支持opus，视频支持vp8"),
        "an SDP answer from the suite's peer",
        "Opus or VP8 samples reach the suite within the wait",
    ),
    spec(
        "sfu-client/subscribe/pubs-from-join",
        Must,
        Documented("004 §5 加入房间 pubs; 订阅流"),
        "a join answer whose pubs hold one stream",
        "a subscribe for that mid with an offer, and its peer connection connects",
    ),
    spec(
        "sfu-client/subscribe/on-stream-add",
        Must,
        Documented("004 §5 有人发布流; 订阅流"),
        "stream-add for a new mid",
        "a subscribe for that mid",
    ),
];

/// What the session has seen.
#[derive(Default)]
struct Session {
    rid: Option<String>,
    ids: HashSet<u64>,
    keepalive: bool,
    published: Option<MediaPeer>,
    /// Subscriptions by mid.
    subscribed: HashMap<String, MediaPeer>,
    announced: bool,
    next_sid: u32,
}

impl Session {
    fn done(&self) -> bool {
        self.keepalive
            && self.published.is_some()
            && self.subscribed.contains_key(STREAM_IN_ROOM)
            && self.subscribed.contains_key(STREAM_ADDED)
    }
}

pub async fn run_probe(config: &ProbeConfig) -> Result<Report, ProbeError> {
    run_probe_on(bind(config).await?, config).await
}

/// The probe on a listener the caller bound (tests start the client in-process).
pub async fn run_probe_on(
    listener: TcpListener,
    config: &ProbeConfig,
) -> Result<Report, ProbeError> {
    let session = ProbeSession::start(&listener, config, "/ws", "SFU")?;
    let mut results = Results::default();
    let stop = drive(&listener, config.wait, &session, &mut results).await;
    Ok(session.report("sfu-client", CASES, results, stop, config))
}

async fn drive(
    listener: &TcpListener,
    wait: Duration,
    probe: &ProbeSession,
    results: &mut Results,
) -> Result<(), String> {
    let accepted =
        accept_selecting(listener, wait, &probe.transcript, "SFU", Some("protoo")).await?;
    let Accepted {
        mut client,
        uri,
        offered,
    } = accepted;
    results.check("sfu-client/connection/peer-query", peer_query(&uri));
    let protoo = offered.iter().any(|p| p == "protoo");
    results.check(
        "sfu-client/connection/protoo-subprotocol",
        ensure(protoo, "protoo offered", format!("{offered:?}")),
    );
    let mut session = Session::default();
    let first = next_request(&mut client, wait).await?;
    results.check("sfu-client/join/first-request", join_shape(&first));
    handle(&mut client, &first, &mut session, results).await?;
    let deadline = Instant::now() + wait * 2;
    while !session.done() && Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        match client.next_event_within(left).await {
            Event::Json(request) => handle(&mut client, &request, &mut session, results).await?,
            Event::Silence(_) => {}
            other => return Err(format!("the client went away: {}", other.describe())),
        }
        announce_once(&mut client, &mut session).await?;
    }
    grade_end(&session, wait, results).await;
    Ok(())
}

fn peer_query(uri: &str) -> Result<(), Failure> {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let peer = query.split('&').find_map(|pair| pair.strip_prefix("peer="));
    ensure(peer.is_some_and(|p| !p.is_empty()), "/ws?peer=<uid>", uri)
}

async fn next_request(client: &mut WsClient, wait: Duration) -> Result<Value, String> {
    match client.next_event_within(wait).await {
        Event::Json(value) => Ok(value),
        other => Err(format!("no request from the client: {}", other.describe())),
    }
}

fn join_shape(request: &Value) -> Result<(), Failure> {
    let ok = request["request"] == true
        && request["id"].is_u64()
        && request["method"] == "join"
        && request["data"]["rid"]
            .as_str()
            .is_some_and(|r| !r.is_empty());
    ensure(
        ok,
        "{request: true, id: <integer>, method: join, data: {rid}}",
        compact(request),
    )
}

/// Answers one request as an SFU would, grading what it shows.
async fn handle(
    client: &mut WsClient,
    request: &Value,
    session: &mut Session,
    results: &mut Results,
) -> Result<(), String> {
    let id = request["id"].as_u64();
    let fresh = id.is_some_and(|id| session.ids.insert(id));
    let well_formed = request["request"] == true && fresh;
    results.worst(
        "sfu-client/requests/integer-unique-ids",
        ensure(
            well_formed,
            "a request with an integer id not used before",
            compact(request),
        ),
    );
    let Some(id) = id else {
        return Ok(());
    };
    let data = &request["data"];
    let reply = match request["method"].as_str().unwrap_or_default() {
        "join" => join_answer(data, session),
        "keepalive" => {
            session.keepalive |= session.rid.is_some() && data["rid"] == json!(session.rid);
            Ok(json!({}))
        }
        "publish" => publish_answer(data, session, results).await,
        "subscribe" => subscribe_answer(data, session, results).await,
        _ => Ok(json!({})),
    };
    let message = match reply {
        Ok(data) => json!({"response": true, "id": id, "ok": true, "data": data}),
        Err(reason) => {
            json!({"response": true, "id": id, "ok": false, "errorCode": "probe_refused", "errorReason": reason})
        }
    };
    client.send_json(&message).await.map_err(|e| e.to_string())
}

fn join_answer(data: &Value, session: &mut Session) -> Result<Value, String> {
    let rid = data["rid"].as_str().unwrap_or("probe-room").to_owned();
    session.rid = Some(rid.clone());
    let minfo = json!({"audio": true, "video": true, "audiotype": 0, "videotype": 0});
    let stream = json!({"mid": STREAM_IN_ROOM, "minfo": minfo, "rid": rid, "sfuid": SFU_ID, "uid": "probe-peer-a"});
    let user = json!({"uid": "probe-peer-a", "rid": rid, "signalid": "probe_signal"});
    Ok(json!({"pubs": [stream], "users": [user]}))
}

async fn publish_answer(
    data: &Value,
    session: &mut Session,
    results: &mut Results,
) -> Result<Value, String> {
    let offer = data["jsep"]["sdp"].as_str().unwrap_or_default();
    results.check(
        "sfu-client/publish/offer",
        publish_shape(data, session.rid.as_deref()),
    );
    let (peer, answer) = MediaPeer::answering(offer, false).await?;
    session.published = Some(peer);
    let mid = "client-stream#00C1";
    Ok(json!({"jsep": {"type": "answer", "sdp": answer}, "mid": mid, "sfuid": SFU_ID}))
}

fn publish_shape(data: &Value, rid: Option<&str>) -> Result<(), Failure> {
    let sdp = data["jsep"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let codec = sdp.contains(" opus/48000") || sdp.contains(" vp8/90000");
    let minfo = &data["minfo"];
    let minfo_ok = minfo.is_null()
        || (minfo["audio"].is_boolean()
            && minfo["video"].is_boolean()
            && minfo["audiotype"].is_i64()
            && minfo["videotype"].is_i64());
    let ok = data["rid"].as_str() == rid && data["jsep"]["type"] == "offer" && codec && minfo_ok;
    ensure(
        ok,
        "rid, jsep {type: offer} with an Opus or VP8 rtpmap, and a typed minfo",
        compact(data),
    )
}

async fn subscribe_answer(
    data: &Value,
    session: &mut Session,
    results: &mut Results,
) -> Result<Value, String> {
    let mid = data["mid"].as_str().unwrap_or_default().to_owned();
    let offer = data["jsep"]["sdp"].as_str().unwrap_or_default();
    let shaped = data["jsep"]["type"] == "offer" && !offer.is_empty();
    if mid == STREAM_ADDED {
        let expected = format!("subscribe {{mid: {STREAM_ADDED}, jsep: offer}}");
        results.check(
            "sfu-client/subscribe/on-stream-add",
            ensure(shaped, expected, compact(data)),
        );
    }
    if mid != STREAM_IN_ROOM && mid != STREAM_ADDED {
        return Err(format!("no stream {mid:?} in this room"));
    }
    let (peer, answer) = MediaPeer::answering(offer, true).await?;
    session.subscribed.insert(mid, peer);
    session.next_sid += 1;
    let sid = format!("probe-sid#{:04X}", session.next_sid);
    Ok(json!({"jsep": {"type": "answer", "sdp": answer}, "sid": sid}))
}

/// Once the client has published (or a second after join), announce a second stream.
async fn announce_once(client: &mut WsClient, session: &mut Session) -> Result<(), String> {
    let Some(rid) = session.rid.clone().filter(|_| !session.announced) else {
        return Ok(());
    };
    if session.published.is_none() && !session.subscribed.contains_key(STREAM_IN_ROOM) {
        return Ok(());
    }
    session.announced = true;
    let minfo = json!({"audio": true, "video": true, "audiotype": 0, "videotype": 0});
    let data = json!({"rid": rid, "uid": "probe-peer-b", "mid": STREAM_ADDED, "sfuid": SFU_ID, "minfo": minfo});
    let message = json!({"notification": true, "method": "stream-add", "data": data});
    client.send_json(&message).await.map_err(|e| e.to_string())
}

/// The cases graded from the whole session: keepalive, media, subscriptions.
async fn grade_end(session: &Session, wait: Duration, results: &mut Results) {
    let window = format!("within {} s", (wait * 2).as_secs());
    results.check(
        "sfu-client/keepalive/sent",
        ensure(
            session.keepalive,
            format!("a keepalive with the rid {window}"),
            "none",
        ),
    );
    let published = match &session.published {
        Some(peer) => peer
            .wait_for(wait, |r| r.audio_received + r.video_received > 0)
            .await
            .map(|_| ())
            .map_err(|r| media_missing(&r)),
        None => Err(Failure::mismatch(
            "a publish",
            format!("no publish {window}"),
        )),
    };
    results.check("sfu-client/publish/media-arrives", published);
    let in_room = match session.subscribed.get(STREAM_IN_ROOM) {
        Some(peer) => peer
            .wait_for(wait, |r| r.connected)
            .await
            .map(|_| ())
            .map_err(|_| {
                Failure::mismatch(
                    "the subscription's peer connection to connect",
                    "ICE and DTLS did not complete",
                )
            }),
        None => Err(Failure::mismatch(
            format!("a subscribe for {STREAM_IN_ROOM}"),
            format!("none {window}"),
        )),
    };
    results.check("sfu-client/subscribe/pubs-from-join", in_room);
    if !session.subscribed.contains_key(STREAM_ADDED) {
        let expected = format!("a subscribe for {STREAM_ADDED}");
        results.check(
            "sfu-client/subscribe/on-stream-add",
            Err(Failure::mismatch(expected, format!("none {window}"))),
        );
    }
}

fn media_missing(report: &PeerReport) -> Failure {
    Failure::mismatch(
        "Opus or VP8 samples from the client",
        format!(
            "none (the peer connection {})",
            if report.connected {
                "connected"
            } else {
                "did not connect"
            }
        ),
    )
}

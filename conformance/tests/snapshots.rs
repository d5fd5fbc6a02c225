//! Transcript snapshots of whole nodemgr, cmdrelay and logrtc signaling exchanges against the
//! reference server, with ids, timestamps, ports and timings redacted. `cargo insta review` after an intended change.

use conformance::client::{Transcript, WsClient};
use conformance::target::InProcess;
use conformance::wire::cmdrelay;
use conformance::wire::nodemgr as wire;
use conformance::Target;
use reference_server::faults::Faults;
use std::time::Duration;

/// Replaces what changes from run to run with stable placeholders.
fn redact(line: &str) -> String {
    let uuid =
        regex_lite::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
            .expect("re");
    let stamp =
        regex_lite::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").expect("re");
    let port = regex_lite::Regex::new(r"127\.0\.0\.1:\d+").expect("re");
    let timing = regex_lite::Regex::new(r"^\s*\d+ms ").expect("re");
    let node = regex_lite::Regex::new(r"conformance-[0-9a-f-]{13}").expect("re");
    let token = regex_lite::Regex::new(r"[0-9a-f]{32}").expect("re");
    let line = timing.replace(line, "");
    let line = uuid.replace_all(&line, "[uuid]");
    let line = stamp.replace_all(&line, "[timestamp]");
    let line = port.replace_all(&line, "127.0.0.1:[port]");
    let line = token.replace_all(&line, "[token]");
    node.replace_all(&line, "[node]").into_owned()
}

#[tokio::test]
async fn the_full_nodemgr_exchange() {
    let wait = Duration::from_secs(5);
    let target = Target::in_process(Faults::none(), wait)
        .await
        .expect("server");
    let endpoint = target.nodemgr.clone().expect("nodemgr endpoint");
    let operator = endpoint.operator.clone().expect("operator API");
    let transcript = Transcript::default();
    let node_id = format!("conformance-{}", &wire::fresh_id()[..13]);
    let url = endpoint.url(Some(&endpoint.token), Some(&node_id));
    let mut ws = WsClient::connect("node", &url, &transcript, wait)
        .await
        .expect("connect");
    ws.expect_type("welcome").await.expect("welcome");
    ws.send_json(&wire::node_register(&wire::fresh_id(), &node_id))
        .await
        .expect("send");
    ws.expect_type("register_response").await.expect("response");
    ws.send_json(&wire::heartbeat(
        &wire::fresh_id(),
        &node_id,
        wire::metrics(0.0),
    ))
    .await
    .expect("send");
    ws.expect_type("heartbeat_ack").await.expect("ack");
    let command_id = operator
        .send_command(&node_id, "echo snapshot", 30)
        .await
        .expect("command");
    let execute = ws.expect_type("execute_command").await.expect("execute");
    let execute_id = execute["id"].as_str().expect("id");
    ws.send_json(&wire::command_started(execute_id, &command_id))
        .await
        .expect("send");
    ws.send_json(&wire::command_result(
        &wire::fresh_id(),
        &command_id,
        0,
        "snapshot\n",
        "",
    ))
    .await
    .expect("send");
    ws.expect_type("command_received").await.expect("received");
    ws.send_json(&wire::envelope(
        "invalid_type",
        &wire::fresh_id(),
        serde_json::json!({}),
    ))
    .await
    .expect("send");
    ws.expect_type("error").await.expect("error");
    ws.send_text("not json").await.expect("send");
    ws.expect_type("error").await.expect("error");
    let lines: Vec<String> = transcript.lines().iter().map(|l| redact(l)).collect();
    let command_line = regex_lite::Regex::new(r"cmd-\[uuid\]").expect("re");
    let text = command_line
        .replace_all(&lines.join("\n"), "[command]")
        .into_owned();
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn the_full_cmdrelay_exchange() {
    let wait = Duration::from_secs(5);
    // No heartbeat during the exchange: the transcript must not depend on timing.
    let mut settings = InProcess::with_faults(Faults::none());
    settings.cmdrelay.session.heartbeat_period = Duration::from_secs(3600);
    let target = Target::in_process_with(settings, wait)
        .await
        .expect("server");
    let endpoint = target.cmdrelay.clone().expect("cmdrelay endpoint");
    let tokens = endpoint.tokens.rooms(1).await.expect("a token");
    let transcript = Transcript::default();
    let connect = |name: &'static str| WsClient::connect(name, &endpoint.ws_url, &transcript, wait);
    let mut controller = connect("controller").await.expect("connect");
    controller
        .send_json(&cmdrelay::init(tokens.get(0)))
        .await
        .expect("send");
    controller
        .expect_message("init answer")
        .await
        .expect("answer");
    controller
        .send_json(&cmdrelay::check_device())
        .await
        .expect("send");
    controller.expect_message("alone").await.expect("answer");
    let mut device = connect("device").await.expect("connect");
    device
        .send_json(&cmdrelay::init(tokens.get(0)))
        .await
        .expect("send");
    device.expect_message("init answer").await.expect("answer");
    controller
        .send_json(&cmdrelay::check_device())
        .await
        .expect("send");
    controller.expect_message("two").await.expect("answer");
    controller
        .send_json(&cmdrelay::execute("uptime"))
        .await
        .expect("send");
    device
        .expect_message("relayed execute")
        .await
        .expect("relay");
    device
        .send_json(&cmdrelay::execute_result("up 1 day"))
        .await
        .expect("send");
    controller
        .expect_message("relayed result")
        .await
        .expect("relay");
    controller
        .send_text(r#"{"cmd":"reboot"}"#)
        .await
        .expect("send");
    controller
        .expect_message("unknown cmd")
        .await
        .expect("error");
    let mut stranger = connect("stranger").await.expect("connect");
    stranger
        .send_json(&cmdrelay::init("not-a-token"))
        .await
        .expect("send");
    stranger.expect_message("refusal").await.expect("refusal");
    stranger.next_event().await;
    let lines: Vec<String> = transcript.lines().iter().map(|l| redact(l)).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

/// Sends `message` from `ws` and waits for a message of type `answer` on `to`.
async fn hand_over(ws: &mut WsClient, message: serde_json::Value, to: &mut WsClient, answer: &str) {
    ws.send_json(&message).await.expect("send");
    to.expect_type(answer).await.expect(answer);
}

#[tokio::test]
async fn the_full_logrtc_signaling_exchange() {
    use conformance::wire::logrtc;
    let wait = Duration::from_secs(5);
    let target = Target::in_process(Faults::none(), wait)
        .await
        .expect("server");
    let url = target.logrtc.clone().expect("logrtc endpoint").ws_url;
    let transcript = Transcript::default();
    let connect = |name: &'static str| WsClient::connect(name, &url, &transcript, wait);
    let mut producer = connect("producer").await.expect("connect");
    let mut consumer = connect("consumer").await.expect("connect");
    let (p, c) = (&mut producer, &mut consumer);
    p.send_json(&logrtc::register_producer("snap-producer"))
        .await
        .expect("send");
    p.expect_type("registered").await.expect("registered");
    for (message, answer) in [
        (logrtc::register_consumer("snap-consumer"), "registered"),
        (logrtc::list_producers(), "producer_list"),
        (logrtc::watch("snap-producer"), "watching"),
    ] {
        c.send_json(&message).await.expect("send");
        c.expect_type(answer).await.expect(answer);
    }
    p.expect_type("consumer_connected").await.expect("told");
    let sdp = logrtc::opaque_sdp;
    hand_over(
        p,
        logrtc::offer("snap-consumer", &sdp("offer")),
        c,
        "webrtc_offer",
    )
    .await;
    hand_over(
        c,
        logrtc::answer("snap-producer", &sdp("answer")),
        p,
        "webrtc_answer",
    )
    .await;
    let candidate = "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host";
    hand_over(
        p,
        logrtc::candidate("snap-consumer", candidate, 0),
        c,
        "ice_candidate",
    )
    .await;
    c.send_json(&logrtc::offer("nobody", "v=0"))
        .await
        .expect("send");
    c.expect_type("error").await.expect("unknown recipient");
    c.send_text("{").await.expect("send");
    c.expect_type("error").await.expect("bad json");
    let unwatch = serde_json::json!({"type": "unwatch", "producer_id": "snap-producer"});
    c.send_json(&unwatch).await.expect("send");
    c.expect_type("unwatched").await.expect("unwatched");
    p.expect_type("consumer_disconnected").await.expect("told");
    let lines: Vec<String> = transcript.lines().iter().map(|l| redact(l)).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

#[tokio::test]
async fn the_full_sfu_signaling_exchange() {
    use conformance::wire::sfu;
    let wait = Duration::from_secs(5);
    let target = Target::in_process(Faults::none(), wait)
        .await
        .expect("server");
    let endpoint = target.sfu.clone().expect("sfu endpoint");
    let transcript = Transcript::default();
    let (alice_url, bob_url) = (endpoint.peer_url("alice"), endpoint.peer_url("bob"));
    let mut alice = WsClient::connect("alice", &alice_url, &transcript, wait)
        .await
        .expect("connect");
    let mut bob = WsClient::connect("bob", &bob_url, &transcript, wait)
        .await
        .expect("connect");
    let room = sfu::join("snap-room");
    alice
        .send_json(&sfu::request(1, "join", room.clone()))
        .await
        .expect("send");
    alice.expect_message("join answer").await.expect("answer");
    bob.send_json(&sfu::request(1, "join", room.clone()))
        .await
        .expect("send");
    bob.expect_message("join answer").await.expect("answer");
    alice.expect_message("peer-join").await.expect("told");
    let hello = sfu::broadcast("snap-room", serde_json::json!({"text": "hello"}));
    bob.send_json(&sfu::request(2, "broadcast", hello))
        .await
        .expect("send");
    bob.expect_message("broadcast answer")
        .await
        .expect("answer");
    alice.expect_message("broadcast").await.expect("told");
    alice
        .send_json(&sfu::request(2, "keepalive", room.clone()))
        .await
        .expect("send");
    alice
        .expect_message("keepalive answer")
        .await
        .expect("answer");
    alice
        .send_json(&sfu::request(3, "dance", room.clone()))
        .await
        .expect("send");
    alice.expect_message("unknown method").await.expect("error");
    let string_id =
        serde_json::json!({"request": true, "id": "4", "method": "keepalive", "data": room});
    alice.send_json(&string_id).await.expect("send");
    alice.expect_message("string id").await.expect("error");
    bob.send_json(&sfu::request(3, "leave", sfu::room("snap-room")))
        .await
        .expect("send");
    bob.expect_message("leave answer").await.expect("answer");
    alice.expect_message("peer-leave").await.expect("told");
    let lines: Vec<String> = transcript.lines().iter().map(|l| redact(l)).collect();
    insta::assert_snapshot!(lines.join("\n"));
}

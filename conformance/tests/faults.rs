//! Every fault of the reference server must make the suite report the expected cases as
//! failing, and the clean server must pass every case: the suite can fail, and does not fail
//! the right implementation.

use conformance::runner::{run, RunOptions};
use conformance::{Report, Target};
use reference_server::faults::{Fault, Faults};
use std::time::Duration;

/// Which cases each fault must fail (with `--strict`, so that SHOULD cases count too).
fn expected_failures(fault: Fault) -> &'static [&'static str] {
    use Fault::*;
    match fault {
        NodemgrNoWelcome => &[
            "nodemgr/connection/welcome-first",
            "nodemgr/register/response-success",
        ],
        NodemgrIgnoreUrlNodeId => &[
            "nodemgr/connection/welcome-echoes-url-node-id",
            "nodemgr/register/without-node-id-uses-connection-id",
        ],
        NodemgrSequentialNodeIds => &["nodemgr/connection/generated-node-id-is-uuid"],
        NodemgrAcceptAnyToken => &[
            "nodemgr/connection/wrong-token-rejected",
            "nodemgr/connection/missing-token-rejected",
        ],
        NodemgrUnixTimestamps => &["nodemgr/envelope/timestamps-rfc3339"],
        NodemgrCounterIds => &[
            "nodemgr/envelope/core-ids-are-uuid-v4",
            "nodemgr/command/execute-command-delivered",
        ],
        NodemgrRegisterFreshId => &["nodemgr/register/response-echoes-request-id"],
        NodemgrRegisterFailure => &[
            "nodemgr/register/response-success",
            "nodemgr/heartbeat/ack-echoes-request-id",
        ],
        NodemgrAckFreshId => &[
            "nodemgr/heartbeat/ack-echoes-request-id",
            "nodemgr/heartbeat/each-acked-in-order",
        ],
        NodemgrAckReceivedFalse => &["nodemgr/heartbeat/ack-received-true"],
        NodemgrDropMetrics => &["nodemgr/heartbeat/metrics-stored"],
        NodemgrAcceptUnregistered => &[
            "nodemgr/heartbeat/before-register-is-node-not-found",
            "nodemgr/command/result-before-register-is-node-not-found",
        ],
        NodemgrNoCommandReceived => &[
            "nodemgr/command/result-acknowledged",
            "nodemgr/command/result-stored",
        ],
        NodemgrResultNotStored => &["nodemgr/command/result-stored"],
        NodemgrNoCommandTimeout => &["nodemgr/command/timeout-reported"],
        NodemgrUnknownTypeAsParseError => &["nodemgr/errors/unknown-type"],
        NodemgrSilentOnParseError => &[
            "nodemgr/errors/malformed-json-is-parse-error",
            "nodemgr/errors/missing-envelope-field-is-parse-error",
            "nodemgr/errors/wrong-field-type-is-parse-error",
            "nodemgr/errors/connection-survives-errors",
        ],
        NodemgrCloseOnError => &["nodemgr/errors/connection-survives-errors"],
        NodemgrAbortOnBinary => &["nodemgr/robustness/binary-frame"],
        NodemgrStallOnFlood => &["nodemgr/robustness/flood-leaves-others-unharmed"],
        NodemgrHangOnOversized => &["nodemgr/robustness/oversized-frame"],
        NodemgrWelcomeWithoutMessage => &["nodemgr/connection/welcome-has-message"],
        NodemgrFixedGeneratedNodeId => &["nodemgr/connection/generated-node-ids-differ"],
        NodemgrNullAckData => &[
            "nodemgr/envelope/fields-present-and-typed",
            "nodemgr/heartbeat/ack-received-true",
        ],
        NodemgrRegisterWrongNodeId => &["nodemgr/register/response-echoes-node-id"],
        NodemgrTerseMessages => &[
            "nodemgr/register/response-has-message",
            "nodemgr/errors/unknown-type-lists-supported-types",
            "nodemgr/errors/error-has-code-message-details",
        ],
        NodemgrDropNodeInfo => &["nodemgr/register/node-stored"],
        NodemgrAllowNodeIdChange => &["nodemgr/register/node-id-cannot-change"],
        NodemgrAckWrongNodeId => &["nodemgr/heartbeat/ack-names-the-node"],
        NodemgrIgnoreForeignNodeId => &["nodemgr/heartbeat/foreign-node-id-is-node-not-found"],
        NodemgrIgnoreCommandStarted => &["nodemgr/command/queued-until-started"],
        NodemgrAcceptUnknownCommands => &[
            "nodemgr/command/unknown-result-not-received",
            "nodemgr/command/unknown-started-not-received",
        ],
        NodemgrLenientTimestamps => &["nodemgr/errors/bad-timestamp-is-parse-error"],
        NodemgrFreshErrorIds => &["nodemgr/errors/error-echoes-request-id"],
        NodemgrAbortOnInvalidUtf8 => &["nodemgr/robustness/invalid-utf8"],
        CmdrelayAcceptAnyToken => &[
            "cmdrelay/token/unknown-token-gets-error-response",
            "cmdrelay/token/unknown-token-closes-connection",
            "cmdrelay/token/missing-token-rejected",
            "cmdrelay/token/expired-token-rejected",
        ],
        CmdrelayKeepOpenOnBadToken => &[
            "cmdrelay/token/unknown-token-closes-connection",
            "cmdrelay/token/missing-token-rejected",
            "cmdrelay/token/expired-token-rejected",
        ],
        CmdrelaySilentTokenRejection => &[
            "cmdrelay/token/unknown-token-gets-error-response",
            "cmdrelay/token/missing-token-rejected",
        ],
        CmdrelayNoInitResponse => &[
            "cmdrelay/init/accepted-with-response",
            "cmdrelay/init/response-fields-typed",
            "cmdrelay/device/alone-is-zero",
        ],
        CmdrelaySharedSessionId => &[
            "cmdrelay/init/tokens-have-distinct-session-ids",
            "cmdrelay/init/room-removed-with-last-client",
        ],
        CmdrelaySessionPerClient => &["cmdrelay/init/same-token-shares-session-id"],
        CmdrelayKeepEmptyRooms => &["cmdrelay/init/room-removed-with-last-client"],
        CmdrelayGhostMembers => &[
            "cmdrelay/device/count-drops-when-client-leaves",
            "cmdrelay/device/abrupt-disconnect-leaves-no-ghost",
            "cmdrelay/init/room-removed-with-last-client",
        ],
        CmdrelayNoHeartbeat => &["cmdrelay/heartbeat/shape", "cmdrelay/heartbeat/period"],
        CmdrelayHeartbeatWrongShape => &["cmdrelay/heartbeat/shape"],
        CmdrelaySlowHeartbeat => &["cmdrelay/heartbeat/period"],
        CmdrelayHeartbeatBeforeInit => &["cmdrelay/heartbeat/not-before-init"],
        CmdrelayCheckDeviceAlwaysOne => &[
            "cmdrelay/device/alone-is-zero",
            "cmdrelay/device/counts-only-own-room",
            "cmdrelay/device/count-drops-when-client-leaves",
            "cmdrelay/device/abrupt-disconnect-leaves-no-ghost",
        ],
        CmdrelayCheckDeviceAlwaysZero => &[
            "cmdrelay/device/two-clients-is-one",
            "cmdrelay/init/second-init-does-not-move-client",
        ],
        CmdrelayAnswerBeforeInit => &[
            "cmdrelay/order/check-device-before-init-not-answered",
            "cmdrelay/order/error-before-init",
        ],
        CmdrelayReinitSwitchesRoom => &[
            "cmdrelay/init/second-init-does-not-move-client",
            "cmdrelay/init/second-init-answered-with-error",
        ],
        CmdrelayEchoToSender => &[
            "cmdrelay/relay/execute-not-echoed-to-sender",
            "cmdrelay/relay/execute-result-not-echoed-to-sender",
        ],
        CmdrelayRelayAcrossRooms => &["cmdrelay/relay/isolated-between-rooms"],
        CmdrelayDropExecuteResult => &[
            "cmdrelay/relay/execute-result-reaches-others",
            "cmdrelay/relay/execute-result-not-echoed-to-sender",
        ],
        CmdrelayMangleRelay => &[
            "cmdrelay/relay/execute-reaches-others",
            "cmdrelay/relay/execute-result-reaches-others",
            "cmdrelay/relay/preserves-extra",
        ],
        CmdrelayAnswerRelay => &[
            "cmdrelay/relay/execute-not-echoed-to-sender",
            "cmdrelay/relay/execute-result-not-echoed-to-sender",
        ],
        CmdrelayReorderRelays => &["cmdrelay/relay/keeps-order"],
        CmdrelaySilentOnError => &[
            "cmdrelay/errors/malformed-json-answered",
            "cmdrelay/errors/missing-cmd-answered",
            "cmdrelay/errors/unknown-cmd-answered",
            "cmdrelay/errors/error-response-shape",
            "cmdrelay/order/error-before-init",
            "cmdrelay/init/second-init-answered-with-error",
        ],
        CmdrelayCloseOnError => &[
            "cmdrelay/errors/connection-survives-errors",
            "cmdrelay/order/init-after-early-error-works",
        ],
        CmdrelayAbortOnBinary => &["cmdrelay/robustness/binary-frame"],
        CmdrelayAbortOnInvalidUtf8 => &["cmdrelay/robustness/invalid-utf8"],
        CmdrelayHangOnOversized => &["cmdrelay/robustness/oversized-frame"],
        CmdrelayNumericCodes => &[
            "cmdrelay/init/response-fields-typed",
            "cmdrelay/device/response-shape",
            "cmdrelay/heartbeat/shape",
        ],
        CmdrelayRelayBeforeInit => &["cmdrelay/order/execute-before-init-not-relayed"],
        CmdrelayCountAllClients => &["cmdrelay/device/counts-only-own-room"],
        CmdrelayRelayToOne => &["cmdrelay/relay/reaches-every-other-client"],
        CmdrelayStallOnFlood => &["cmdrelay/robustness/flood-leaves-others-unharmed"],
        EcaptureTextHeartbeats => &["ecapture/frame/binary"],
        EcaptureTruncatedEvents => &["ecapture/frame/decodes-as-log-entry"],
        EcaptureUnknownField => &["ecapture/frame/no-unknown-fields"],
        EcaptureLogTypeMismatch => &["ecapture/log-type/agrees-with-payload"],
        EcapturePayloadMissing => &["ecapture/frame/payload-present"],
        EcaptureWrongLength => &["ecapture/event/length-equals-payload"],
        EcapturePortOverflow => &["ecapture/event/ports-in-range"],
        EcaptureBadIp => &["ecapture/event/addresses-are-ips"],
        EcaptureEventSeconds => &["ecapture/event/timestamp-nanoseconds"],
        EcaptureOddUuids => &["ecapture/event/uuid-shape"],
        EcaptureUnknownEventType => &["ecapture/event/type-known"],
        EcaptureNoHeartbeat => &[
            "ecapture/heartbeat/at-connect",
            "ecapture/heartbeat/period",
            "ecapture/robustness/ignores-client-frames",
        ],
        EcaptureNoConnectHeartbeat => &["ecapture/heartbeat/at-connect"],
        EcaptureSlowHeartbeat => &["ecapture/heartbeat/period"],
        EcaptureSharedHeartbeatCount => &["ecapture/heartbeat/count-per-connection"],
        EcaptureHeartbeatMessageVersion => &["ecapture/heartbeat/message-names-count"],
        EcaptureHeartbeatMillis => &["ecapture/heartbeat/timestamp-unix-seconds"],
        EcaptureNoStartupReplay => &["ecapture/process-log/startup-replay"],
        EcapturePlainTextLogs => &["ecapture/process-log/json-lines"],
        EcaptureCloseOnClientFrame => &["ecapture/robustness/ignores-client-frames"],
        EcaptureStallAfterReset => &["ecapture/robustness/survives-abrupt-disconnects"],
        EcaptureThinFanout => &["ecapture/fanout/every-client-full-stream"],
        EcaptureRootPathOnly => &["ecapture/handshake/any-path"],
        LogrtcNoRegisteredAck => &["logrtc/register/acknowledged"],
        LogrtcNoConsumerConnected => &[
            "logrtc/register/consumer-connected",
            "logrtc/relay/offer-reaches-consumer",
        ],
        LogrtcConsumerConnectedWithoutId => &["logrtc/register/consumer-connected"],
        LogrtcNoFrom => &["logrtc/relay/from-names-sender"],
        LogrtcRewriteSdp => &[
            "logrtc/relay/offer-reaches-consumer",
            "logrtc/relay/answer-reaches-producer",
        ],
        LogrtcDropCandidates => &[
            "logrtc/relay/candidates-both-ways",
            "logrtc/relay/keeps-order",
        ],
        LogrtcStripMlineIndex => &["logrtc/relay/candidates-both-ways"],
        LogrtcBroadcastSignals => &["logrtc/relay/only-the-addressee"],
        LogrtcRelayUnpaired => &["logrtc/relay/unpaired-refused"],
        LogrtcSilentUnknownRecipient => &["logrtc/relay/unknown-recipient-refused"],
        LogrtcSilentOnError => &[
            "logrtc/errors/bad-json-answered",
            "logrtc/errors/unknown-type-answered",
            "logrtc/errors/before-register-refused",
            "logrtc/errors/bad-role-refused",
            "logrtc/register/unknown-producer-refused",
        ],
        LogrtcCloseOnError => &[
            "logrtc/errors/bad-json-answered",
            "logrtc/errors/unknown-type-answered",
            "logrtc/errors/survives-errors",
        ],
        LogrtcKeepDuplicate => &["logrtc/register/duplicate-client-id"],
        LogrtcLeakRegistrations => &["logrtc/leave/registration-released"],
        LogrtcNoConsumerDisconnected => &["logrtc/leave/consumer-departure-told"],
        LogrtcNoProducerDisconnected => &["logrtc/leave/producer-departure-told"],
        LogrtcListWithoutMetadata => &["logrtc/register/listed-with-metadata"],
        LogrtcNoPong => &["logrtc/keepalive/ping-answered"],
        LogrtcAcceptOversized => &["logrtc/errors/oversized-frame-closed"],
        SfuNotifySender => &[
            "sfu/join/peer-join-to-others",
            "sfu/broadcast/to-others-not-sender",
            "sfu/publish/stream-add-to-others",
        ],
        SfuNoPeerJoin => &[
            "sfu/join/peer-join-to-others",
            "sfu/join/peer-join-carries-bizid",
        ],
        SfuNoPeerLeave => &[
            "sfu/leave/peer-leave-to-others",
            "sfu/leave/dropped-socket-leaves",
            "sfu/keepalive/silent-peer-removed",
        ],
        SfuGhostPeers => &[
            "sfu/leave/dropped-socket-leaves",
            "sfu/leave/streams-removed",
            "sfu/keepalive/silent-peer-removed",
        ],
        SfuKeepStreamsOnLeave => &["sfu/leave/streams-removed"],
        SfuFreshResponseId => &[
            "sfu/join/answered-with-pubs-and-users",
            "sfu/leave/answered",
            "sfu/keepalive/answered",
        ],
        SfuJoinWithoutPubs => &[
            "sfu/join/answered-with-pubs-and-users",
            "sfu/join/pubs-list-the-streams",
        ],
        SfuNoStreamAdd | SfuStreamAddWithoutMinfo => &["sfu/publish/stream-add-to-others"],
        SfuNoStreamRemove => &[
            "sfu/unpublish/stream-remove-to-others",
            "sfu/leave/streams-removed",
            "sfu/media/unpublish-stops-media",
        ],
        SfuMediaAfterUnpublish => &["sfu/media/unpublish-stops-media"],
        SfuPublishBeforeJoin => &["sfu/publish/before-join-refused"],
        SfuSubscribeAcrossRooms => &["sfu/media/other-room-gets-nothing"],
        SfuSilentErrors => &[
            "sfu/errors/unknown-method-answered",
            "sfu/errors/code-is-a-string",
            "sfu/errors/string-id-answered",
            "sfu/errors/bad-json-answered",
            "sfu/errors/missing-rid-answered",
            "sfu/errors/before-join-refused",
            "sfu/errors/oversized-answered",
            "sfu/errors/binary-answered",
            "sfu/errors/survives-errors",
            "sfu/join/second-join-refused",
            "sfu/publish/without-jsep-refused",
            "sfu/unpublish/unknown-mid-refused",
            "sfu/subscribe/missing-stream-refused",
            "sfu/subscribe/without-mid-refused",
            "sfu/unsubscribe/unknown-sid-refused",
        ],
        SfuIgnoreKeepaliveTimeout => &["sfu/keepalive/silent-peer-removed"],
        SfuNoSubprotocol => &["sfu/connection/protoo-subprotocol"],
        SfuEmptyUsers => &["sfu/join/users-list-the-room"],
        SfuBroadcastEveryRoom => &["sfu/broadcast/stays-in-room"],
        SfuPublishWithoutSfuid => &["sfu/publish/answered-with-mid-and-sfuid"],
        SfuSubscribeWithoutSid => &[
            "sfu/subscribe/answered-with-sid",
            "sfu/unsubscribe/answered",
        ],
        SfuDropMedia => &[
            "sfu/media/subscriber-receives-opus-and-vp8",
            "sfu/media/keyframe-request-reaches-publisher",
            "sfu/media/lost-video-resent",
            "sfu/media/unpublish-stops-media",
        ],
        SfuNoKeyframeRequest => &["sfu/media/keyframe-request-reaches-publisher"],
        SfuNoRetransmission => &["sfu/media/lost-video-resent"],
        // Collector faults: tests/ecapture_client_probe.rs checks them against the probe.
        CollectorNoOrigin
        | CollectorTrustLogType
        | CollectorLossyText
        | CollectorKnownTypesOnly
        | CollectorStopOnGarbage
        | CollectorSkipEmpty
        | CollectorLoseEvents
        | CollectorDropRunLogs => &[],
    }
}

/// The protocol a fault belongs to: the part of its name before the slash.
fn protocol_of(fault: Fault) -> &'static str {
    fault.name().split('/').next().unwrap_or_default()
}

fn options() -> RunOptions {
    // Short waits: a fault shows as silence, and silence costs a whole wait.
    RunOptions {
        strict: true,
        wait: Duration::from_secs(2),
        slow_wait: Duration::from_secs(6),
        concurrency: 8,
        ..RunOptions::default()
    }
}

async fn run_against(protocol: &str, faults: Faults) -> Report {
    run_selected(protocol, faults, |_| true).await
}

/// Runs the cases of `protocol` whose id `keep` accepts.
async fn run_selected(protocol: &str, faults: Faults, keep: impl Fn(&str) -> bool) -> Report {
    let options = options();
    let target = Target::in_process(faults, options.ctx_wait())
        .await
        .expect("in-process server");
    let mut cases = conformance::cases::for_protocol(protocol).expect("a protocol with cases");
    cases.retain(|c| keep(c.id));
    run(protocol, cases, &target, &options).await
}

async fn clean_server_passes(protocol: &str) {
    let report = run_against(protocol, Faults::none()).await;
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_nodemgr_case_strictly() {
    clean_server_passes("nodemgr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_cmdrelay_case_strictly() {
    clean_server_passes("cmdrelay").await;
}

/// Each fault on a server of its own, running only the cases it must fail: with the rest of
/// the protocol's cases beside them, a fault with server-wide state is set off by whichever
/// case comes first (`ecapture/stall-after-reset` stalls at any client's reset, so a case that
/// dropped a connection early left `survives-abrupt-disconnects` with no event to start from).
async fn faults_are_caught(protocol: &'static str) {
    let mut runs = tokio::task::JoinSet::new();
    for fault in Fault::ALL
        .iter()
        .copied()
        .filter(|f| protocol_of(*f) == protocol)
    {
        runs.spawn(async move {
            let expected = expected_failures(fault);
            let faults = [fault].into_iter().collect();
            let report = run_selected(protocol, faults, |id| expected.contains(&id)).await;
            (fault, report)
        });
    }
    let mut missed = Vec::new();
    while let Some(joined) = runs.join_next().await {
        let (fault, report) = joined.expect("a fault run");
        let failing = report.failing_ids();
        for id in expected_failures(fault) {
            if !failing.contains(id) {
                missed.push(format!("{fault}: {id} was {:?}", report.verdict_of(id)));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "faults the suite did not catch:\n{}",
        missed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_logrtc_case_strictly() {
    clean_server_passes("logrtc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_logrtc_fault_fails_the_cases_that_check_it() {
    faults_are_caught("logrtc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_ecapture_case_strictly() {
    clean_server_passes("ecapture").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ecapture_fault_fails_the_cases_that_check_it() {
    faults_are_caught("ecapture").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nodemgr_fault_fails_the_cases_that_check_it() {
    faults_are_caught("nodemgr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cmdrelay_fault_fails_the_cases_that_check_it() {
    faults_are_caught("cmdrelay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_sfu_case_strictly() {
    clean_server_passes("sfu").await;
}

/// The sfu faults run one after another, each against only the cases it must fail: every
/// media case starts real peer connections, and two cores hold only so many at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sfu_fault_fails_the_cases_that_check_it() {
    let mut missed = Vec::new();
    for fault in Fault::ALL
        .iter()
        .copied()
        .filter(|f| protocol_of(*f) == "sfu")
    {
        let expected = expected_failures(fault);
        let report = run_selected("sfu", [fault].into_iter().collect(), |id| {
            expected.contains(&id)
        })
        .await;
        let failing = report.failing_ids();
        for id in expected.iter().filter(|id| !failing.contains(id)) {
            missed.push(format!("{fault}: {id} was {:?}", report.verdict_of(id)));
        }
    }
    assert!(
        missed.is_empty(),
        "faults the suite did not catch:\n{}",
        missed.join("\n")
    );
}

#[test]
fn every_case_is_failed_by_some_fault() {
    let covered: Vec<&str> = Fault::ALL
        .iter()
        .flat_map(|f| expected_failures(*f).iter().copied())
        .collect();
    let uncovered: Vec<_> = conformance::cases::PROTOCOLS
        .iter()
        .flat_map(|p| conformance::cases::for_protocol(p).unwrap_or_default())
        .map(|c| c.id)
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        uncovered.is_empty(),
        "cases no fault fails (a case that cannot fail is suspect): {uncovered:?}"
    );
}

//! Named, deliberate deviations from the documents. They exist to prove that each conformance
//! case can fail: `reference-server --fault nodemgr/ack-fresh-id` must make the suite report
//! `nodemgr/heartbeat/ack-echoes-request-id` as failing. Never enabled by default.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

macro_rules! faults {
    ($( $variant:ident => $name:literal : $what:literal, )*) => {
        /// Every fault the reference server can inject.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Fault { $( $variant, )* }

        impl Fault {
            pub const ALL: &'static [Fault] = &[ $( Fault::$variant, )* ];

            /// The stable `<protocol>/<name>` spelling used on the command line.
            pub fn name(self) -> &'static str {
                match self { $( Fault::$variant => $name, )* }
            }

            /// One sentence on what the fault breaks.
            pub fn describe(self) -> &'static str {
                match self { $( Fault::$variant => $what, )* }
            }
        }
    };
}

faults! {
    NodemgrNoWelcome => "nodemgr/no-welcome": "never send the welcome message",
    NodemgrIgnoreUrlNodeId => "nodemgr/ignore-url-node-id": "welcome a fresh UUID instead of the node_id given in the URL",
    NodemgrSequentialNodeIds => "nodemgr/sequential-node-ids": "generate node-1, node-2, ... instead of UUIDs",
    NodemgrAcceptAnyToken => "nodemgr/accept-any-token": "welcome connections whatever their token",
    NodemgrUnixTimestamps => "nodemgr/unix-timestamps": "write timestamps as Unix seconds",
    NodemgrCounterIds => "nodemgr/counter-ids": "number server message ids 1, 2, 3 instead of UUID v4",
    NodemgrRegisterFreshId => "nodemgr/register-fresh-id": "answer node_register with a new id instead of the request's",
    NodemgrRegisterFailure => "nodemgr/register-failure": "answer every node_register with success=false",
    NodemgrAckFreshId => "nodemgr/ack-fresh-id": "answer heartbeat with a new id instead of the request's",
    NodemgrAckReceivedFalse => "nodemgr/ack-received-false": "answer heartbeat with received=false",
    NodemgrDropMetrics => "nodemgr/drop-metrics": "acknowledge heartbeats without storing their metrics",
    NodemgrAcceptUnregistered => "nodemgr/accept-unregistered": "acknowledge heartbeats and results from unregistered connections",
    NodemgrNoCommandReceived => "nodemgr/no-command-received": "never acknowledge command_result",
    NodemgrResultNotStored => "nodemgr/result-not-stored": "acknowledge command_result without storing it",
    NodemgrNoCommandTimeout => "nodemgr/no-command-timeout": "never time commands out",
    NodemgrUnknownTypeAsParseError => "nodemgr/unknown-type-as-parse-error": "answer unknown types with PARSE_ERROR",
    NodemgrSilentOnParseError => "nodemgr/silent-on-parse-error": "send nothing back for frames that fail to parse",
    NodemgrCloseOnError => "nodemgr/close-on-error": "close the connection after sending any error",
    NodemgrAbortOnBinary => "nodemgr/abort-on-binary": "drop the TCP connection without a close frame on a binary frame",
    NodemgrStallOnFlood => "nodemgr/stall-on-flood": "stop answering, without closing, after 50 messages",
    NodemgrHangOnOversized => "nodemgr/hang-on-oversized": "accept frames up to 16 MiB and ignore those over the limit",
    NodemgrWelcomeWithoutMessage => "nodemgr/welcome-without-message": "leave data.message out of the welcome",
    NodemgrFixedGeneratedNodeId => "nodemgr/fixed-generated-node-id": "give every connection without node_id the same UUID",
    NodemgrNullAckData => "nodemgr/null-ack-data": "send heartbeat_ack with data null",
    NodemgrRegisterWrongNodeId => "nodemgr/register-wrong-node-id": "answer node_register with another node_id",
    NodemgrTerseMessages => "nodemgr/terse-messages": "leave message out of register_response and details out of errors",
    NodemgrDropNodeInfo => "nodemgr/drop-node-info": "store registered nodes without hostname, ip_address and os_info",
    NodemgrAllowNodeIdChange => "nodemgr/allow-node-id-change": "let a registered connection register another node_id",
    NodemgrAckWrongNodeId => "nodemgr/ack-wrong-node-id": "name another node in heartbeat_ack",
    NodemgrIgnoreForeignNodeId => "nodemgr/ignore-foreign-node-id": "accept heartbeats that name another node",
    NodemgrIgnoreCommandStarted => "nodemgr/ignore-command-started": "never record command_started",
    NodemgrAcceptUnknownCommands => "nodemgr/accept-unknown-commands": "answer results and starts for unknown commands with received=true",
    NodemgrLenientTimestamps => "nodemgr/lenient-timestamps": "accept any timestamp string from nodes",
    NodemgrFreshErrorIds => "nodemgr/fresh-error-ids": "give errors a fresh id instead of the request's",
    NodemgrAbortOnInvalidUtf8 => "nodemgr/abort-on-invalid-utf8": "drop the TCP connection without a close frame on invalid UTF-8",
    CmdrelayAcceptAnyToken => "cmdrelay/accept-any-token": "accept init with any token, or none",
    CmdrelayKeepOpenOnBadToken => "cmdrelay/keep-open-on-bad-token": "answer a bad token with an error but keep the connection open",
    CmdrelaySilentTokenRejection => "cmdrelay/silent-token-rejection": "close on a bad token without an error response",
    CmdrelayNoInitResponse => "cmdrelay/no-init-response": "join the room without answering init",
    CmdrelaySharedSessionId => "cmdrelay/shared-session-id": "give every room the same session_id",
    CmdrelaySessionPerClient => "cmdrelay/session-per-client": "give every client its own session_id",
    CmdrelayKeepEmptyRooms => "cmdrelay/keep-empty-rooms": "keep a room (and its session_id) after its last client leaves",
    CmdrelayGhostMembers => "cmdrelay/ghost-members": "never take a disconnected client out of its room",
    CmdrelayNoHeartbeat => "cmdrelay/no-heartbeat": "never send Heartbeat",
    CmdrelayHeartbeatWrongShape => "cmdrelay/heartbeat-wrong-shape": "send {\"cmd\":\"heartbeat\",\"code\":\"0\"} as the heartbeat",
    CmdrelaySlowHeartbeat => "cmdrelay/slow-heartbeat": "send Heartbeat at three times the configured period",
    CmdrelayHeartbeatBeforeInit => "cmdrelay/heartbeat-before-init": "start heartbeats at connect instead of after init",
    CmdrelayCheckDeviceAlwaysOne => "cmdrelay/check-device-always-one": "answer checkDevice with code 1 even when alone",
    CmdrelayCheckDeviceAlwaysZero => "cmdrelay/check-device-always-zero": "answer checkDevice with code 0 even when others are there",
    CmdrelayAnswerBeforeInit => "cmdrelay/answer-before-init": "answer checkDevice before init as if in a room",
    CmdrelayReinitSwitchesRoom => "cmdrelay/reinit-switches-room": "let a second init move the client to another room",
    CmdrelayEchoToSender => "cmdrelay/echo-to-sender": "relay execute and execute_result back to their sender too",
    CmdrelayRelayAcrossRooms => "cmdrelay/relay-across-rooms": "relay to every client of every room",
    CmdrelayDropExecuteResult => "cmdrelay/drop-execute-result": "never relay execute_result",
    CmdrelayMangleRelay => "cmdrelay/mangle-relay": "relay execute and execute_result with an empty extra",
    CmdrelayAnswerRelay => "cmdrelay/answer-relay": "answer the sender of execute and execute_result",
    CmdrelayReorderRelays => "cmdrelay/reorder-relays": "relay frames in swapped pairs",
    CmdrelaySilentOnError => "cmdrelay/silent-on-error": "send no error response for bad frames",
    CmdrelayCloseOnError => "cmdrelay/close-on-error": "close the connection after any error response",
    CmdrelayAbortOnBinary => "cmdrelay/abort-on-binary": "drop the TCP connection without a close frame on a binary frame",
    CmdrelayAbortOnInvalidUtf8 => "cmdrelay/abort-on-invalid-utf8": "drop the TCP connection without a close frame on invalid UTF-8",
    CmdrelayHangOnOversized => "cmdrelay/hang-on-oversized": "accept frames up to 16 MiB and ignore those over the limit",
    CmdrelayNumericCodes => "cmdrelay/numeric-codes": "write code as a JSON number instead of a string",
    CmdrelayRelayBeforeInit => "cmdrelay/relay-before-init": "keep execute frames sent before init and relay them after it",
    CmdrelayCountAllClients => "cmdrelay/count-all-clients": "count every client of the server in checkDevice",
    CmdrelayRelayToOne => "cmdrelay/relay-to-one": "relay to one other client of the room only",
    CmdrelayStallOnFlood => "cmdrelay/stall-on-flood": "stop answering, without closing, after 50 frames",
    EcaptureTextHeartbeats => "ecapture/text-heartbeats": "send heartbeats as JSON text frames",
    EcaptureTruncatedEvents => "ecapture/truncated-events": "cut the last 3 bytes off every event frame",
    EcaptureUnknownField => "ecapture/unknown-field": "append a field the schema does not have (15) to every frame",
    EcaptureLogTypeMismatch => "ecapture/log-type-mismatch": "label events PROCESS_LOG",
    EcapturePayloadMissing => "ecapture/payload-missing": "send heartbeats with no payload at all",
    EcaptureWrongLength => "ecapture/wrong-length": "set Event.length to one more than the payload's length",
    EcapturePortOverflow => "ecapture/port-overflow": "add 65536 to src_port",
    EcaptureBadIp => "ecapture/bad-ip": "write src_ip as ip:port",
    EcaptureEventSeconds => "ecapture/event-seconds": "stamp events in Unix seconds instead of nanoseconds",
    EcaptureOddUuids => "ecapture/odd-uuids": "give events random UUIDs instead of Pid_Tid_Comm_Fd_DataType",
    EcaptureUnknownEventType => "ecapture/unknown-event-type": "send every event with type 42",
    EcaptureNoHeartbeat => "ecapture/no-heartbeat": "never send a heartbeat",
    EcaptureNoConnectHeartbeat => "ecapture/no-connect-heartbeat": "send the first heartbeat one period after connect, not at once",
    EcaptureSlowHeartbeat => "ecapture/slow-heartbeat": "send heartbeats at three times the period",
    EcaptureSharedHeartbeatCount => "ecapture/shared-heartbeat-count": "count heartbeats server-wide instead of per connection",
    EcaptureHeartbeatMessageVersion => "ecapture/heartbeat-message-version": "put a version string in Heartbeat.message",
    EcaptureHeartbeatMillis => "ecapture/heartbeat-millis": "stamp heartbeats in Unix milliseconds",
    EcaptureNoStartupReplay => "ecapture/no-startup-replay": "never replay the start-up process logs to new clients",
    EcapturePlainTextLogs => "ecapture/plain-text-logs": "send process logs as plain text instead of JSON lines",
    EcaptureCloseOnClientFrame => "ecapture/close-on-client-frame": "close a connection that sends any frame",
    EcaptureStallAfterReset => "ecapture/stall-after-reset": "stop pushing events after a client drops without a close",
    EcaptureThinFanout => "ecapture/thin-fanout": "send each connection after the first a different pseudo-random half of the events",
    EcaptureRootPathOnly => "ecapture/root-path-only": "refuse WebSocket handshakes on paths other than /",
    LogrtcNoRegisteredAck => "logrtc/no-registered-ack": "never answer register",
    LogrtcNoConsumerConnected => "logrtc/no-consumer-connected": "never tell a producer that a consumer watches it",
    LogrtcConsumerConnectedWithoutId => "logrtc/consumer-connected-without-id": "send consumer_connected without consumer_id",
    LogrtcNoFrom => "logrtc/no-from": "relay offers, answers and candidates without `from`",
    LogrtcRewriteSdp => "logrtc/rewrite-sdp": "relay SDP with its CRLF line endings turned into LF",
    LogrtcDropCandidates => "logrtc/drop-candidates": "never relay ice_candidate",
    LogrtcStripMlineIndex => "logrtc/strip-mline-index": "relay candidates without sdpMLineIndex",
    LogrtcBroadcastSignals => "logrtc/broadcast-signals": "relay a producer's signals to every consumer watching it, not only `to`",
    LogrtcRelayUnpaired => "logrtc/relay-unpaired": "relay between any two clients, watching or not",
    LogrtcSilentUnknownRecipient => "logrtc/silent-unknown-recipient": "say nothing when `to` is not registered",
    LogrtcSilentOnError => "logrtc/silent-on-error": "send no error messages, except before a close",
    LogrtcCloseOnError => "logrtc/close-on-error": "close the connection (1008) after every error",
    LogrtcKeepDuplicate => "logrtc/keep-duplicate": "accept a second registration of a client_id and keep relaying to the first",
    LogrtcLeakRegistrations => "logrtc/leak-registrations": "keep a client registered after its connection ends",
    LogrtcNoConsumerDisconnected => "logrtc/no-consumer-disconnected": "never tell a producer that a consumer left",
    LogrtcNoProducerDisconnected => "logrtc/no-producer-disconnected": "never tell consumers that a producer left",
    LogrtcListWithoutMetadata => "logrtc/list-without-metadata": "list producers without their metadata",
    LogrtcNoPong => "logrtc/no-pong": "never answer ping",
    LogrtcAcceptOversized => "logrtc/accept-oversized": "act on frames over 64 KiB instead of closing with 1009",
    SfuNotifySender => "sfu/notify-sender": "send notifications to the peer that caused them too",
    SfuNoPeerJoin => "sfu/no-peer-join": "never send peer-join",
    SfuNoPeerLeave => "sfu/no-peer-leave": "never send peer-leave",
    SfuGhostPeers => "sfu/ghost-peers": "keep a peer, its streams and its room after its socket closes",
    SfuKeepStreamsOnLeave => "sfu/keep-streams-on-leave": "keep a peer's streams published after it leaves",
    SfuFreshResponseId => "sfu/fresh-response-id": "answer with id+1 instead of the request's id",
    SfuJoinWithoutPubs => "sfu/join-without-pubs": "leave pubs out of the join response",
    SfuNoStreamAdd => "sfu/no-stream-add": "never send stream-add",
    SfuStreamAddWithoutMinfo => "sfu/stream-add-without-minfo": "send stream-add without minfo",
    SfuNoStreamRemove => "sfu/no-stream-remove": "never send stream-remove",
    SfuMediaAfterUnpublish => "sfu/media-after-unpublish": "keep forwarding a stream's media after it is unpublished",
    SfuPublishBeforeJoin => "sfu/publish-before-join": "accept publish from a peer that has not joined",
    SfuSubscribeAcrossRooms => "sfu/subscribe-across-rooms": "let a peer subscribe to a stream of another room",
    SfuSilentErrors => "sfu/silent-errors": "answer nothing to a request that fails",
    SfuIgnoreKeepaliveTimeout => "sfu/ignore-keepalive-timeout": "never remove a peer that stopped sending keepalive",
    SfuNoSubprotocol => "sfu/no-subprotocol": "never select the protoo WebSocket subprotocol",
    SfuEmptyUsers => "sfu/empty-users": "answer join with an empty users list",
    SfuBroadcastEveryRoom => "sfu/broadcast-every-room": "send broadcast notifications to the peers of every room",
    SfuPublishWithoutSfuid => "sfu/publish-without-sfuid": "answer publish without sfuid",
    SfuSubscribeWithoutSid => "sfu/subscribe-without-sid": "answer subscribe without sid",
    SfuDropMedia => "sfu/drop-media": "forward no media to subscribers",
    SfuNoKeyframeRequest => "sfu/no-keyframe-request": "never pass a subscriber's keyframe request to the publisher",
    SfuNoRetransmission => "sfu/no-retransmission": "never resend video a subscriber reports lost (NACK)",
    CollectorNoOrigin => "ecapture-collector/no-origin": "collector: send no Origin header",
    CollectorTrustLogType => "ecapture-collector/trust-log-type": "collector: decode by log_type and skip entries where it is absent",
    CollectorLossyText => "ecapture-collector/lossy-text": "collector: report every payload as lossy UTF-8 text",
    CollectorKnownTypesOnly => "ecapture-collector/known-types-only": "collector: skip events whose type is above 5",
    CollectorStopOnGarbage => "ecapture-collector/stop-on-garbage": "collector: stop at the first frame that does not decode",
    CollectorSkipEmpty => "ecapture-collector/skip-empty": "collector: skip events with an empty payload",
    CollectorLoseEvents => "ecapture-collector/lose-events": "collector: lose every 100th event",
    CollectorDropRunLogs => "ecapture-collector/drop-run-logs": "collector: skip process logs",
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown fault `{0}`; run `reference-server faults` for the list")]
pub struct UnknownFault(String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_owned()))
    }
}

/// The faults a server instance was started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(BTreeSet<Fault>);

impl Faults {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.0.contains(&fault)
    }

    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Fault> for Faults {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_name_parses_back_to_itself() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>().ok(), Some(*fault));
        }
    }

    #[test]
    fn an_unknown_fault_name_is_an_error() {
        assert!("nodemgr/nope".parse::<Fault>().is_err());
    }
}

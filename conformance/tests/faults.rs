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
    }
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

async fn run_against(faults: Faults) -> Report {
    let options = options();
    let target = Target::in_process(faults, options.ctx_wait())
        .await
        .expect("in-process server");
    let cases = conformance::cases::nodemgr::cases();
    run("nodemgr", cases, &target, &options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_reference_server_passes_every_case_strictly() {
    let report = run_against(Faults::none()).await;
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_fails_the_cases_that_check_it() {
    let mut runs = tokio::task::JoinSet::new();
    for fault in Fault::ALL
        .iter()
        .copied()
        .filter(|f| f.name().starts_with("nodemgr/"))
    {
        runs.spawn(async move { (fault, run_against([fault].into_iter().collect()).await) });
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

#[test]
fn every_case_is_failed_by_some_fault() {
    let covered: Vec<&str> = Fault::ALL
        .iter()
        .flat_map(|f| expected_failures(*f).iter().copied())
        .collect();
    let uncovered: Vec<_> = conformance::cases::nodemgr::cases()
        .into_iter()
        .map(|c| c.id)
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(
        uncovered.is_empty(),
        "cases no fault fails (a case that cannot fail is suspect): {uncovered:?}"
    );
}

//! The `conformance` command as CI uses it: exit codes, reports, expectations, spawned targets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn conformance() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conformance"))
}

fn run(args: &[&str]) -> Output {
    conformance().args(args).output().expect("conformance runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_selection_that_matches_nothing_is_an_error() {
    let output = run(&["run", "--include", "nodemgr/no-such-family/*"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no case matches"));
}

#[test]
fn an_unknown_protocol_is_an_error_that_lists_the_known_ones() {
    let output = run(&["list", "--protocol", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nodemgr"));
}

#[test]
fn a_failing_case_exits_1_and_is_in_the_json_and_junit_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    let output = run(&[
        "run",
        "--fault",
        "nodemgr/ack-received-false",
        "--include",
        "nodemgr/heartbeat/ack-*",
        "--json",
        json.to_str().expect("path"),
        "--junit",
        junit.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    assert_eq!(report["format"], "conformance-report/v1");
    assert_eq!(report["summary"]["fail"], 1);
    let failed = report["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["verdict"] == "fail")
        .expect("a failure");
    assert_eq!(failed["id"], "nodemgr/heartbeat/ack-received-true");
    assert!(!failed["transcript"]
        .as_array()
        .expect("transcript")
        .is_empty());
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        xml.contains("<failure message=") && xml.contains("name=\"ack-received-true\""),
        "{xml}"
    );
}

fn expectations(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("known.txt");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_known_failure_is_expected_and_a_passing_listed_case_is_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let known = expectations(
        dir.path(),
        "nodemgr/heartbeat/ack-received-true  answers received=false\n",
    );
    let known = known.to_str().expect("path");
    let faulty = run(&[
        "run",
        "--fault",
        "nodemgr/ack-received-false",
        "--include",
        "nodemgr/heartbeat/ack-*",
        "--expectations",
        known,
    ]);
    assert_eq!(faulty.status.code(), Some(0), "{}", stdout(&faulty));
    assert!(stdout(&faulty).contains("XFAIL"));
    let clean = run(&[
        "run",
        "--include",
        "nodemgr/heartbeat/ack-*",
        "--expectations",
        known,
    ]);
    assert_eq!(clean.status.code(), Some(1), "{}", stdout(&clean));
    assert!(stdout(&clean).contains("STALE"));
}

/// The reference server binary, built if this test run has not built it yet.
fn reference_server() -> PathBuf {
    workspace_binary("reference-server", "reference-server")
}

/// A binary of another workspace package, built if this test run has not built it yet.
fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_conformance")).with_file_name(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let built = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("cargo build");
        assert!(built.success());
    }
    path
}

#[test]
fn the_demo_producer_passes_the_logrtc_producer_probe_from_the_command_line() {
    let demo = workspace_binary("logrtc-producer", "logrtc-demo-producer");
    let demo = demo.to_string_lossy();
    let output = run(&[
        "client",
        "--protocol",
        "logrtc",
        "--role",
        "producer",
        "--wait",
        "15",
        "--",
        &demo,
        "--url",
        "{url}",
        "--rate",
        "100",
        "--seq",
    ]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(
        report.contains("logrtc-producer/channel/named-logs"),
        "{report}"
    );
}

/// `conformance <suite_args> -- reference-server` on free ports and a fresh data directory,
/// with `server_args` added.
fn run_against_spawned_server(suite_args: &[&str], server_args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = reference_server();
    let fixed = [
        "--",
        server.to_str().expect("path"),
        "--nodemgr-port",
        "0",
        "--cmdrelay-port",
        "0",
        "--ecapture-port",
        "0",
        "--logrtc-port",
        "0",
        "--sfu-port",
        "0",
        "--sfu-media-port",
        "0",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ];
    let args: Vec<&str> = [suite_args, &fixed, server_args].concat();
    run(&args)
}

/// Exit 0 and the summary line, or the whole output to say why not.
fn assert_passed(output: &Output, summary: &str) {
    let shown = format!(
        "{}{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(stdout(output).contains(summary), "{shown}");
}

#[test]
fn a_spawned_server_is_judged_once_it_prints_its_ready_line() {
    let output = run_against_spawned_server(&["run", "--include", "nodemgr/connection/*"], &[]);
    assert_passed(&output, "7 passed, 0 failed");
}

#[test]
fn the_client_command_grades_the_reference_agent() {
    let server = reference_server();
    let server = server.to_str().expect("path");
    let output = run(&[
        "client",
        "--protocol",
        "nodemgr",
        "--wait",
        "20",
        "--",
        server,
        "node-agent",
        "--url",
        "{url}",
        "--heartbeat-interval",
        "1s",
        "--allow-commands",
    ]);
    assert_passed(&output, "13 passed, 0 failed");
}

#[test]
fn a_spawned_cmdrelay_server_is_found_by_its_own_ready_line() {
    // The reference server prints a nodemgr ready line first; the suite must take the cmdrelay one.
    let suite = [
        "run",
        "--protocol",
        "cmdrelay",
        "--heartbeat-period",
        "1s",
        "--include",
        "cmdrelay/device/*",
        "--include",
        "cmdrelay/heartbeat/*",
    ];
    let output = run_against_spawned_server(&suite, &["--heartbeat-period", "1s"]);
    assert_passed(&output, "9 passed, 0 failed");
}

#[test]
fn a_spawned_ecapture_server_is_found_by_its_own_ready_line() {
    // Its ready line comes third, after nodemgr's and cmdrelay's.
    let suite = [
        "run",
        "--protocol",
        "ecapture",
        "--heartbeat-period",
        "1s",
        "--include",
        "ecapture/heartbeat/*",
        "--include",
        "ecapture/event/*",
    ];
    let server = [
        "--ecapture-heartbeat-period",
        "1s",
        "--ecapture-rate",
        "100",
    ];
    let output = run_against_spawned_server(&suite, &server);
    assert_passed(&output, "11 passed, 0 failed");
}

#[test]
fn a_spawned_logrtc_server_is_judged_on_every_signaling_case() {
    // Its ready line comes fourth and also names the viewer's http:// URL.
    let suite = ["run", "--protocol", "logrtc"];
    let output = run_against_spawned_server(&suite, &[]);
    assert_passed(&output, "23 passed, 0 failed");
}

#[test]
fn a_spawned_sfu_is_judged_with_real_media_from_its_ready_line() {
    // Its ready line comes fifth; its URL carries `?peer=<uid>`, which the suite drops.
    let suite = [
        "run",
        "--protocol",
        "sfu",
        "--keepalive-timeout",
        "2s",
        "--include",
        "sfu/join/*",
        "--include",
        "sfu/media/*",
        "--include",
        "sfu/keepalive/*",
    ];
    let server = ["--sfu-keepalive-timeout", "2s"];
    let output = run_against_spawned_server(&suite, &server);
    assert_passed(&output, "13 passed, 0 failed");
}

#[test]
fn the_client_command_grades_the_reference_collector() {
    let server = reference_server();
    let output = run(&[
        "client",
        "--protocol",
        "ecapture",
        "--wait",
        "20",
        "--",
        server.to_str().expect("path"),
        "ecapture-collect",
        "--url",
        "{url}",
        "--jsonl",
        "-",
    ]);
    assert_passed(&output, "11 passed, 0 failed");
}

#[test]
fn the_client_command_grades_the_reference_device() {
    let server = reference_server();
    let output = run(&[
        "client",
        "--protocol",
        "cmdrelay",
        "--wait",
        "20",
        "--",
        server.to_str().expect("path"),
        "device",
        "--url",
        "{url}",
    ]);
    assert_passed(&output, "9 passed, 0 failed");
    assert!(
        stdout(&output).contains("1 informational"),
        "{}",
        stdout(&output)
    );
}

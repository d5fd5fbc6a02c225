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
    let path = Path::new(env!("CARGO_BIN_EXE_conformance")).with_file_name("reference-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let built = Command::new(cargo)
            .args(["build", "-p", "reference-server"])
            .status()
            .expect("cargo build");
        assert!(built.success());
    }
    path
}

#[test]
fn a_spawned_server_is_judged_once_it_prints_its_ready_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = reference_server();
    let output = run(&[
        "run",
        "--include",
        "nodemgr/connection/*",
        "--",
        server.to_str().expect("path"),
        "--nodemgr-port",
        "0",
        "--cmdrelay-port",
        "0",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout(&output).contains("7 passed, 0 failed"),
        "{}",
        stdout(&output)
    );
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
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("13 passed, 0 failed"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_spawned_cmdrelay_server_is_found_by_its_own_ready_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = reference_server();
    // The reference server prints a nodemgr ready line first; the suite must take the cmdrelay one.
    let output = run(&[
        "run",
        "--protocol",
        "cmdrelay",
        "--heartbeat-period",
        "1s",
        "--include",
        "cmdrelay/device/*",
        "--include",
        "cmdrelay/heartbeat/*",
        "--",
        server.to_str().expect("path"),
        "--nodemgr-port",
        "0",
        "--cmdrelay-port",
        "0",
        "--heartbeat-period",
        "1s",
        "--data-dir",
        dir.path().to_str().expect("path"),
    ]);
    let shown = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(stdout(&output).contains("9 passed, 0 failed"), "{shown}");
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
    let shown = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("9 passed, 0 failed"), "{shown}");
    assert!(shown.contains("1 informational"), "{shown}");
}

//! `load nodemgr-vs-echo` with its servers in processes of their own, and `load echo-server`:
//! the run reaches both servers (heartbeats are acked and the echo answers) and reports a
//! ratio; an echo server is refused an address off loopback.

use std::process::Command;

fn load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_load"))
}

/// The number after `what` on each round's line of the report, e.g. "12345" in
/// "round 1: reference heartbeats 12345/s".
fn rate_after(report: &str, what: &str) -> Vec<f64> {
    report
        .lines()
        .filter(|line| line.starts_with("round "))
        .filter_map(|line| line.split(what).nth(1))
        .filter_map(|rest| rest.split(['/', ' ']).next())
        .filter_map(|number| number.parse().ok())
        .collect()
}

/// The reference server that `--servers processes` starts: the one beside `load`.
fn reference_server_beside_load() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_load")).with_file_name("reference-server")
}

#[test]
fn heartbeats_against_a_spawned_reference_server_are_compared_with_a_spawned_echo() {
    // `cargo test --workspace` (the README's and CI's) builds it; `-p load` alone does not.
    if !reference_server_beside_load().is_file() {
        return reference_server::externals::skip_or_fail(
            "no reference-server beside load: run `cargo build -p reference-server` first",
        );
    }
    let output = load()
        .args([
            "nodemgr-vs-echo",
            "--servers",
            "processes",
            "--connections",
            "2,4",
            "--duration",
            "300ms",
            "--rounds",
            "1",
        ])
        .output()
        .expect("load runs");
    let report = String::from_utf8_lossy(&output.stdout);
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{report}\n{progress}",
        output.status
    );
    let echoes = rate_after(&report, "bare echo ");
    let heartbeats = rate_after(&report, "reference heartbeats ");
    assert!(
        echoes.len() == 2 && echoes.iter().all(|rate| *rate > 0.0),
        "no echo round trips:\n{report}"
    );
    assert!(
        heartbeats.len() == 2 && heartbeats.iter().all(|rate| *rate > 0.0),
        "no acked heartbeats:\n{report}"
    );
    assert!(
        !report.contains("not counted"),
        "answers that were not acks:\n{report}"
    );
    for summary in [
        "median ratio, heartbeats:",
        "4 loops:",
        "peak rates (medians):",
    ] {
        assert!(report.contains(summary), "no {summary:?}:\n{report}");
    }
}

#[test]
fn the_echo_server_listens_on_loopback_only() {
    let output = load()
        .args(["echo-server", "--listen", "0.0.0.0:0"])
        .output()
        .expect("load runs");
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("loopback only"), "{error}");
}

/// `--min-ratio` turns the report into a gate: status 1 and the reason below it, 0 above;
/// `--json` writes the figures either way.
#[test]
fn a_ratio_below_min_ratio_exits_with_status_1_and_the_json_holds_the_figures() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |min_ratio: &str, json: &std::path::Path| {
        load()
            .args([
                "nodemgr-vs-echo",
                "--connections",
                "2,3",
                "--duration",
                "200ms",
                "--rounds",
                "1",
                "--min-ratio",
                min_ratio,
                "--json",
            ])
            .arg(json)
            .output()
            .expect("load runs")
    };
    let failed_json = dir.path().join("failed.json");
    let unreachable = run("1000", &failed_json);
    let error = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1), "{error}");
    assert!(error.contains("below --min-ratio 1000"), "{error}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&failed_json).expect("the JSON report"))
            .expect("JSON");
    let levels = report["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 2, "{report}");
    assert!(levels[0]["heartbeat_rate"].as_f64() > Some(0.0), "{report}");
    assert!(levels[1]["echo_rate"].as_f64() > Some(0.0), "{report}");
    let ratio = report["ratio"].as_f64().expect("ratio");
    assert_eq!(report["peak"]["ratio"].as_f64(), Some(ratio), "{report}");
    assert!(
        ratio > 0.0 && error.contains(&format!("{ratio:.2}x")),
        "{report}\n{error}"
    );
    let reached = run("0.0001", &dir.path().join("passed.json"));
    assert!(
        reached.status.success(),
        "{}",
        String::from_utf8_lossy(&reached.stderr)
    );
}

//! The ecapture client probe passes the reference collector, and each collector fault fails
//! the case that checks it.

use conformance::probes::ecapture::{run_probe_reading, ProbeConfig, Reports};
use conformance::RunOptions;
use reference_server::clients::collector::{self, CollectorConfig, Sinks};
use reference_server::faults::{Fault, Faults};
use std::io::Write;
use std::time::Duration;
use tokio::net::TcpListener;

/// A `Write` that hands each complete line to the probe.
struct LinesTo(Reports, Vec<u8>);

impl Write for LinesTo {
    /// Scans only the new bytes: records arrive in many small writes.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for chunk in buf.split_inclusive(|b| *b == b'\n') {
            self.1.extend_from_slice(chunk);
            if chunk.ends_with(b"\n") {
                self.0.push_line(&String::from_utf8_lossy(&self.1));
                self.1.clear();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn probe(faults: Faults) -> conformance::Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    let reports = Reports::default();
    let mut out = LinesTo(reports.clone(), Vec::new());
    let collector = tokio::spawn(async move {
        let config = CollectorConfig {
            url,
            origin: collector::DEFAULT_ORIGIN.to_owned(),
            max_entries: None,
            duration: Some(Duration::from_secs(20)),
            faults,
        };
        let mut sinks = Sinks {
            readable: None,
            jsonl: Some(&mut out),
        };
        let _ = collector::run(&config, &mut sinks).await;
    });
    let config = ProbeConfig {
        listen: String::new(),
        command: Vec::new(),
        wait: Duration::from_secs(10),
        options: RunOptions {
            strict: true,
            ..RunOptions::default()
        },
    };
    let report = run_probe_reading(listener, &config, Some(reports))
        .await
        .expect("probe");
    collector.abort();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_collector_passes_every_case() {
    let report = probe(Faults::none()).await;
    let not_passing = report.not_passing();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
}

fn expected_failures(fault: Fault) -> &'static [&'static str] {
    match fault {
        Fault::CollectorNoOrigin => &["ecapture-client/handshake/sends-origin"],
        Fault::CollectorTrustLogType => &["ecapture-client/decode/heartbeat-without-log-type"],
        Fault::CollectorLossyText => &[
            "ecapture-client/decode/binary-payload",
            "ecapture-client/decode/large-frame",
        ],
        Fault::CollectorKnownTypesOnly => &["ecapture-client/decode/unknown-event-type"],
        Fault::CollectorStopOnGarbage => &[
            "ecapture-client/robustness/skips-undecodable-frame",
            "ecapture-client/robustness/burst",
        ],
        Fault::CollectorSkipEmpty => &["ecapture-client/decode/empty-payload"],
        Fault::CollectorLoseEvents => &["ecapture-client/robustness/burst"],
        Fault::CollectorDropRunLogs => &["ecapture-client/decode/process-log"],
        _ => &[],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collector_fault_fails_the_case_that_checks_it() {
    let collector_faults = Fault::ALL
        .iter()
        .copied()
        .filter(|f| f.name().starts_with("ecapture-collector/"));
    let mut runs = tokio::task::JoinSet::new();
    for fault in collector_faults {
        assert!(
            !expected_failures(fault).is_empty(),
            "{fault} has no expected failure"
        );
        runs.spawn(async move { (fault, probe([fault].into_iter().collect()).await) });
    }
    let mut missed = Vec::new();
    while let Some(joined) = runs.join_next().await {
        let (fault, report) = joined.expect("a probe run");
        let failing = report.failing_ids();
        for id in expected_failures(fault) {
            if !failing.contains(id) {
                missed.push(format!("{fault}: {id} was {:?}", report.verdict_of(id)));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

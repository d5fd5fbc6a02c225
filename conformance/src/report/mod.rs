//! Reports: the versioned JSON document, JUnit XML, and the console summary.

mod junit;

pub use junit::to_junit;

use crate::case::{Case, Level, Source, Verdict};
use serde::Serialize;
use std::time::Duration;

/// The `format` field of the JSON report. Bump it when a field changes meaning.
pub const REPORT_FORMAT: &str = "conformance-report/v1";

/// What a report says about a case, without its body (client probes have no body per case).
#[derive(Debug, Clone, Copy)]
pub struct CaseSpec {
    pub id: &'static str,
    pub level: Level,
    pub source: Source,
    pub sends: &'static str,
    pub requires: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub id: String,
    pub level: Level,
    pub source: Source,
    pub sends: String,
    pub requires: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub duration_ms: u64,
    pub transcript: Vec<String>,
}

impl CaseReport {
    pub fn new(case: &Case, verdict: Verdict, took: Duration, transcript: Vec<String>) -> Self {
        let spec = CaseSpec {
            id: case.id,
            level: case.level,
            source: case.source,
            sends: case.sends,
            requires: case.requires,
        };
        Self::from_spec(&spec, verdict, took, transcript)
    }

    pub fn from_spec(
        spec: &CaseSpec,
        verdict: Verdict,
        took: Duration,
        transcript: Vec<String>,
    ) -> Self {
        Self {
            id: spec.id.to_owned(),
            level: spec.level,
            source: spec.source,
            sends: spec.sends.to_owned(),
            requires: spec.requires.to_owned(),
            verdict,
            duration_ms: millis(took),
            transcript,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub non_strict: usize,
    pub unimplemented: usize,
    pub informational: usize,
    pub harness_error: usize,
    pub expected_failure: usize,
    pub stale: usize,
}

impl Summary {
    fn count(cases: &[CaseReport]) -> Self {
        let mut s = Summary {
            total: cases.len(),
            ..Summary::default()
        };
        for case in cases {
            let slot = match case.verdict {
                Verdict::Pass => &mut s.pass,
                Verdict::Fail { .. } => &mut s.fail,
                Verdict::NonStrict { .. } => &mut s.non_strict,
                Verdict::Unimplemented { .. } => &mut s.unimplemented,
                Verdict::Informational { .. } => &mut s.informational,
                Verdict::HarnessError { .. } => &mut s.harness_error,
                Verdict::ExpectedFailure { .. } => &mut s.expected_failure,
                Verdict::Stale { .. } => &mut s.stale,
            };
            *slot += 1;
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub suite_version: &'static str,
    pub protocol: String,
    pub target: String,
    pub strict: bool,
    pub started_at: String,
    pub duration_ms: u64,
    pub summary: Summary,
    pub cases: Vec<CaseReport>,
}

/// Exit codes the CLI uses, for CI.
pub mod exit {
    pub const OK: i32 = 0;
    /// At least one case failed, or an expectation is stale.
    pub const FAILURES: i32 = 1;
    /// Bad arguments, nothing selected, or the harness could not judge.
    pub const USAGE_OR_HARNESS: i32 = 2;
}

impl Report {
    pub fn new(
        protocol: &str,
        target: &str,
        strict: bool,
        started_at: chrono::DateTime<chrono::Utc>,
        took: Duration,
        cases: Vec<CaseReport>,
    ) -> Self {
        Self {
            format: REPORT_FORMAT,
            suite_version: env!("CARGO_PKG_VERSION"),
            protocol: protocol.to_owned(),
            target: target.to_owned(),
            strict,
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: millis(took),
            summary: Summary::count(&cases),
            cases,
        }
    }

    pub fn exit_code(&self) -> i32 {
        let s = &self.summary;
        if s.fail > 0 || s.stale > 0 {
            exit::FAILURES
        } else if s.harness_error > 0 {
            exit::USAGE_OR_HARNESS
        } else {
            exit::OK
        }
    }

    pub fn failing_ids(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| c.verdict.is_failure())
            .map(|c| c.id.as_str())
            .collect()
    }

    /// The cases whose verdict is anything but a plain pass.
    pub fn not_passing(&self) -> Vec<(&str, &Verdict)> {
        self.cases
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .map(|c| (c.id.as_str(), &c.verdict))
            .collect()
    }

    pub fn verdict_of(&self, id: &str) -> Option<&Verdict> {
        self.cases.iter().find(|c| c.id == id).map(|c| &c.verdict)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Human-readable: one line per case that is not a plain pass, details for failures.
    pub fn to_console(&self) -> String {
        let mut out = format!("{} against {}\n", self.protocol, self.target);
        for case in &self.cases {
            out.push_str(&console_line(case));
        }
        let s = &self.summary;
        out.push_str(&format!(
            "\n{} passed, {} failed, {} non-strict, {} unimplemented, {} informational, {} harness errors, {} expected failures, {} stale ({} cases, {} ms)\n",
            s.pass, s.fail, s.non_strict, s.unimplemented, s.informational, s.harness_error, s.expected_failure, s.stale, s.total, self.duration_ms
        ));
        out
    }
}

fn console_line(case: &CaseReport) -> String {
    let mut line = format!("{:<14} {}\n", case.verdict.label(), case.id);
    let detail = match &case.verdict {
        Verdict::Pass => return line,
        Verdict::Fail {
            requirement,
            expected,
            actual,
        } => {
            let wire: String = case
                .transcript
                .iter()
                .map(|l| format!("      {l}\n"))
                .collect();
            format!("    requires: {requirement}\n    expected: {expected}\n    actual:   {actual}\n    source:   {}\n    wire:\n{wire}", case.source)
        }
        Verdict::NonStrict { reason }
        | Verdict::Unimplemented { reason }
        | Verdict::HarnessError { reason } => {
            format!("    {reason}\n")
        }
        Verdict::Informational { note } => format!("    {note}\n"),
        Verdict::ExpectedFailure { reason } => format!("    known failure: {reason}\n"),
        Verdict::Stale { reason } => format!(
            "    listed as failing ({reason}) but passed: remove it from the expectations file\n"
        ),
    };
    line.push_str(&detail);
    line
}

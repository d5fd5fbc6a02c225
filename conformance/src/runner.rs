//! Selects cases, runs them with bounded concurrency and timeouts, and grades the results.

use crate::case::{Case, CaseResult, Failure, Level, Outcome, Verdict};
use crate::client::Transcript;
use crate::expectations::Expectations;
use crate::report::{CaseReport, Report};
use crate::target::{Ctx, Target};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Non-strict verdicts become failures.
    pub strict: bool,
    /// Whole-case limit, before the multiplier.
    pub case_timeout: Duration,
    /// Wait for an immediate answer, before the multiplier.
    pub wait: Duration,
    /// Wait for something scheduled by the target, before the multiplier.
    pub slow_wait: Duration,
    /// Scales every timeout, for slow machines or targets.
    pub multiplier: f64,
    pub concurrency: usize,
    pub expectations: Expectations,
    /// Print a line per finished case on stderr.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            strict: false,
            case_timeout: Duration::from_secs(30),
            wait: Duration::from_secs(3),
            slow_wait: Duration::from_secs(12),
            multiplier: 1.0,
            concurrency: 8,
            expectations: Expectations::default(),
            progress: false,
        }
    }
}

impl RunOptions {
    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.multiplier.max(0.1))
    }

    /// The wait for an immediate answer, scaled.
    pub fn ctx_wait(&self) -> Duration {
        self.scaled(self.wait)
    }

    pub fn ctx(&self, target: &Target) -> Ctx {
        Ctx {
            nodemgr: target.nodemgr.clone(),
            cmdrelay: target.cmdrelay.clone(),
            ecapture: target.ecapture.clone(),
            logrtc: target.logrtc.clone(),
            sfu: target.sfu.clone(),
            wait: self.scaled(self.wait),
            slow_wait: self.scaled(self.slow_wait),
            transcript: Transcript::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("bad glob {0:?}: {1}")]
    Glob(String, globset::Error),
    #[error("no case matches the filters (include {include:?}, exclude {exclude:?}); `conformance list` shows the ids")]
    NothingSelected {
        include: Vec<String>,
        exclude: Vec<String>,
    },
}

fn globs(patterns: &[String]) -> Result<GlobSet, SelectError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| SelectError::Glob(pattern.clone(), e))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| SelectError::Glob(patterns.join(","), e))
}

/// The cases whose id matches an include glob (all when none) and no exclude glob.
pub fn select(
    cases: Vec<Case>,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<Case>, SelectError> {
    let included = globs(include)?;
    let excluded = globs(exclude)?;
    let chosen: Vec<Case> = cases
        .into_iter()
        .filter(|c| include.is_empty() || included.is_match(c.id))
        .filter(|c| !excluded.is_match(c.id))
        .collect();
    if chosen.is_empty() {
        return Err(SelectError::NothingSelected {
            include: include.to_vec(),
            exclude: exclude.to_vec(),
        });
    }
    Ok(chosen)
}

/// Runs every case against the target and gathers the report.
pub async fn run(
    protocol: &str,
    cases: Vec<Case>,
    target: &Target,
    options: &RunOptions,
) -> Report {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let total = cases.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, case) in cases.into_iter().enumerate() {
        let (gate, ctx, options) = (gate.clone(), options.ctx(target), options.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (index, run_case(&case, ctx, &options).await)
        });
    }
    let mut results = Vec::with_capacity(total);
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, report)) = joined else {
            continue;
        };
        if options.progress {
            let _ = writeln!(
                std::io::stderr(),
                "[{:>3}/{total}] {:<14} {}",
                results.len() + 1,
                report.verdict.label(),
                report.id
            );
        }
        results.push((index, report));
    }
    results.sort_by_key(|(index, _)| *index);
    let cases = results.into_iter().map(|(_, r)| r).collect();
    Report::new(
        protocol,
        &target.description,
        options.strict,
        started_at,
        started.elapsed(),
        cases,
    )
}

/// Runs one case in its own task, so that a panicking body is a harness error, not a crash.
pub async fn run_case(case: &Case, ctx: Ctx, options: &RunOptions) -> CaseReport {
    let started = Instant::now();
    let transcript = ctx.transcript.clone();
    let limit = options
        .scaled(options.case_timeout)
        .max(ctx.min_case_time());
    let body = tokio::spawn((case.body)(ctx));
    let result = match tokio::time::timeout(limit, body).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(Failure::Harness(format!("the case body panicked: {join}"))),
        Err(_) => Err(Failure::mismatch(
            format!("the case to finish within {} s", limit.as_secs()),
            "the target never gave the answers the case waits for",
        )),
    };
    let verdict = grade(case.level, case.requires, result, options.strict);
    let verdict = apply_expectations(verdict, options.expectations.reason(case.id));
    CaseReport::new(case, verdict, started.elapsed(), transcript.lines())
}

/// Turns a body's result into a verdict, by the case's level and the strictness of the run.
pub fn grade(level: Level, requires: &str, result: CaseResult, strict: bool) -> Verdict {
    let requirement = requires.to_owned();
    let fail = |expected: String, actual: String| Verdict::Fail {
        requirement: requirement.clone(),
        expected,
        actual,
    };
    match result {
        Ok(Outcome::Pass) => Verdict::Pass,
        Ok(Outcome::Informational(note)) => Verdict::Informational { note },
        Ok(Outcome::Variant(reason)) if strict => {
            fail("the documented form (--strict)".to_owned(), reason)
        }
        Ok(Outcome::Variant(reason)) => Verdict::NonStrict { reason },
        Err(Failure::Mismatch { expected, actual }) if level == Level::Must || strict => {
            fail(expected, actual)
        }
        Err(Failure::Mismatch { expected, actual }) => Verdict::NonStrict {
            reason: format!("SHOULD not met: expected {expected}, got {actual}"),
        },
        Err(Failure::Unimplemented(reason)) => Verdict::Unimplemented { reason },
        Err(Failure::Harness(reason)) => Verdict::HarnessError { reason },
    }
}

pub fn apply_expectations(verdict: Verdict, known: Option<&str>) -> Verdict {
    match (known, verdict) {
        (Some(reason), Verdict::Fail { .. }) => Verdict::ExpectedFailure {
            reason: reason.to_owned(),
        },
        (Some(reason), Verdict::Pass) => Verdict::Stale {
            reason: reason.to_owned(),
        },
        (_, verdict) => verdict,
    }
}

//! Running the cases under `cargo test`: the target and options come from the environment.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `CONFORMANCE_NODEMGR_TARGET` | `ws://host:port/api/v1/ws` of the server to judge (default: in-process reference server) |
//! | `CONFORMANCE_TOKEN` | the token (default `default-token`) |
//! | `CONFORMANCE_OPERATOR_API` | `auto` (same host, `/api/v1`), a base URL, or `none` |
//! | `CONFORMANCE_STRICT` | `1`: non-strict verdicts fail |
//! | `CONFORMANCE_EXPECTATIONS` | a known-failures file |
//! | `CONFORMANCE_TIMEOUT_MULTIPLIER` | scales every wait, e.g. `3` on a slow machine |

use crate::case::Verdict;
use crate::expectations::Expectations;
use crate::report::CaseReport;
use crate::runner::RunOptions;
use crate::target::{OperatorChoice, Target};
use reference_server::faults::Faults;

pub const DEFAULT_TOKEN: &str = "default-token";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Options from the environment. Panics with a readable message on a bad value: this runs
/// at the start of a test binary, where a panic is the way to say so.
pub fn options_from_env() -> RunOptions {
    let mut options = RunOptions {
        strict: var("CONFORMANCE_STRICT").is_some_and(|v| v == "1"),
        ..RunOptions::default()
    };
    if let Some(path) = var("CONFORMANCE_EXPECTATIONS") {
        options.expectations = Expectations::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    }
    if let Some(m) = var("CONFORMANCE_TIMEOUT_MULTIPLIER") {
        options.multiplier = m
            .parse()
            .unwrap_or_else(|_| panic!("CONFORMANCE_TIMEOUT_MULTIPLIER={m} is not a number"));
    }
    options
}

/// The nodemgr target named by the environment, or the in-process reference server.
pub async fn nodemgr_target_from_env(options: &RunOptions) -> Target {
    let wait = options.ctx_wait();
    match var("CONFORMANCE_NODEMGR_TARGET") {
        Some(url) => {
            let token = var("CONFORMANCE_TOKEN").unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
            let operator = OperatorChoice::parse(var("CONFORMANCE_OPERATOR_API").as_deref());
            Target::url(&url, &token, &operator, wait)
        }
        None => Target::in_process(Faults::none(), wait)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    }
}

pub fn is_external() -> bool {
    var("CONFORMANCE_NODEMGR_TARGET").is_some()
}

/// A `cargo test` result for one case report: failures carry the whole explanation.
pub fn trial_result(report: &CaseReport, external: bool) -> Result<(), String> {
    match &report.verdict {
        Verdict::Pass
        | Verdict::Informational { .. }
        | Verdict::ExpectedFailure { .. }
        | Verdict::NonStrict { .. } => Ok(()),
        Verdict::Unimplemented { .. } if external => Ok(()),
        verdict => {
            let wire = report.transcript.join("\n  ");
            let detail = serde_json::to_string_pretty(verdict).unwrap_or_default();
            Err(format!(
                "{} {}\n{detail}\nsource: {}\nwire:\n  {wire}",
                verdict.label(),
                report.id,
                report.source
            ))
        }
    }
}

//! Running the cases under `cargo test`: the target and options come from the environment.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `CONFORMANCE_NODEMGR_TARGET` | `ws://host:port/api/v1/ws` of the nodemgr server to judge (default: in-process reference server) |
//! | `CONFORMANCE_TOKEN` | nodemgr: the token; cmdrelay: the token API's bearer token (default `default-token`) |
//! | `CONFORMANCE_OPERATOR_API` | nodemgr: `auto` (same host, `/api/v1`), a base URL, or `none` |
//! | `CONFORMANCE_CMDRELAY_TARGET` | `ws://host:port/websocket` of the cmdrelay server to judge |
//! | `CONFORMANCE_CMDRELAY_TOKEN_MODE` | `mint` (default: the token API at `CONFORMANCE_CMDRELAY_ADMIN_API` or the same host), `any`, or `list` |
//! | `CONFORMANCE_CMDRELAY_TOKENS` | with `list`: the valid tokens, comma separated |
//! | `CONFORMANCE_CMDRELAY_ADMIN_API` | with `mint`: the token API base URL |
//! | `CONFORMANCE_CMDRELAY_EXPIRED_TOKEN` | a token the target holds expired |
//! | `CONFORMANCE_CMDRELAY_HEARTBEAT_PERIOD` | the target's heartbeat period, e.g. `10s` |
//! | `CONFORMANCE_ECAPTURE_TARGET` | `ws://host:port/` of the ecapture server to judge |
//! | `CONFORMANCE_ECAPTURE_HEARTBEAT_PERIOD` | its heartbeat period (default `15s`, eCapture's) |
//! | `CONFORMANCE_LOGRTC_TARGET` | `ws://host:port/signaling` of the logrtc signaling server to judge |
//! | `CONFORMANCE_SFU_TARGET` | `ws://host:port/ws` of the SFU to judge (cases add `?peer=`) |
//! | `CONFORMANCE_SFU_KEEPALIVE_TIMEOUT` | how long it keeps a silent peer, e.g. `60s` |
//! | `CONFORMANCE_STRICT` | `1`: non-strict verdicts fail |
//! | `CONFORMANCE_EXPECTATIONS` | a known-failures file |
//! | `CONFORMANCE_TIMEOUT_MULTIPLIER` | scales every wait, e.g. `3` on a slow machine |

use crate::case::Verdict;
use crate::expectations::Expectations;
use crate::report::CaseReport;
use crate::runner::{run_case, RunOptions};
use crate::target::{CmdrelayOptions, OperatorChoice, Target, TokenChoice};
use libtest_mimic::{Arguments, Trial};
use reference_server::faults::Faults;
use std::sync::Arc;

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

fn target_variable(protocol: &str) -> String {
    format!("CONFORMANCE_{}_TARGET", protocol.to_uppercase())
}

/// The target of `protocol` named by the environment, or the in-process reference server.
pub async fn target_from_env(protocol: &str, options: &RunOptions) -> Target {
    let wait = options.ctx_wait();
    let token = var("CONFORMANCE_TOKEN").unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
    let target = match (protocol, var(&target_variable(protocol))) {
        ("cmdrelay", Some(url)) => {
            Target::cmdrelay_url(&url, &cmdrelay_options(&token), wait).await
        }
        ("ecapture", Some(url)) => {
            let period = var("CONFORMANCE_ECAPTURE_HEARTBEAT_PERIOD").map(|text| {
                humantime::parse_duration(&text)
                    .unwrap_or_else(|e| panic!("CONFORMANCE_ECAPTURE_HEARTBEAT_PERIOD={text}: {e}"))
            });
            Ok(Target::ecapture_url(&url, period))
        }
        ("logrtc", Some(url)) => Ok(Target::logrtc_url(&url)),
        ("sfu", Some(url)) => {
            let timeout = var("CONFORMANCE_SFU_KEEPALIVE_TIMEOUT").map(|text| {
                humantime::parse_duration(&text)
                    .unwrap_or_else(|e| panic!("CONFORMANCE_SFU_KEEPALIVE_TIMEOUT={text}: {e}"))
            });
            Ok(Target::sfu_url(&url, timeout))
        }
        (_, Some(url)) => {
            let operator = OperatorChoice::parse(var("CONFORMANCE_OPERATOR_API").as_deref());
            Ok(Target::url(&url, &token, &operator, wait))
        }
        (_, None) => Target::in_process(Faults::none(), wait).await,
    };
    target.unwrap_or_else(|e| panic!("{e}"))
}

fn cmdrelay_options(admin_token: &str) -> CmdrelayOptions {
    let mode = var("CONFORMANCE_CMDRELAY_TOKEN_MODE").unwrap_or_else(|| "mint".to_owned());
    let tokens = match (mode.as_str(), var("CONFORMANCE_CMDRELAY_ADMIN_API")) {
        ("mint", None) => TokenChoice::MintSameHost {
            admin_token: admin_token.to_owned(),
        },
        ("mint", Some(base)) => TokenChoice::Mint {
            base,
            admin_token: admin_token.to_owned(),
        },
        ("any", _) => TokenChoice::Any,
        ("list", _) => TokenChoice::Pool(
            var("CONFORMANCE_CMDRELAY_TOKENS")
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect(),
        ),
        (other, _) => panic!("CONFORMANCE_CMDRELAY_TOKEN_MODE={other}: use mint, any or list"),
    };
    let heartbeat_period = var("CONFORMANCE_CMDRELAY_HEARTBEAT_PERIOD").map(|text| {
        humantime::parse_duration(&text)
            .unwrap_or_else(|e| panic!("CONFORMANCE_CMDRELAY_HEARTBEAT_PERIOD={text}: {e}"))
    });
    CmdrelayOptions {
        tokens,
        expired_token: var("CONFORMANCE_CMDRELAY_EXPIRED_TOKEN"),
        heartbeat_period,
    }
}

pub fn is_external(protocol: &str) -> bool {
    var(&target_variable(protocol)).is_some()
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

/// The body of a `harness = false` test binary: one trial per case of `protocol`.
pub fn run_trials(protocol: &str) -> ! {
    let args = Arguments::from_args();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
    );
    let options = Arc::new(options_from_env());
    let target = Arc::new(runtime.block_on(target_from_env(protocol, &options)));
    let external = is_external(protocol);
    let cases = crate::cases::for_protocol(protocol)
        .unwrap_or_else(|| panic!("no cases for protocol {protocol}"));
    let trials = cases
        .into_iter()
        .map(|case| {
            let (runtime, options, target) = (runtime.clone(), options.clone(), target.clone());
            Trial::test(case.id, move || {
                let report = runtime.block_on(run_case(&case, options.ctx(&target), &options));
                trial_result(&report, external).map_err(Into::into)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(target);
    conclusion.exit();
}

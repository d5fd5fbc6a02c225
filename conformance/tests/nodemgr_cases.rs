//! One `cargo test` trial per nodemgr case id, against the in-process reference server or the
//! server named by `CONFORMANCE_NODEMGR_TARGET` (see `conformance::harness`).
//! Filter like any test: `cargo test -p conformance --test nodemgr_cases -- heartbeat`.

use conformance::harness::{is_external, nodemgr_target_from_env, options_from_env, trial_result};
use conformance::runner::run_case;
use libtest_mimic::{Arguments, Trial};
use std::sync::Arc;

fn main() {
    let args = Arguments::from_args();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
    );
    let options = Arc::new(options_from_env());
    let target = Arc::new(runtime.block_on(nodemgr_target_from_env(&options)));
    let external = is_external();
    let trials = conformance::cases::nodemgr::cases()
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

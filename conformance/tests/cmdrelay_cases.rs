//! One `cargo test` trial per cmdrelay case id, against the in-process reference server or the
//! server named by `CONFORMANCE_CMDRELAY_TARGET` (see `conformance::harness`).
//! Filter like any test: `cargo test -p conformance --test cmdrelay_cases -- relay`.

fn main() {
    conformance::harness::run_trials("cmdrelay");
}

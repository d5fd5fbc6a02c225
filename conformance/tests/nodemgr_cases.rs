//! One `cargo test` trial per nodemgr case id, against the in-process reference server or the
//! server named by `CONFORMANCE_NODEMGR_TARGET` (see `conformance::harness`).
//! Filter like any test: `cargo test -p conformance --test nodemgr_cases -- heartbeat`.

fn main() {
    conformance::harness::run_trials("nodemgr");
}

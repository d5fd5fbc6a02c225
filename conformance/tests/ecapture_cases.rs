//! One `cargo test` trial per ecapture case id, against the in-process reference server or the
//! server named by `CONFORMANCE_ECAPTURE_TARGET` (see `conformance::harness`).
//! Filter like any test: `cargo test -p conformance --test ecapture_cases -- heartbeat`.

fn main() {
    conformance::harness::run_trials("ecapture");
}

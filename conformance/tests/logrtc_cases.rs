//! One `cargo test` trial per logrtc signaling case id, against the in-process reference server
//! or the server named by `CONFORMANCE_LOGRTC_TARGET` (see `conformance::harness`).
//! Filter like any test: `cargo test -p conformance --test logrtc_cases -- relay`.

fn main() {
    conformance::harness::run_trials("logrtc");
}

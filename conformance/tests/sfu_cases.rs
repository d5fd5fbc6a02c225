//! One `cargo test` trial per sfu case id, against the in-process reference server (or the
//! server named by `CONFORMANCE_SFU_TARGET`, with `CONFORMANCE_SFU_KEEPALIVE_TIMEOUT`).
//! Filter like any test: `cargo test -p conformance --test sfu_cases -- media`.

fn main() {
    conformance::harness::run_trials("sfu");
}

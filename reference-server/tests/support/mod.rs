//! Test support: external programs the tests find or start themselves.
#![allow(dead_code, reason = "each test binary uses a part")]

pub mod postgres;

/// Set by CI: a test whose external program is missing fails instead of skipping.
pub const REQUIRE_EXTERNALS: &str = "REQUIRE_EXTERNALS";

/// Skips loudly, or fails when CI requires every external program.
pub fn skip_or_fail(what: &str) {
    let message = format!(
        "SKIPPED: {what}. Install it, or set {REQUIRE_EXTERNALS}=1 to make this a failure."
    );
    if std::env::var(REQUIRE_EXTERNALS).is_ok_and(|v| v == "1") {
        panic!("{what}, and {REQUIRE_EXTERNALS}=1");
    }
    eprintln!("\n!!!!!!!! {message}\n");
}

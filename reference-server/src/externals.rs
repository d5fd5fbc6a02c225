//! External programs that tests need (PostgreSQL, protoc, chromium, ...): found on `PATH`,
//! or skipped loudly, or failed when CI requires every one of them.

use std::path::PathBuf;

/// Set by CI: a test whose external program is missing fails instead of skipping.
pub const REQUIRE_EXTERNALS: &str = "REQUIRE_EXTERNALS";

/// Skips loudly, or panics when CI requires every external program.
pub fn skip_or_fail(what: &str) {
    let message = format!(
        "SKIPPED: {what}. Install it, or set {REQUIRE_EXTERNALS}=1 to make this a failure."
    );
    if std::env::var(REQUIRE_EXTERNALS).is_ok_and(|v| v == "1") {
        panic!("{what}, and {REQUIRE_EXTERNALS}=1");
    }
    eprintln!("\n!!!!!!!! {message}\n");
}

/// The first executable called `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

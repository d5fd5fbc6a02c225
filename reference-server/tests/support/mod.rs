//! Test support: external programs the tests find or start themselves.
#![allow(dead_code, reason = "each test binary uses a part")]

pub mod fixtures;
pub mod postgres;

pub use reference_server::externals::skip_or_fail;

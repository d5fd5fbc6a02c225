//! Every server-side case, by protocol.

pub mod nodemgr;

use crate::case::Case;

/// The protocols that have cases.
pub const PROTOCOLS: &[&str] = &["nodemgr"];

/// The cases of `protocol`, or `None` for an unknown protocol.
pub fn for_protocol(protocol: &str) -> Option<Vec<Case>> {
    match protocol {
        "nodemgr" => Some(nodemgr::cases()),
        _ => None,
    }
}

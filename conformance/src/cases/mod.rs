//! Every server-side case, by protocol.

pub mod abuse;
pub mod cmdrelay;
pub mod ecapture;
pub mod logrtc;
pub mod nodemgr;
pub mod sfu;

use crate::case::Case;

/// The protocols that have cases.
pub const PROTOCOLS: &[&str] = &["nodemgr", "cmdrelay", "ecapture", "logrtc", "sfu"];

/// The cases of `protocol`, or `None` for an unknown protocol.
pub fn for_protocol(protocol: &str) -> Option<Vec<Case>> {
    match protocol {
        "nodemgr" => Some(nodemgr::cases()),
        "cmdrelay" => Some(cmdrelay::cases()),
        "ecapture" => Some(ecapture::cases()),
        "logrtc" => Some(logrtc::cases()),
        "sfu" => Some(sfu::cases()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Source;
    use std::collections::HashSet;

    #[test]
    fn every_case_has_a_unique_id_in_its_protocol_and_a_real_source() {
        for protocol in PROTOCOLS {
            let cases = for_protocol(protocol).expect("known protocol");
            let mut ids = HashSet::new();
            for case in &cases {
                assert!(ids.insert(case.id), "duplicate id {}", case.id);
                assert!(
                    case.id.starts_with(&format!("{protocol}/")),
                    "{} outside {protocol}/",
                    case.id
                );
                assert_eq!(
                    case.id.split('/').count(),
                    3,
                    "{} is not protocol/family/behaviour",
                    case.id
                );
                assert_ne!(
                    case.source,
                    Source::Inferred("no source given"),
                    "{} has no source",
                    case.id
                );
                assert!(
                    !case.sends.is_empty() && !case.requires.is_empty(),
                    "{} lacks sends/requires",
                    case.id
                );
            }
        }
    }
}

//! Grading the answer to bad input, shared by every protocol: an error message or a close
//! frame with a code, never silence, a reset, or a crash.

use crate::case::{CaseResult, Failure, Outcome};
use crate::client::Event;
use serde_json::Value;

/// `is_error` recognises the protocol's error message. A close passes when the project's
/// decision for this input is a close (`close_is_documented`), else it is a variant.
pub fn judge_answer(
    event: Event,
    is_error: impl Fn(&Value) -> bool,
    close_is_documented: bool,
) -> CaseResult {
    match event {
        Event::Json(reply) if is_error(&reply) => Ok(Outcome::Pass),
        Event::Close(Some(_)) if close_is_documented => Ok(Outcome::Pass),
        Event::Close(Some((code, reason))) => Ok(Outcome::Variant(format!(
            "closed with {code} {reason:?} instead of an error message"
        ))),
        other => Err(Failure::mismatch(
            "an error message or a close frame with a code",
            other.describe(),
        )),
    }
}

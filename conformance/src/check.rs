//! Small checks that turn a difference into a [`Failure::Mismatch`].

use crate::case::Failure;
use serde_json::Value;
use std::fmt::Debug;

pub fn ensure(
    ok: bool,
    expected: impl Into<String>,
    actual: impl std::fmt::Display,
) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::mismatch(expected, actual))
    }
}

pub fn ensure_eq<T: PartialEq + Debug>(what: &str, expected: T, actual: T) -> Result<(), Failure> {
    ensure(
        expected == actual,
        format!("{what} = {expected:?}"),
        format!("{actual:?}"),
    )
}

/// The string at a JSON pointer such as `/data/node_id`.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::mismatch(format!("a string at {pointer}"), compact(value)))
}

pub fn bool_at(value: &Value, pointer: &str) -> Result<bool, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_bool)
        .ok_or_else(|| Failure::mismatch(format!("a boolean at {pointer}"), compact(value)))
}

pub fn f64_at(value: &Value, pointer: &str) -> Result<f64, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .ok_or_else(|| Failure::mismatch(format!("a number at {pointer}"), compact(value)))
}

/// A JSON value on one line, cut to a readable length.
pub fn compact(value: &Value) -> String {
    truncate(&value.to_string(), 400)
}

pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// `8-4-4-4-12` hex with version nibble 4 and variant 8, 9, a or b.
pub fn is_uuid_v4(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    let hex_ok = groups
        .iter()
        .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    lengths_ok
        && hex_ok
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b', 'A', 'B'])
}

/// How a timestamp string reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampForm {
    Rfc3339,
    /// ISO 8601 date and time without an offset.
    IsoWithoutOffset,
    Invalid,
}

pub fn timestamp_form(text: &str) -> TimestampForm {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        TimestampForm::Rfc3339
    } else if chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        TimestampForm::IsoWithoutOffset
    } else {
        TimestampForm::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v4_is_recognised_and_other_ids_are_not() {
        assert!(is_uuid_v4("123e4567-e89b-42d3-a456-426614174000"));
        assert!(
            !is_uuid_v4("123e4567-e89b-12d3-a456-426614174000"),
            "version 1"
        );
        assert!(!is_uuid_v4("7"));
    }

    #[test]
    fn timestamps_are_sorted_into_their_forms() {
        assert_eq!(
            timestamp_form("2025-01-21T10:00:00Z"),
            TimestampForm::Rfc3339
        );
        assert_eq!(
            timestamp_form("2025-01-21T10:00:00.123"),
            TimestampForm::IsoWithoutOffset
        );
        assert_eq!(timestamp_form("1737453600"), TimestampForm::Invalid);
    }
}

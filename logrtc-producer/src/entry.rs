//! The document's standard log entry (000 §4.2, "标准日志格式"; CLARIFICATIONS L8).

use serde::Serialize;
use serde_json::{Map, Value};

/// The four levels the document allows. `TRACE` is folded into `Debug` (L8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    /// Whether an entry of this level passes a filter that keeps `max` and everything more
    /// severe: `Info` keeps ERROR, WARN and INFO.
    pub fn passes(self, max: Level) -> bool {
        self <= max
    }
}

impl From<tracing::Level> for Level {
    fn from(level: tracing::Level) -> Self {
        match level {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG | tracing::Level::TRACE => Level::Debug,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ERROR" => Ok(Level::Error),
            "WARN" | "WARNING" => Ok(Level::Warn),
            "INFO" => Ok(Level::Info),
            "DEBUG" | "TRACE" => Ok(Level::Debug),
            other => Err(format!(
                "unknown level {other:?}: use error, warn, info or debug"
            )),
        }
    }
}

/// The span an entry was written in: `{"id","trace_id","parent_id"}` in the document.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpanRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The span's name; an addition the document's consumers may ignore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One log entry, serialised as the document's JSON object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    /// ISO 8601 in UTC with milliseconds, e.g. `2024-01-01T12:00:00.000Z`.
    pub timestamp: String,
    pub level: Level,
    pub target: String,
    pub message: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<SpanRef>,
}

impl LogEntry {
    /// An entry stamped now, with no fields and no span.
    pub fn now(level: Level, target: impl Into<String>, message: impl Into<String>) -> Self {
        LogEntry {
            timestamp: timestamp_now(),
            level,
            target: target.into(),
            message: message.into(),
            fields: Map::new(),
            span: None,
        }
    }

    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and JSON values always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_the_documents_shape() {
        let mut entry = LogEntry::now(Level::Info, "module_name", "日志消息内容")
            .with_field("user_id", "12345");
        entry.span = Some(SpanRef {
            id: "span_123".into(),
            trace_id: Some("trace_456".into()),
            parent_id: Some("span_789".into()),
            name: None,
        });
        let value: Value = serde_json::from_str(&entry.to_json()).expect("json");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "module_name");
        assert_eq!(value["fields"]["user_id"], "12345");
        assert_eq!(value["span"]["trace_id"], "trace_456");
        let stamp = value["timestamp"].as_str().expect("timestamp");
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        assert!(stamp.ends_with('Z'), "{stamp}");
    }

    #[test]
    fn empty_fields_and_span_are_left_out() {
        let value: Value =
            serde_json::from_str(&LogEntry::now(Level::Warn, "t", "m").to_json()).expect("json");
        assert!(value.get("fields").is_none());
        assert!(value.get("span").is_none());
    }

    #[test]
    fn trace_folds_into_debug_and_filters_keep_the_more_severe() {
        assert_eq!(Level::from(tracing::Level::TRACE), Level::Debug);
        assert!(Level::Error.passes(Level::Info));
        assert!(Level::Info.passes(Level::Info));
        assert!(!Level::Debug.passes(Level::Info));
        assert_eq!("warning".parse::<Level>(), Ok(Level::Warn));
    }
}

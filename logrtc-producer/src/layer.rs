//! A `tracing` layer that turns events into the document's log entries (L8): the message,
//! the other fields, and the span the event was written in.

use std::cell::Cell;
use std::fmt::Debug;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::entry::{timestamp_now, Level, LogEntry, SpanRef};
use crate::ProducerHandle;

/// Targets never shipped: the producer's own machinery. Shipping them would log every send,
/// which sends again.
const OWN_TARGETS: &[&str] = &[
    "logrtc_producer",
    "webrtc",
    "rtc",
    "tokio_tungstenite",
    "tungstenite",
];

thread_local! {
    /// Set while an event is being shipped, so an event raised inside shipping is ignored.
    static SHIPPING: Cell<bool> = const { Cell::new(false) };
}

/// Ships every event at or above the producer's level through its `logs` channels.
#[derive(Clone, Debug)]
pub struct LogrtcLayer {
    handle: ProducerHandle,
}

impl LogrtcLayer {
    pub fn new(handle: ProducerHandle) -> Self {
        LogrtcLayer { handle }
    }
}

impl<S> Layer<S> for LogrtcLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if SHIPPING.with(Cell::get) {
            return;
        }
        let mut visitor = EntryVisitor::default();
        event.record(&mut visitor);
        let target = visitor
            .log_target
            .take()
            .unwrap_or_else(|| event.metadata().target().to_owned());
        if is_own_target(&target) {
            return;
        }
        let level = Level::from(*event.metadata().level());
        if !self.handle.accepts(level) {
            return;
        }
        let entry = LogEntry {
            timestamp: timestamp_now(),
            level,
            target,
            message: visitor.message,
            fields: visitor.fields,
            span: context.event_span(event).map(|span| {
                let id = |id: tracing::span::Id| id.into_u64().to_string();
                SpanRef {
                    id: id(span.id()),
                    trace_id: span.scope().from_root().next().map(|root| id(root.id())),
                    parent_id: span.parent().map(|parent| id(parent.id())),
                    name: Some(span.name().to_owned()),
                }
            }),
        };
        SHIPPING.with(|shipping| shipping.set(true));
        self.handle.log(entry);
        SHIPPING.with(|shipping| shipping.set(false));
    }
}

fn is_own_target(target: &str) -> bool {
    OWN_TARGETS.iter().any(|own| {
        target == *own
            || target
                .strip_prefix(own)
                .is_some_and(|rest| rest.starts_with("::") || rest.starts_with('_'))
    })
}

/// Collects `message` and the other fields. Events bridged from the `log` crate carry their
/// real target in `log.target`; the other `log.*` fields are bookkeeping and dropped.
#[derive(Default)]
struct EntryVisitor {
    message: String,
    fields: Map<String, Value>,
    log_target: Option<String>,
}

impl EntryVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                }
            }
            "log.target" => self.log_target = value.as_str().map(str::to_owned),
            name if name.starts_with("log.") => {}
            name => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for EntryVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_targets_are_recognised_by_crate_not_by_prefix_alone() {
        assert!(is_own_target("webrtc::peer_connection"));
        assert!(is_own_target("rtc_sctp::association"));
        assert!(is_own_target("logrtc_producer::peer"));
        assert!(!is_own_target("rtcp_app"));
        assert!(!is_own_target("my_app::webrtc"));
    }
}

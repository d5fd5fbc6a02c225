//! Shared by the wire fuzzers: one in-process reference server per test binary.

use conformance::Target;
use reference_server::faults::Faults;
use std::sync::OnceLock;
use std::time::Duration;

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub target: Target,
}

/// The in-process server (every protocol), started on first use.
pub fn fixture(wait: Duration) -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let target = runtime
            .block_on(Target::in_process(Faults::none(), wait))
            .expect("server");
        Fixture { runtime, target }
    })
}

/// A document-shaped frame with its top-level `field` set to `value`, or removed.
fn with_field(
    mut frame: serde_json::Value,
    field: &str,
    value: Option<serde_json::Value>,
) -> String {
    if let Some(object) = frame.as_object_mut() {
        match value {
            Some(v) => object.insert(field.to_owned(), v),
            None => object.remove(field),
        };
    }
    frame.to_string()
}

/// Random text, a mutated frame, or a frame as the document shows it, in equal parts. A
/// mutated frame is a `documented` one with one of its top-level `fields` removed or replaced
/// by null, an integer, a string, an empty array, or one of the protocol's own `odd_values`.
#[allow(
    dead_code,
    reason = "only the fuzzers of flat JSON frames mix frames this way"
)]
pub fn any_frame(
    documented: impl proptest::strategy::Strategy<Value = serde_json::Value> + 'static,
    fields: Vec<&'static str>,
    odd_values: Vec<serde_json::Value>,
) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    use serde_json::{json, Value};
    let documented = documented.boxed();
    let values = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        prop::sample::select(odd_values),
    ];
    let mutated = (
        documented.clone(),
        prop::sample::select(fields),
        prop::option::of(values),
    )
        .prop_map(|(frame, field, value)| with_field(frame, field, value));
    prop_oneof![".{0,100}", mutated, documented.prop_map(|v| v.to_string())]
}

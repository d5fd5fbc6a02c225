//! nodemgr messages as seed 001 shows them. Checked against fixtures/nodemgr/wire.

use serde_json::{json, Value};

pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `{type, id, timestamp, data}` (§消息格式).
pub fn envelope(kind: &str, id: &str, data: Value) -> Value {
    json!({ "type": kind, "id": id, "timestamp": now(), "data": data })
}

pub fn node_register(id: &str, node_id: &str) -> Value {
    envelope(
        "node_register",
        id,
        json!({
            "node_id": node_id,
            "hostname": "conformance-host",
            "ip_address": "127.0.0.1",
            "os_info": "Conformance OS 1.0",
        }),
    )
}

/// Metrics with distinct values, so that a stored sample can be told apart.
pub fn metrics(seed: f64) -> Value {
    json!({
        "cpu_usage": 10.25 + seed,
        "memory_usage": 20.5 + seed,
        "disk_usage": 30.75 + seed,
        "load_average": 1.125 + seed,
    })
}

pub fn heartbeat(id: &str, node_id: &str, metrics: Value) -> Value {
    envelope(
        "heartbeat",
        id,
        json!({ "node_id": node_id, "status": "online", "metrics": metrics }),
    )
}

pub fn command_started(id: &str, command_id: &str) -> Value {
    envelope("command_started", id, json!({ "command_id": command_id }))
}

pub fn command_result(
    id: &str,
    command_id: &str,
    exit_code: i64,
    stdout: &str,
    stderr: &str,
) -> Value {
    envelope(
        "command_result",
        id,
        json!({
            "command_id": command_id,
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "execution_time_ms": 125,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../fixtures/nodemgr/wire/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    fn keys(value: &Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn builders_produce_the_documents_fields() {
        let built = [
            ("node_register", node_register("i", "n")),
            ("heartbeat", heartbeat("i", "n", metrics(0.0))),
            ("command_started", command_started("i", "c")),
            ("command_result", command_result("i", "c", 0, "", "")),
        ];
        for (name, value) in built {
            let documented = fixture(name);
            assert_eq!(keys(&value), keys(&documented), "{name} envelope");
            assert_eq!(
                keys(&value["data"]),
                keys(&documented["data"]),
                "{name} data"
            );
            assert_eq!(value["type"], documented["type"]);
        }
        assert_eq!(
            keys(&metrics(0.0)),
            keys(&fixture("heartbeat")["data"]["metrics"])
        );
    }
}

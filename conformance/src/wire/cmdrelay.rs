//! cmdrelay (seed 003) client frames, as the document shows them.

use serde_json::{json, Value};

/// `{"cmd":"init","token":...}` (InitMessage).
pub fn init(token: &str) -> Value {
    json!({ "cmd": "init", "token": token })
}

/// `{"cmd":"checkDevice"}`.
pub fn check_device() -> Value {
    json!({ "cmd": "checkDevice" })
}

/// `{"cmd":"execute","extra":{"command":...}}`.
pub fn execute(command: &str) -> Value {
    json!({ "cmd": "execute", "extra": { "command": command } })
}

/// `{"cmd":"execute_result","extra":{"data":...}}`.
pub fn execute_result(data: &str) -> Value {
    json!({ "cmd": "execute_result", "extra": { "data": data } })
}

/// The server's Heartbeat: `cmd` "Heartbeat" in any case, so that a misspelt one is still
/// recognised as a heartbeat (and graded by the heartbeat cases, not mistaken for a reply).
pub fn is_heartbeat(message: &Value) -> bool {
    message["cmd"]
        .as_str()
        .is_some_and(|cmd| cmd.eq_ignore_ascii_case("heartbeat"))
}

/// A command text no other case sends, to tell relays apart.
pub fn unique_command(what: &str) -> String {
    format!("{what} {}", uuid::Uuid::new_v4().simple())
}

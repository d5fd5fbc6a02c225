//! The command trigger: the reference operator API (fixtures/nodemgr/CLARIFICATIONS.md C12).
//! A target without one is given `--operator-api none`, and the cases that need it report
//! Unimplemented.

use crate::case::Failure;
use crate::check::compact;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct OperatorApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl OperatorApi {
    /// `base` is e.g. `http://127.0.0.1:9999/api/v1`.
    pub fn new(base: &str, token: &str, wait: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(wait)
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), Failure> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            Failure::Harness(format!("operator API unreachable at {}: {e}", self.base))
        })?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// The node's record (`None` when the API does not know it).
    pub async fn node(&self, node_id: &str) -> Result<Option<Value>, Failure> {
        let (status, body) = self
            .call(self.http.get(format!("{}/nodes/{node_id}", self.base)))
            .await?;
        match status {
            200 => Ok(Some(body["node"].clone())),
            404 => Ok(None),
            _ => Err(Failure::Harness(format!(
                "GET node answered {status}: {}",
                compact(&body)
            ))),
        }
    }

    pub async fn metric_history(&self, node_id: &str, limit: u32) -> Result<Vec<Value>, Failure> {
        let url = format!("{}/nodes/{node_id}/metrics?limit={limit}", self.base);
        let (status, body) = self.call(self.http.get(url)).await?;
        match (status, body["metrics"].as_array()) {
            (200, Some(samples)) => Ok(samples.clone()),
            _ => Err(Failure::Harness(format!(
                "GET metrics answered {status}: {}",
                compact(&body)
            ))),
        }
    }

    /// Asks the core to send a command to the node; returns its command_id.
    pub async fn send_command(
        &self,
        node_id: &str,
        text: &str,
        timeout_secs: u64,
    ) -> Result<String, Failure> {
        let url = format!("{}/nodes/{node_id}/commands", self.base);
        let body = json!({ "command_text": text, "timeout": timeout_secs });
        let (status, body) = self.call(self.http.post(url).json(&body)).await?;
        match (status, body["command_id"].as_str()) {
            (200..=299, Some(id)) => Ok(id.to_owned()),
            _ => Err(Failure::Harness(format!(
                "POST command answered {status}: {}",
                compact(&body)
            ))),
        }
    }

    pub async fn command(&self, command_id: &str) -> Result<Value, Failure> {
        let (status, body) = self
            .call(
                self.http
                    .get(format!("{}/commands/{command_id}", self.base)),
            )
            .await?;
        match status {
            200 => Ok(body),
            _ => Err(Failure::Harness(format!(
                "GET command answered {status}: {}",
                compact(&body)
            ))),
        }
    }
}

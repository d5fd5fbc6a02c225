//! nodemgr (seed 001) server cases: the suite plays a node.

mod command;
mod connection;
mod envelope;
mod errors;
mod heartbeat;
mod register;
mod robustness;

use crate::case::{Case, Failure};
use crate::check::{bool_at, compact, ensure};
use crate::client::WsClient;
use crate::target::Ctx;
use crate::wire::nodemgr as wire;
use serde_json::Value;

pub fn cases() -> Vec<Case> {
    [
        connection::cases(),
        envelope::cases(),
        register::cases(),
        heartbeat::cases(),
        command::cases(),
        errors::cases(),
        robustness::cases(),
    ]
    .concat()
}

/// A node id no other case uses, so cases never assume a fresh server.
pub fn unique_node_id() -> String {
    format!("conformance-{}", &wire::fresh_id()[..13])
}

/// Connects with the right token and the given node_id.
pub async fn connect(ctx: &Ctx, name: &str, node_id: Option<&str>) -> Result<WsClient, Failure> {
    let endpoint = ctx.nodemgr()?;
    let url = endpoint.url(Some(&endpoint.token), node_id);
    WsClient::connect(name, &url, &ctx.transcript, ctx.wait).await
}

/// Connects and reads the welcome.
pub async fn welcomed(ctx: &Ctx, node_id: Option<&str>) -> Result<(WsClient, Value), Failure> {
    let mut ws = connect(ctx, "node", node_id).await?;
    let welcome = ws.expect_type("welcome").await?;
    Ok((ws, welcome))
}

/// A node that is connected, welcomed and registered.
pub struct Node {
    pub ws: WsClient,
    pub node_id: String,
}

impl Node {
    pub async fn register(ctx: &Ctx) -> Result<Node, Failure> {
        let node_id = unique_node_id();
        let (mut ws, _) = welcomed(ctx, Some(&node_id)).await?;
        ws.send_json(&wire::node_register(&wire::fresh_id(), &node_id))
            .await?;
        let response = ws.expect_type("register_response").await?;
        ensure(
            bool_at(&response, "/data/success")?,
            "registration to succeed",
            compact(&response),
        )?;
        Ok(Node { ws, node_id })
    }

    /// Sends a heartbeat and returns its id and the reply.
    pub async fn heartbeat(&mut self, seed: f64) -> Result<(String, Value), Failure> {
        let id = wire::fresh_id();
        self.ws
            .send_json(&wire::heartbeat(&id, &self.node_id, wire::metrics(seed)))
            .await?;
        let reply = self.ws.expect_message("a reply to the heartbeat").await?;
        Ok((id, reply))
    }
}

/// The reply must be an `error` with this code.
pub fn expect_error_code(reply: &Value, code: &str) -> Result<(), Failure> {
    let ok = reply["type"] == "error" && reply["data"]["error_code"] == code;
    ensure(
        ok,
        format!("an `error` with error_code {code}"),
        compact(reply),
    )
}

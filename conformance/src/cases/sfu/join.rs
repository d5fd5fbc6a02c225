//! The connection, rooms and presence: join, leave, keepalive, broadcast, and the peer-join,
//! peer-leave and broadcast notifications (004 §5).

use super::{fresh_room, quiet_window, two_in_a_room, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::target::Ctx;
use crate::wire::sfu as wire;
use serde_json::{json, Value};

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("sfu/connection/protoo-subprotocol")
            .inferred("S1: protoo clients open the socket with the `protoo` subprotocol, and browsers drop a socket whose server does not select it")
            .sends("a WebSocket handshake to /ws?peer=<uid> offering Sec-WebSocket-Protocol: protoo")
            .requires("the server selects `protoo`")
            .run(|c| Box::pin(protoo_subprotocol(c))),
        Case::must("sfu/join/answered-with-pubs-and-users")
            .documented("004 §5 加入房间")
            .sends("join of a fresh room")
            .requires("a response with the request's id, ok:true, and data with arrays pubs and users")
            .run(|c| Box::pin(answered_with_pubs_and_users(c))),
        Case::must("sfu/join/users-list-the-room")
            .documented("004 §5 加入房间: users with signalid, rid, uid")
            .sends("join by a second peer of a room one peer is in")
            .requires("users holds the first peer's uid with the room's rid and a signalid")
            .run(|c| Box::pin(users_list_the_room(c))),
        Case::must("sfu/join/peer-join-to-others")
            .documented("004 §5 有人加入房间")
            .sends("join by a second peer")
            .requires("the first peer gets peer-join with the rid and the newcomer's uid; the newcomer gets none about itself")
            .run(|c| Box::pin(peer_join_to_others(c))),
        Case::should("sfu/join/peer-join-carries-bizid")
            .documented("004 §5 有人加入房间: bizid")
            .sends("join by a second peer")
            .requires("peer-join carries a string bizid")
            .run(|c| Box::pin(peer_join_carries_bizid(c))),
        Case::must("sfu/join/second-join-refused")
            .inferred("S5: one connection is in one room; a second join is already_joined")
            .sends("join of another room on a joined connection")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(second_join_refused(c))),
        Case::must("sfu/leave/answered")
            .documented("004 §5 离开房间")
            .sends("leave of the room joined")
            .requires("ok:true with the request's id")
            .run(|c| Box::pin(leave_answered(c))),
        Case::must("sfu/leave/peer-leave-to-others")
            .documented("004 §5 有人离开房间")
            .sends("leave by one of two peers")
            .requires("the other gets peer-leave with the rid and the leaver's uid")
            .run(|c| Box::pin(peer_leave_to_others(c))),
        Case::must("sfu/leave/dropped-socket-leaves")
            .inferred("S6: a peer whose socket drops is removed and the room is told")
            .sends("a TCP reset, without a close frame, by one of two peers")
            .requires("the other gets peer-leave naming it")
            .run(|c| Box::pin(dropped_socket_leaves(c))),
        Case::must("sfu/keepalive/answered")
            .documented("004 §5 房间内发送心跳信息")
            .sends("keepalive with the room's rid")
            .requires("ok:true with the request's id")
            .run(|c| Box::pin(keepalive_answered(c))),
        Case::must("sfu/keepalive/silent-peer-removed")
            .inferred("S6: a peer that sends no keepalive for the timeout is removed")
            .sends("nothing from one of two peers for the target's keepalive timeout")
            .requires("the other gets peer-leave naming it within the timeout and the slow wait")
            .run(|c| Box::pin(silent_peer_removed(c))),
        Case::must("sfu/broadcast/to-others-not-sender")
            .documented("004 §5 发送广播, 有人发广播")
            .sends("broadcast of a JSON value by one of two peers")
            .requires("ok:true; the other gets broadcast with rid, the sender's uid and the data unchanged; the sender gets none")
            .run(|c| Box::pin(broadcast_to_others(c))),
        Case::must("sfu/broadcast/stays-in-room")
            .inferred("S5: notifications go to the peers of the room only")
            .sends("broadcast in one room while a peer waits in another")
            .requires("the peer of the other room gets no broadcast")
            .run(|c| Box::pin(broadcast_stays_in_room(c))),
    ]
}

async fn protoo_subprotocol(ctx: Ctx) -> CaseResult {
    let url = ctx.sfu()?.peer_url(&wire::unique_id("peer"));
    let selected = crate::client::ws::selected_subprotocol(&url, "protoo", ctx.wait).await;
    let expected = "Sec-WebSocket-Protocol: protoo in the handshake answer";
    ensure(
        selected == Ok(Some("protoo".to_owned())),
        expected,
        format!("{selected:?}"),
    )?;
    Ok(Outcome::Pass)
}

async fn answered_with_pubs_and_users(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let id = peer.send("join", wire::join(&fresh_room())).await?;
    let response = peer.response(id, ctx.wait).await?;
    let ok = response["ok"] == true
        && response["data"]["pubs"].is_array()
        && response["data"]["users"].is_array();
    ensure(
        ok,
        "ok:true with data.pubs and data.users arrays",
        compact(&response),
    )?;
    Ok(Outcome::Pass)
}

async fn users_list_the_room(ctx: Ctx) -> CaseResult {
    let rid = fresh_room();
    let first = Peer::joined(&ctx, &rid).await?;
    let mut second = Peer::connect(&ctx).await?;
    let data = second.ok("join", wire::join(&rid)).await?;
    let listed = data["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["uid"] == first.uid.as_str()));
    let Some(user) = listed else {
        return Err(Failure::mismatch(
            format!("users holding {}", first.uid),
            compact(&data),
        ));
    };
    ensure(
        user["rid"] == rid.as_str() && user["signalid"].is_string(),
        "the user's rid and a string signalid",
        compact(user),
    )?;
    Ok(Outcome::Pass)
}

async fn peer_join_to_others(ctx: Ctx) -> CaseResult {
    let rid = fresh_room();
    let mut first = Peer::joined(&ctx, &rid).await?;
    let mut second = Peer::joined(&ctx, &rid).await?;
    let uid = second.uid.clone();
    first
        .notification("peer-join", ctx.wait, |d| {
            d["uid"] == uid.as_str() && d["rid"] == rid.as_str()
        })
        .await?;
    let own = second.uid.clone();
    second
        .no_notification("peer-join", quiet_window(&ctx), |d| {
            d["uid"] == own.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn peer_join_carries_bizid(ctx: Ctx) -> CaseResult {
    let rid = fresh_room();
    let mut first = Peer::joined(&ctx, &rid).await?;
    let second = Peer::joined(&ctx, &rid).await?;
    let uid = second.uid.clone();
    let told = first
        .notification("peer-join", ctx.wait, |d| d["uid"] == uid.as_str())
        .await?;
    ensure(
        told["data"]["bizid"].is_string(),
        "a string bizid in peer-join",
        compact(&told),
    )?;
    Ok(Outcome::Pass)
}

async fn second_join_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let response = peer.refused("join", wire::join(&fresh_room())).await?;
    super::check_error_shape(&response)?;
    Ok(Outcome::Pass)
}

async fn leave_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let rid = peer.room().to_owned();
    peer.ok("leave", wire::room(&rid)).await?;
    Ok(Outcome::Pass)
}

async fn peer_leave_to_others(ctx: Ctx) -> CaseResult {
    let (mut first, mut second) = two_in_a_room(&ctx).await?;
    let rid = second.room().to_owned();
    second.ok("leave", wire::room(&rid)).await?;
    let uid = second.uid.clone();
    first
        .notification("peer-leave", ctx.wait, |d| {
            d["uid"] == uid.as_str() && d["rid"] == rid.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn dropped_socket_leaves(ctx: Ctx) -> CaseResult {
    let (mut first, second) = two_in_a_room(&ctx).await?;
    let uid = second.uid.clone();
    second.ws.abort();
    first
        .notification("peer-leave", ctx.slow_wait, |d| d["uid"] == uid.as_str())
        .await?;
    Ok(Outcome::Pass)
}

async fn keepalive_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let rid = peer.room().to_owned();
    peer.ok("keepalive", wire::room(&rid)).await?;
    Ok(Outcome::Pass)
}

async fn silent_peer_removed(ctx: Ctx) -> CaseResult {
    let Some(timeout) = ctx.sfu()?.keepalive_timeout else {
        let why = "the target's keepalive timeout is not known (--keepalive-timeout)";
        return Err(Failure::Unimplemented(why.to_owned()));
    };
    let (mut first, second) = two_in_a_room(&ctx).await?;
    let uid = second.uid.clone();
    // `second` is held, silent, while `first` keeps its own keepalive going.
    let told = first
        .notification("peer-leave", timeout + ctx.slow_wait, |d| {
            d["uid"] == uid.as_str()
        })
        .await;
    drop(second);
    told?;
    Ok(Outcome::Pass)
}

async fn broadcast_to_others(ctx: Ctx) -> CaseResult {
    let (mut first, mut second) = two_in_a_room(&ctx).await?;
    let rid = first.room().to_owned();
    let payload = json!({"text": "你好", "n": [1, 2.5, null], "nested": {"ok": true}});
    first
        .ok("broadcast", wire::broadcast(&rid, payload.clone()))
        .await?;
    let uid = first.uid.clone();
    let told = second
        .notification("broadcast", ctx.wait, |d| d["uid"] == uid.as_str())
        .await?;
    let data = &told["data"];
    ensure(
        data["rid"] == rid.as_str() && data["data"] == payload,
        "rid and the data unchanged",
        compact(&told),
    )?;
    first
        .no_notification("broadcast", quiet_window(&ctx), |_| true)
        .await?;
    Ok(Outcome::Pass)
}

async fn broadcast_stays_in_room(ctx: Ctx) -> CaseResult {
    let (mut first, _second) = two_in_a_room(&ctx).await?;
    let mut stranger = Peer::joined(&ctx, &fresh_room()).await?;
    let rid = first.room().to_owned();
    first
        .ok("broadcast", wire::broadcast(&rid, Value::from("private")))
        .await?;
    stranger
        .no_notification("broadcast", quiet_window(&ctx), |_| true)
        .await?;
    Ok(Outcome::Pass)
}

//! Streams: publish, unpublish, subscribe, unsubscribe, and the stream-add and stream-remove
//! notifications (004 §5). Offers come from real str0m peers; these cases read signaling only.

use super::{fresh_room, quiet_window, stream_of, two_in_a_room, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::media::{MediaPeer, Tracks};
use crate::target::Ctx;
use crate::wire::sfu as wire;
use serde_json::json;

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("sfu/publish/answered-with-mid-and-sfuid")
            .documented("004 §5 发布流")
            .sends("publish with an Opus and VP8 offer and minfo")
            .requires("ok:true; data.jsep is an answer with an SDP; data.mid and data.sfuid are strings")
            .run(|c| Box::pin(publish_answered(c))),
        Case::must("sfu/publish/stream-add-to-others")
            .documented("004 §5 有人发布流")
            .sends("publish by one of two peers")
            .requires("the other gets stream-add with rid, uid, the answer's mid, sfuid and the minfo sent; the publisher gets none")
            .run(|c| Box::pin(stream_add_to_others(c))),
        Case::must("sfu/publish/before-join-refused")
            .inferred("S5: every method but join needs the room joined")
            .sends("publish on a connection that has not joined")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(publish_before_join_refused(c))),
        Case::must("sfu/publish/without-jsep-refused")
            .inferred("S7: a publish without jsep is invalid_params")
            .sends("publish with rid and minfo but no jsep")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(publish_without_jsep_refused(c))),
        Case::must("sfu/join/pubs-list-the-streams")
            .documented("004 §5 加入房间: pubs with mid, minfo, rid, sfuid, uid")
            .sends("join of a room where a peer publishes")
            .requires("pubs holds the stream with its mid, minfo, rid, sfuid and the publisher's uid")
            .run(|c| Box::pin(pubs_list_the_streams(c))),
        Case::must("sfu/unpublish/stream-remove-to-others")
            .documented("004 §5 取消发布流, 有人取消发布流")
            .sends("unpublish of a published mid")
            .requires("ok:true; the other peer gets stream-remove with rid, uid and mid")
            .run(|c| Box::pin(stream_remove_to_others(c))),
        Case::must("sfu/unpublish/unknown-mid-refused")
            .inferred("S7: unpublish of a mid not published is stream_not_found")
            .sends("unpublish of a mid nobody published")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(unknown_mid_unpublish_refused(c))),
        Case::must("sfu/leave/streams-removed")
            .inferred("S6: a peer's streams end with it; nothing leaks")
            .sends("a publisher's socket reset, then a newcomer's join")
            .requires("the other peer gets stream-remove for the mid, and the newcomer's pubs do not hold it")
            .run(|c| Box::pin(streams_removed_on_drop(c))),
        Case::must("sfu/subscribe/answered-with-sid")
            .documented("004 §5 订阅流")
            .sends("subscribe to a published mid with a recvonly offer")
            .requires("ok:true; data.jsep is an answer with an SDP; data.sid is a string")
            .run(|c| Box::pin(subscribe_answered(c))),
        Case::must("sfu/subscribe/missing-stream-refused")
            .inferred("S7: subscribe to a mid not published in the room is stream_not_found")
            .sends("subscribe to a mid nobody published")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(missing_stream_refused(c))),
        Case::must("sfu/subscribe/without-mid-refused")
            .inferred("S7: a subscribe without mid is invalid_params")
            .sends("subscribe with rid and jsep but no mid")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(subscribe_without_mid_refused(c))),
        Case::must("sfu/unsubscribe/answered")
            .documented("004 §5 取消订阅流")
            .sends("unsubscribe with the sid a subscribe returned")
            .requires("ok:true")
            .run(|c| Box::pin(unsubscribe_answered(c))),
        Case::must("sfu/unsubscribe/unknown-sid-refused")
            .inferred("S7: unsubscribe of a sid the peer does not hold is subscription_not_found")
            .sends("unsubscribe with a made-up sid")
            .requires("ok:false with errorCode and errorReason")
            .run(|c| Box::pin(unknown_sid_refused(c))),
    ]
}

async fn publish_answered(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let (_publisher, answer) = peer.publish(Tracks::AUDIO_VIDEO).await?;
    let jsep = &answer["jsep"];
    let sdp_ok =
        jsep["type"] == "answer" && jsep["sdp"].as_str().is_some_and(|s| s.starts_with("v=0"));
    ensure(
        sdp_ok && answer["sfuid"].is_string(),
        "jsep {type: answer, sdp: v=0...} and a string sfuid",
        compact(&answer),
    )?;
    stream_of(&answer)?;
    Ok(Outcome::Pass)
}

async fn stream_add_to_others(ctx: Ctx) -> CaseResult {
    let (mut publisher, mut watcher) = two_in_a_room(&ctx).await?;
    let (_media, answer) = publisher.publish(Tracks::AUDIO_VIDEO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    let told = watcher
        .notification("stream-add", ctx.wait, |d| d["mid"] == mid.as_str())
        .await?;
    let data = &told["data"];
    let minfo = json!({"audio": true, "video": true, "audiotype": 0, "videotype": 0});
    let fields_ok = data["rid"] == publisher.room()
        && data["uid"] == publisher.uid.as_str()
        && data["sfuid"] == sfuid.as_str();
    ensure(
        fields_ok,
        "rid, the publisher's uid and the answer's sfuid",
        compact(&told),
    )?;
    ensure(
        data["minfo"] == minfo,
        format!("minfo {minfo}"),
        compact(&data["minfo"]),
    )?;
    publisher
        .no_notification("stream-add", quiet_window(&ctx), |d| {
            d["mid"] == mid.as_str()
        })
        .await?;
    Ok(Outcome::Pass)
}

async fn publish_before_join_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::connect(&ctx).await?;
    let media = MediaPeer::publisher(Tracks::AUDIO)
        .await
        .map_err(Failure::Harness)?;
    let response = peer
        .refused(
            "publish",
            wire::publish(&fresh_room(), media.offer(), true, false),
        )
        .await?;
    super::check_error_shape(&response)?;
    Ok(Outcome::Pass)
}

async fn publish_without_jsep_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let mut data = wire::publish(peer.room(), "", true, false);
    data.as_object_mut().map(|d| d.remove("jsep"));
    super::check_error_shape(&peer.refused("publish", data).await?)?;
    Ok(Outcome::Pass)
}

async fn pubs_list_the_streams(ctx: Ctx) -> CaseResult {
    let rid = fresh_room();
    let mut publisher = Peer::joined(&ctx, &rid).await?;
    let (_media, answer) = publisher.publish(Tracks::AUDIO).await?;
    let (mid, _) = stream_of(&answer)?;
    let mut newcomer = Peer::connect(&ctx).await?;
    let data = newcomer.ok("join", wire::join(&rid)).await?;
    let listed = data["pubs"]
        .as_array()
        .and_then(|pubs| pubs.iter().find(|p| p["mid"] == mid.as_str()));
    let Some(entry) = listed else {
        return Err(Failure::mismatch(
            format!("pubs holding {mid}"),
            compact(&data),
        ));
    };
    let fields_ok = entry["rid"] == rid.as_str()
        && entry["uid"] == publisher.uid.as_str()
        && entry["sfuid"].is_string()
        && entry["minfo"]["audio"] == true;
    ensure(
        fields_ok,
        "rid, uid, sfuid and minfo.audio=true",
        compact(entry),
    )?;
    Ok(Outcome::Pass)
}

async fn stream_remove_to_others(ctx: Ctx) -> CaseResult {
    let (mut publisher, mut watcher) = two_in_a_room(&ctx).await?;
    let (_media, answer) = publisher.publish(Tracks::AUDIO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    let rid = publisher.room().to_owned();
    publisher
        .ok("unpublish", wire::unpublish(&rid, &mid, &sfuid))
        .await?;
    let uid = publisher.uid.clone();
    let told = watcher
        .notification("stream-remove", ctx.wait, |d| d["mid"] == mid.as_str())
        .await?;
    ensure(
        told["data"]["rid"] == rid.as_str() && told["data"]["uid"] == uid.as_str(),
        "rid and the publisher's uid",
        compact(&told),
    )?;
    Ok(Outcome::Pass)
}

async fn unknown_mid_unpublish_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let rid = peer.room().to_owned();
    let response = peer
        .refused("unpublish", wire::unpublish(&rid, "nobody#000000", "sfu_1"))
        .await?;
    super::check_error_shape(&response)?;
    Ok(Outcome::Pass)
}

async fn streams_removed_on_drop(ctx: Ctx) -> CaseResult {
    let (mut publisher, mut watcher) = two_in_a_room(&ctx).await?;
    let (_media, answer) = publisher.publish(Tracks::AUDIO).await?;
    let (mid, _) = stream_of(&answer)?;
    let rid = publisher.room().to_owned();
    publisher.ws.abort();
    watcher
        .notification("stream-remove", ctx.slow_wait, |d| d["mid"] == mid.as_str())
        .await?;
    let mut newcomer = Peer::connect(&ctx).await?;
    let data = newcomer.ok("join", wire::join(&rid)).await?;
    let leaked = data["pubs"]
        .as_array()
        .is_some_and(|pubs| pubs.iter().any(|p| p["mid"] == mid.as_str()));
    ensure(!leaked, format!("pubs without {mid}"), compact(&data))?;
    Ok(Outcome::Pass)
}

/// A peer publishing audio and video in a fresh room, and another peer of the room.
async fn published(ctx: &Ctx) -> Result<(Peer, MediaPeer, String, String, Peer), Failure> {
    let (mut publisher, watcher) = two_in_a_room(ctx).await?;
    let (media, answer) = publisher.publish(Tracks::AUDIO_VIDEO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    Ok((publisher, media, mid, sfuid, watcher))
}

async fn subscribe_answered(ctx: Ctx) -> CaseResult {
    let (_publisher, _media, mid, sfuid, mut watcher) = published(&ctx).await?;
    let (_subscriber, answer) = watcher.subscribe(&mid, &sfuid).await?;
    let sdp_ok = answer["jsep"]["type"] == "answer" && answer["jsep"]["sdp"].is_string();
    ensure(
        sdp_ok && answer["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "jsep answer and a string sid",
        compact(&answer),
    )?;
    Ok(Outcome::Pass)
}

async fn missing_stream_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let media = MediaPeer::subscriber(Tracks::AUDIO_VIDEO)
        .await
        .map_err(Failure::Harness)?;
    let rid = peer.room().to_owned();
    let response = peer
        .refused(
            "subscribe",
            wire::subscribe(&rid, "nobody#000000", media.offer(), "sfu_1"),
        )
        .await?;
    super::check_error_shape(&response)?;
    Ok(Outcome::Pass)
}

async fn subscribe_without_mid_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let media = MediaPeer::subscriber(Tracks::AUDIO_VIDEO)
        .await
        .map_err(Failure::Harness)?;
    let mut data = wire::subscribe(peer.room(), "", media.offer(), "sfu_1");
    data.as_object_mut().map(|d| d.remove("mid"));
    super::check_error_shape(&peer.refused("subscribe", data).await?)?;
    Ok(Outcome::Pass)
}

async fn unsubscribe_answered(ctx: Ctx) -> CaseResult {
    let (_publisher, _media, mid, sfuid, mut watcher) = published(&ctx).await?;
    let (_subscriber, answer) = watcher.subscribe(&mid, &sfuid).await?;
    let sid = answer["sid"].as_str().unwrap_or_default().to_owned();
    let rid = watcher.room().to_owned();
    watcher
        .ok("unsubscribe", wire::unsubscribe(&rid, &mid, &sid, &sfuid))
        .await?;
    Ok(Outcome::Pass)
}

async fn unknown_sid_refused(ctx: Ctx) -> CaseResult {
    let mut peer = Peer::joined(&ctx, &fresh_room()).await?;
    let rid = peer.room().to_owned();
    let data = wire::unsubscribe(&rid, "nobody#000000", "nobody#000001", "sfu_1");
    super::check_error_shape(&peer.refused("unsubscribe", data).await?)?;
    Ok(Outcome::Pass)
}

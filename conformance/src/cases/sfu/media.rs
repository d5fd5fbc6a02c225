//! Media through the SFU (004 §1: SFU, Opus and VP8): real str0m peers publish Opus and VP8
//! RTP; subscribers record what arrives.

use super::{fresh_room, stream_of, two_in_a_room, Peer};
use crate::case::{Case, CaseResult, Failure, Outcome};
use crate::check::{compact, ensure};
use crate::client::media::{MediaPeer, PeerReport, Tracks};
use crate::target::Ctx;
use crate::wire::sfu as wire;
use std::time::Duration;
use str0m::media::MediaKind;

/// Samples of each kind a subscriber must get to count as receiving.
const ENOUGH: u64 = 10;
/// How long media must stay away to count as stopped.
const STOPPED_WINDOW: Duration = Duration::from_millis(1500);

pub fn cases() -> Vec<Case> {
    vec![
        Case::must("sfu/media/subscriber-receives-opus-and-vp8")
            .documented("004 §1 基于SFU架构，音频支持opus，视频支持vp8")
            .sends("a publisher sending Opus and VP8; a subscriber of its mid")
            .requires("the subscriber receives Opus and VP8 samples, on the payload types its answer gives those codecs, within the slow wait")
            .run(|c| Box::pin(subscriber_receives(c))),
        Case::must("sfu/media/keyframe-request-reaches-publisher")
            .inferred("S8: an SFU passes a subscriber's PLI up to the publisher, or VP8 cannot recover")
            .sends("a PLI from a subscriber that already receives video")
            .requires("the publisher gets a keyframe request")
            .run(|c| Box::pin(keyframe_request_reaches_publisher(c))),
        Case::should("sfu/media/lost-video-resent")
            .inferred("S8: a subscriber's NACK for video is answered from the SFU's send buffer (RTX when negotiated), or a lost packet costs a keyframe")
            .sends("a subscriber that drops every fifth VP8 packet before decrypting it, so that it sends NACKs")
            .requires("a dropped packet comes again (its sequence number and SSRC, or on an RTX payload type) within the slow wait")
            .run(|c| Box::pin(lost_video_resent(c))),
        Case::must("sfu/media/unpublish-stops-media")
            .documented("004 §5 取消发布流, 有人取消发布流")
            .sends("unpublish while a subscriber receives")
            .requires("the subscriber's peer gets stream-remove, and media stops within the slow wait")
            .run(|c| Box::pin(unpublish_stops_media(c))),
        Case::must("sfu/media/other-room-gets-nothing")
            .inferred("S5: a room's streams are not reachable from another room")
            .sends("a subscribe to a stream's mid from a peer of another room")
            .requires("the subscribe is refused, or no media reaches that peer")
            .run(|c| Box::pin(other_room_gets_nothing(c))),
    ]
}

fn counts(report: &PeerReport) -> (u64, u64) {
    (
        report.received(MediaKind::Audio),
        report.received(MediaKind::Video),
    )
}

/// A publisher of audio and video, and a subscriber in the same room that receives both.
async fn flowing(ctx: &Ctx) -> Result<(Peer, MediaPeer, Peer, MediaPeer, String, String), Failure> {
    let (mut publisher, mut watcher) = two_in_a_room(ctx).await?;
    let (sending, answer) = publisher.publish(Tracks::AUDIO_VIDEO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    let (receiving, _) = watcher.subscribe(&mid, &sfuid).await?;
    let enough = |r: &PeerReport| counts(r).0 >= ENOUGH && counts(r).1 >= ENOUGH;
    receiving.wait_for(ctx.slow_wait, enough).await.map_err(|report| {
        let (audio, video) = counts(&report);
        let sent = sending.report().samples_sent;
        Failure::mismatch(
            format!("{ENOUGH} Opus and {ENOUGH} VP8 samples at the subscriber"),
            format!("{audio} Opus and {video} VP8 (publisher sent {sent}; subscriber connected: {})", report.connected),
        )
    })?;
    Ok((publisher, sending, watcher, receiving, mid, sfuid))
}

async fn subscriber_receives(ctx: Ctx) -> CaseResult {
    let (_publisher, _sending, _watcher, receiving, _, _) = flowing(&ctx).await?;
    let report = receiving.report();
    let wrong: Vec<String> = report
        .samples
        .iter()
        .filter(|s| {
            !matches!(
                (s.kind, s.codec.as_str()),
                (MediaKind::Audio, "opus") | (MediaKind::Video, "VP8")
            )
        })
        .map(|s| format!("{:?} pt {} {}", s.kind, s.pt, s.codec))
        .take(5)
        .collect();
    ensure(
        wrong.is_empty(),
        "audio on Opus and video on VP8 payload types",
        wrong.join(", "),
    )?;
    Ok(Outcome::Pass)
}

async fn keyframe_request_reaches_publisher(ctx: Ctx) -> CaseResult {
    let (_publisher, sending, _watcher, receiving, _, _) = flowing(&ctx).await?;
    // Any request the SFU made on its own (a new subscriber) is spaced out before ours.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = sending.report().keyframe_requests;
    receiving.request_keyframe().await;
    let arrived = sending
        .wait_for(ctx.wait, |r| r.keyframe_requests > before)
        .await;
    let after = arrived
        .as_ref()
        .map_or_else(|r| r.keyframe_requests, |r| r.keyframe_requests);
    ensure(
        arrived.is_ok(),
        format!("more than {before} keyframe requests at the publisher"),
        after,
    )?;
    Ok(Outcome::Pass)
}

/// One VP8 packet in this many is lost at the lossy subscriber.
const LOSE_EVERY: u64 = 5;

async fn lost_video_resent(ctx: Ctx) -> CaseResult {
    let (mut publisher, mut watcher) = two_in_a_room(&ctx).await?;
    let (_sending, answer) = publisher.publish(Tracks::AUDIO_VIDEO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    let lossy = MediaPeer::lossy_subscriber(Tracks::AUDIO_VIDEO, LOSE_EVERY)
        .await
        .map_err(Failure::Harness)?;
    let (receiving, _) = watcher.subscribe_as(&mid, &sfuid, lossy).await?;
    let resent = receiving
        .wait_for(ctx.slow_wait, |r| r.retransmissions_received > 0)
        .await;
    let report = resent.as_ref().unwrap_or_else(|r| r);
    let nacks: u64 = report.rtp.values().map(|line| line.nacks).sum();
    ensure(
        resent.is_ok(),
        "a retransmission of a dropped VP8 packet",
        format!(
            "none: {} VP8 packets dropped, {} video samples decoded, {nacks} NACKs sent",
            report.video_dropped, report.video_received
        ),
    )?;
    Ok(Outcome::Pass)
}

async fn unpublish_stops_media(ctx: Ctx) -> CaseResult {
    let (mut publisher, _sending, mut watcher, receiving, mid, sfuid) = flowing(&ctx).await?;
    let rid = publisher.room().to_owned();
    publisher
        .ok("unpublish", wire::unpublish(&rid, &mid, &sfuid))
        .await?;
    watcher
        .notification("stream-remove", ctx.wait, |d| d["mid"] == mid.as_str())
        .await?;
    let settled = receiving
        .wait_for(ctx.slow_wait, |r| {
            r.samples
                .back()
                .is_none_or(|s| s.at.elapsed() >= STOPPED_WINDOW)
        })
        .await;
    let last = settled
        .as_ref()
        .map_or_else(|r| r.samples.len(), |r| r.samples.len());
    ensure(
        settled.is_ok(),
        format!(
            "no media for {} ms after unpublish",
            STOPPED_WINDOW.as_millis()
        ),
        format!("samples still arriving ({last} in all)"),
    )?;
    Ok(Outcome::Pass)
}

async fn other_room_gets_nothing(ctx: Ctx) -> CaseResult {
    let (mut publisher, _watcher) = two_in_a_room(&ctx).await?;
    let (_sending, answer) = publisher.publish(Tracks::AUDIO_VIDEO).await?;
    let (mid, sfuid) = stream_of(&answer)?;
    let mut stranger = Peer::joined(&ctx, &fresh_room()).await?;
    let receiving = MediaPeer::subscriber(Tracks::AUDIO_VIDEO)
        .await
        .map_err(Failure::Harness)?;
    let rid = stranger.room().to_owned();
    let response = stranger
        .request(
            "subscribe",
            wire::subscribe(&rid, &mid, receiving.offer(), &sfuid),
        )
        .await?;
    if response["ok"] == false {
        return Ok(Outcome::Pass);
    }
    let sdp = response["data"]["jsep"]["sdp"].as_str().unwrap_or_default();
    let _ = receiving.accept_answer(sdp).await;
    let got = receiving
        .wait_for(ctx.wait, |r| !r.samples.is_empty())
        .await;
    ensure(
        got.is_err(),
        "no media for a peer of another room",
        format!(
            "the subscribe was answered {} and media arrived",
            compact(&response["ok"])
        ),
    )?;
    Ok(Outcome::Pass)
}

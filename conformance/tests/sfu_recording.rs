//! Recording (004 §1: 支持将录音保存到ogg文件): a published Opus track is written to an Ogg file
//! that ffprobe (Debian's ffmpeg), an independent reader, takes for stereo Opus of the length
//! the SFU received.

#[path = "support/protoo.rs"]
mod protoo;

use conformance::client::Transcript;
use conformance::wire::sfu as wire;
use protoo::{joined, publish_opus, request, WAIT};
use reference_server::externals::{find_program, skip_or_fail};
use reference_server::media::MediaOptions;
use reference_server::server::SfuSetup;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Opus packets to send: two seconds of 20 ms frames.
const PACKETS: u64 = 100;

fn ffprobe(program: &Path, file: &Path) -> Value {
    let output = std::process::Command::new(program)
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,channels:format=duration",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe's JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_opus_track_is_recorded_as_ogg_that_ffprobe_reads_at_its_length() {
    let Some(program) = find_program("ffprobe") else {
        return skip_or_fail("ffprobe (Debian's ffmpeg) is not installed");
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let setup = SfuSetup {
        media: MediaOptions {
            record_dir: Some(dir.path().to_owned()),
            ..MediaOptions::default()
        },
        ..SfuSetup::default()
    };
    let sfu = protoo::sfu(setup).await;
    let transcript = Transcript::default();
    let mut ws = joined(&sfu, "recorder", "recording", &transcript).await;
    let (publisher, answer) = publish_opus(&mut ws, "recording").await;
    publisher
        .wait_for(WAIT, |r| r.samples_sent >= PACKETS)
        .await
        .expect("the publisher sends");
    publisher.close().await;
    let mid = answer["mid"].as_str().expect("a mid").to_owned();
    request(
        &mut ws,
        3,
        "unpublish",
        wire::unpublish("recording", &mid, "sfu_1"),
    )
    .await;
    let stats = loop {
        let stats = sfu.app().media.stats().await.expect("media stats");
        if stats.recordings == 0 {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let file = std::fs::read_dir(dir.path())
        .expect("the recording directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "ogg"))
        .expect("an .ogg file");
    let probe = ffprobe(&program, &file);
    assert_eq!(probe["streams"][0]["codec_name"], "opus", "{probe}");
    assert_eq!(probe["streams"][0]["channels"], 2, "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a duration");
    assert!(
        stats.packets_in >= PACKETS / 2,
        "the SFU received only {} packets",
        stats.packets_in
    );
    let received = stats.packets_in as f64 * 0.020;
    assert!(
        (duration - received).abs() <= 0.1,
        "ffprobe says {duration} s; the SFU received {} packets = {received} s",
        stats.packets_in
    );
    eprintln!(
        "recorded {duration} s of stereo Opus ({} packets received)",
        stats.packets_in
    );
    sfu.stop().await;
}

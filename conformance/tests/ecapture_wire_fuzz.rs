//! The suite's ecapture decoder never panics on arbitrary bytes, and the in-process server
//! ignores whatever a client sends: after random frames the connection still gets its
//! heartbeats (E5). Bounded at 16 sequences.

use conformance::client::{Frame, StreamClient, Transcript};
use conformance::wire::ecapture::{decode, top_level_fields, Kind};
mod support;

use proptest::prelude::*;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

fn fixture() -> &'static support::Fixture {
    support::fixture(WAIT)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_suites_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode(&bytes).map(|d| d.describe());
        let _ = top_level_fields(&bytes);
    }
}

fn client_frame() -> impl Strategy<Value = Message> {
    prop_oneof![
        ".{0,300}".prop_map(Message::text),
        proptest::collection::vec(any::<u8>(), 0..4096).prop_map(Message::binary),
    ]
}

async fn heartbeat_after(frames: Vec<Message>) -> Result<(), String> {
    let url = fixture()
        .target
        .ecapture
        .as_ref()
        .expect("ecapture")
        .ws_url
        .clone();
    let transcript = Transcript::default();
    let mut client = StreamClient::connect("fuzz", &url, &transcript, WAIT)
        .await
        .map_err(|e| e.to_string())?;
    for frame in frames {
        client
            .send(frame, "a random frame")
            .await
            .map_err(|e| e.to_string())?;
    }
    // The connect heartbeat may come before the frames; wait for a later one.
    let mut heartbeats = 0;
    while heartbeats < 2 {
        match client.next_within(WAIT).await {
            Frame::Binary(bytes) => {
                if decode(&bytes).is_ok_and(|d| d.kind() == Kind::Heartbeat) {
                    heartbeats += 1;
                }
            }
            Frame::Text(_) => {}
            other => {
                return Err(format!(
                    "{}\n{}",
                    other.describe(),
                    transcript.lines().join("\n")
                ))
            }
        }
    }
    client.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn random_client_frames_are_ignored(frames in proptest::collection::vec(client_frame(), 1..8)) {
        let outcome = fixture().runtime.block_on(heartbeat_after(frames));
        prop_assert!(outcome.is_ok(), "{}", outcome.err().unwrap_or_default());
    }
}

//! The viewer is served at `/` next to the signaling WebSocket, as one page with no build step.
//! (Its behaviour in a browser is for the Chromium tests; this checks what is served.)

use reference_server::protocol::logrtc::SessionConfig;
use reference_server::server::start_logrtc;

#[tokio::test]
async fn the_viewer_page_is_served_at_the_root_and_speaks_to_signaling() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = start_logrtc(listener, SessionConfig::default())
        .await
        .expect("start");
    let response = reqwest::get(server.viewer_url()).await.expect("GET /");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("body");
    assert!(
        page.contains("/signaling"),
        "the page connects to /signaling"
    );
    assert!(
        page.contains(r#"role: "consumer""#),
        "the page registers as a consumer"
    );
    assert!(
        page.contains(r#"label !== "logs""#),
        "the page reads the logs channel"
    );
    assert!(
        !page.contains("<script src"),
        "no external script: no build step"
    );
    server.stop().await;
}

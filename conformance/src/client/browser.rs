//! Headless Chromium driven over WebDriver: the suite's independent WebRTC peer (its SCTP
//! shares no ancestry with webrtc-rs). It uses Debian's `chromium` and `chromium-driver` from
//! `PATH` and never downloads a browser or a driver.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::{Child, Command};

/// How long chromedriver may take to report itself ready.
const DRIVER_START: Duration = Duration::from_secs(20);
/// Session requests tried before giving up.
const SESSION_ATTEMPTS: usize = 3;

/// What is missing or broken, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{0} is not on PATH (Debian: apt-get install chromium chromium-driver)")]
    Missing(&'static str),
    #[error("cannot start chromedriver: {0}")]
    Driver(std::io::Error),
    #[error("chromedriver did not listen within {0:?}")]
    DriverSilent(Duration),
    #[error("chromedriver refused a session: {0}")]
    Session(String),
}

/// The two programs a browser test needs.
#[derive(Debug, Clone)]
pub struct BrowserPrograms {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl BrowserPrograms {
    /// Finds Debian's chromium and chromedriver on `PATH`.
    pub fn find() -> Result<Self, BrowserError> {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| reference_server::externals::find_program(name))
            .ok_or(BrowserError::Missing("chromium"))?;
        let chromedriver = reference_server::externals::find_program("chromedriver")
            .ok_or(BrowserError::Missing("chromedriver"))?;
        Ok(BrowserPrograms {
            chromium,
            chromedriver,
        })
    }
}

/// A running headless Chromium with its driver. [`Browser::close`] ends the session; dropped
/// (closed or not, as when a test panics first), it kills chromedriver's process group, which
/// holds Chromium and its helpers: killing chromedriver alone left Chromium running (seen on
/// 2026-12-06: four after panicking `sfu_demo_chromium` runs, and a later test stalled).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(programs: &BrowserPrograms) -> Result<Self, BrowserError> {
        let port = free_port().map_err(BrowserError::Driver)?;
        let driver = Command::new(&programs.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(BrowserError::Driver)?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url).await?;
        let profile = tempfile::tempdir().map_err(BrowserError::Driver)?;
        let args = chromium_args(&profile.path().display().to_string());
        let capabilities =
            json!({"goog:chromeOptions": {"binary": programs.chromium, "args": args}});
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        // A loaded machine can make the first session request fail to connect; try again.
        let mut last_error = String::new();
        for _ in 0..SESSION_ATTEMPTS {
            match builder.connect(&url).await {
                Ok(client) => {
                    return Ok(Browser {
                        client,
                        driver,
                        _profile: profile,
                    })
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(BrowserError::Session(last_error))
    }

    /// Saves a PNG of the page, for a test's artifacts.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<(), String> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// chromedriver's process id, which is also its process group's.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.id()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self
            .driver_pid()
            .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?));
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

/// DESIGN.md's flags: headless, no sandbox (root in CI), no network chatter, a throwaway
/// profile, fake media, loopback candidates, and real host addresses instead of mDNS names
/// (which webrtc-rs peers cannot resolve).
fn chromium_args(profile: &str) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--window-size=1280,900",
    ]
    .iter()
    .map(|flag| flag.to_string())
    .chain([format!("--user-data-dir={profile}")])
    .collect()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls the driver's `/status` until it says it is ready (W3C WebDriver, Status).
async fn wait_ready(url: &str) -> Result<(), BrowserError> {
    let deadline = tokio::time::Instant::now() + DRIVER_START;
    let http = reqwest::Client::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{url}/status")).send().await {
            let status: serde_json::Value = response.json().await.unwrap_or_default();
            if status["value"]["ready"] == true {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BrowserError::DriverSilent(DRIVER_START))
}

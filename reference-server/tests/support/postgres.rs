//! A throwaway PostgreSQL server on a free loopback port, or the one in NODEMGR_TEST_POSTGRES_URL.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    pub url: String,
    cluster: Option<(PathBuf, tempfile::TempDir)>,
}

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|p| p.join("initdb").exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

impl Postgres {
    /// `None` (after a loud skip message) when no PostgreSQL can be had.
    pub fn start() -> Option<Self> {
        if let Ok(url) = std::env::var("NODEMGR_TEST_POSTGRES_URL") {
            return Some(Self { url, cluster: None });
        }
        let Some(bin) = bin_dir() else {
            super::skip_or_fail("PostgreSQL (Debian package postgresql) is not installed");
            return None;
        };
        let dir = tempfile::tempdir().ok()?;
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .ok()?;
        }
        let data = dir.path().join("data");
        let ok = pg_command(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .ok()?
            .status
            .success();
        assert!(ok, "initdb failed");
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let started = pg_command(&bin, "pg_ctl")
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .output()
            .ok()?;
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Some(Self {
            url,
            cluster: Some((bin, dir)),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((bin, dir)) = &self.cluster {
            let _ = pg_command(bin, "pg_ctl")
                .args(["-m", "immediate", "-D"])
                .arg(dir.path().join("data"))
                .arg("stop")
                .output();
        }
    }
}

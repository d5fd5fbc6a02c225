//! What went over the wire during one case, for the report.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Longest frame text kept in a transcript line.
const MAX_LINE: usize = 600;

#[derive(Debug, Clone)]
pub struct Transcript {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Default for Transcript {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            lines: Arc::default(),
        }
    }
}

impl Transcript {
    /// Records one line, e.g. `c1 → {"type":"heartbeat",...}`.
    pub fn record(&self, who: &str, arrow: &str, text: &str) {
        let at = self.started.elapsed().as_millis();
        let line = format!(
            "{at:>6}ms {who} {arrow} {}",
            crate::check::truncate(text, MAX_LINE)
        );
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

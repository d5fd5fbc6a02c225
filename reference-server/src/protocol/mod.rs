//! Sans-IO protocol cores. Nothing in here opens a socket, spawns a task or reads a clock:
//! time is an input ([`Now`]), and every effect is an output the transport driver performs.

pub mod cmdrelay;
pub mod ecapture;
pub mod logrtc;
pub mod nodemgr;
pub mod rate;
pub mod sfu;

use chrono::{DateTime, Utc};
use std::time::Instant;

/// The two clocks a protocol core needs, read once by the driver and passed in.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time, for deadlines and rates.
    pub mono: Instant,
    /// Wall time, for the timestamps written on the wire and in the store.
    pub wall: DateTime<Utc>,
}

impl Now {
    /// The same instant moved forward, for tests that step time.
    pub fn after(self, by: std::time::Duration) -> Self {
        Self {
            mono: self.mono + by,
            wall: self.wall + chrono::Duration::from_std(by).unwrap_or_default(),
        }
    }
}

//! A connection's session timer: one tokio timer per connection. Making a new timer on every
//! wake-up (every frame) registered and cleared a timer entry per frame, a visible share of a
//! heartbeat's cost in `perf`; moving it on every frame still took the timer wheel's lock per
//! frame, since every heartbeat moves a session's deadline later. So the timer moves only
//! earlier: a later deadline leaves it where it is, it fires early, and the session, which
//! checks the time in `handle_timeout`, finds nothing due and names its deadline again.

use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::time::Sleep;

pub struct SessionTimer {
    sleep: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl Default for SessionTimer {
    fn default() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        }
    }
}

impl SessionTimer {
    /// Aims the timer at the session's deadline, or leaves it at an earlier one; `None`
    /// disarms it.
    pub fn arm(&mut self, deadline: Option<Instant>) {
        match (deadline, self.armed_for) {
            (None, _) => self.armed_for = None,
            (Some(at), Some(armed)) if at >= armed => {}
            (Some(at), _) => {
                self.sleep.as_mut().reset(at.into());
                self.armed_for = Some(at);
            }
        }
    }

    /// Resolves once the timer's deadline has passed (it may be earlier than the session's
    /// latest), and disarms; never while disarmed.
    /// Cancel-safe: dropped unfinished, it changes nothing.
    pub async fn fired(&mut self) {
        if self.armed_for.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed_for = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(30);

    /// Whether the timer fires within `limit`.
    async fn fires_within(timer: &mut SessionTimer, limit: Duration) -> bool {
        tokio::time::timeout(limit, timer.fired()).await.is_ok()
    }

    #[tokio::test]
    async fn fires_at_the_armed_deadline_and_then_waits_for_the_next() {
        let mut timer = SessionTimer::default();
        let start = Instant::now();
        timer.arm(Some(start + SHORT));
        timer.fired().await;
        assert!(start.elapsed() >= SHORT);

        // Disarmed once fired: nothing fires while one waits.
        assert!(
            !fires_within(&mut timer, 4 * SHORT).await,
            "a disarmed timer fired"
        );

        // Moved earlier before it fires, the new deadline holds; moved later, it stays at the
        // earlier one and fires there, early (the session finds nothing due and the driver
        // arms it again).
        for (first, then) in [(LONG, SHORT), (SHORT, LONG)] {
            let now = Instant::now();
            timer.arm(Some(now + first));
            timer.arm(Some(now + then));
            assert!(
                fires_within(&mut timer, LONG / 2).await,
                "armed for {first:?} then {then:?}: did not fire at the earlier deadline"
            );
            assert!(now.elapsed() >= SHORT);
        }
        timer.arm(Some(Instant::now() + LONG));
        assert!(
            !fires_within(&mut timer, 4 * SHORT).await,
            "fired before the deadline armed after firing"
        );
    }
}

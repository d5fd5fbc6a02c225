//! A connection's session timer: one tokio timer per connection. Making a new timer on every
//! wake-up (every frame) registered and cleared a timer entry per frame, a visible share of a
//! heartbeat's cost in `perf`; moving it on every frame still took the timer wheel's lock per
//! frame, since every heartbeat moves a session's deadline later. So the timer moves only
//! earlier: a later deadline leaves it where it is, it fires early, and the session, which
//! checks the time in `handle_timeout`, finds nothing due and names its deadline again.
//!
//! Nor is the sleep polled on every wake-up of its connection: once it holds the connection's
//! waker it wakes the connection itself, so it is polled again only when it has fired or was
//! moved (`Sleep::poll` on every frame was about 1% of a heartbeat's cost).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

pub struct SessionTimer {
    sleep: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    /// The waker the sleep was last polled with, until it is moved.
    holds: Option<Waker>,
}

impl Default for SessionTimer {
    fn default() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            holds: None,
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
                self.holds = None;
            }
        }
    }

    /// Ready once the timer's deadline has passed (it may be earlier than the session's
    /// latest), and disarms; never while disarmed.
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed_for.is_none() {
            return Poll::Pending;
        }
        let holds_this_waker = self
            .holds
            .as_ref()
            .is_some_and(|held| held.will_wake(cx.waker()));
        if holds_this_waker && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed_for = None;
                self.holds = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                if !holds_this_waker {
                    self.holds = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Waits for [`SessionTimer::poll_fired`].
    /// Cancel-safe: dropped unfinished, it changes nothing.
    pub async fn fired(&mut self) {
        std::future::poll_fn(|cx| self.poll_fired(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::counting_waker::{counting_waker, Woken};
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

    /// Whether `woken` counts a wake-up within `limit`: looked at every millisecond, so that
    /// a slow machine only makes the test slower.
    async fn woken_within(woken: &Woken, limit: Duration) -> bool {
        let start = Instant::now();
        while woken.count() == 0 && start.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        woken.count() > 0
    }

    fn poll_with(timer: &mut SessionTimer, waker: &Waker) -> Poll<()> {
        timer.poll_fired(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn the_waker_of_the_latest_poll_is_the_one_woken() {
        // The sleep is not polled again for a waker it holds; a new waker must reach it.
        let (first, first_waker) = counting_waker();
        let (second, second_waker) = counting_waker();
        let mut timer = SessionTimer::default();
        timer.arm(Some(Instant::now() + SHORT));
        assert_eq!(poll_with(&mut timer, &first_waker), Poll::Pending);
        assert_eq!(poll_with(&mut timer, &first_waker), Poll::Pending);
        assert_eq!(poll_with(&mut timer, &second_waker), Poll::Pending);
        assert!(
            woken_within(&second, LONG).await,
            "the latest waker was not woken"
        );
        assert_eq!(second.count(), 1);
        assert_eq!(first.count(), 0);
        assert_eq!(poll_with(&mut timer, &second_waker), Poll::Ready(()));
    }

    #[tokio::test]
    async fn a_deadline_moved_earlier_after_a_poll_still_fires_on_time() {
        let (woken, waker) = counting_waker();
        let mut timer = SessionTimer::default();
        let start = Instant::now();
        timer.arm(Some(start + LONG));
        assert_eq!(poll_with(&mut timer, &waker), Poll::Pending);
        timer.arm(Some(start + SHORT));
        assert_eq!(poll_with(&mut timer, &waker), Poll::Pending);
        assert!(
            woken_within(&woken, LONG).await,
            "the moved deadline woke no one"
        );
        assert!(
            start.elapsed() < LONG,
            "fired at the first deadline, not the moved one"
        );
        assert_eq!(woken.count(), 1);
        assert_eq!(poll_with(&mut timer, &waker), Poll::Ready(()));
    }
}

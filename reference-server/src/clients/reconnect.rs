//! Reconnecting with exponential backoff and jitter, shared by the reference clients.

use std::future::Future;
use std::time::{Duration, Instant};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A connection that lived this long resets the backoff and the failure count.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// What one connection attempt asks of the loop.
pub enum Next<T> {
    /// Connect again after the backoff.
    Retry,
    /// Stop with this: retrying cannot help (e.g. the token was refused).
    Stop(T),
}

/// Runs `attempt` until it says stop (`Ok`) or `max_attempts` consecutive short-lived
/// attempts failed (`Err` with their number).
pub async fn with_backoff<T, F, Fut>(
    max_backoff: Duration,
    max_attempts: Option<u32>,
    mut attempt: F,
) -> Result<T, u32>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Next<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0;
    loop {
        let started = Instant::now();
        if let Next::Stop(value) = attempt().await {
            return Ok(value);
        }
        if started.elapsed() > HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
            failures = 0;
        }
        failures += 1;
        if max_attempts.is_some_and(|max| failures >= max) {
            return Err(failures);
        }
        tracing::info!(?backoff, "reconnecting");
        tokio::time::sleep(backoff + jitter(backoff)).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Up to a quarter of `backoff`, so that a fleet does not reconnect in lockstep.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    backoff.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

//! The rate limit every session applies to the frames it reads: a token bucket.

use std::time::Instant;

/// `per_sec` frames per second sustained, with bursts up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_up_to(now, 1) == 1
    }

    /// Takes as many whole tokens as there are, up to `wanted`; returns how many.
    pub fn take_up_to(&mut self, now: Instant, wanted: usize) -> usize {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        // Whole tokens only, and never more than asked for.
        let taken = (self.tokens.floor() as usize).min(wanted);
        self.tokens -= taken as f64;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_empties_the_bucket_and_time_refills_it() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start, 10.0, 3.0);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(bucket.take(start + Duration::from_millis(100)));
    }

    #[test]
    fn a_bulk_take_gets_what_is_there_and_no_more_than_asked() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start, 100.0, 8.0);
        assert_eq!(bucket.take_up_to(start, 5), 5);
        assert_eq!(bucket.take_up_to(start, 5), 3, "only what is left");
        assert_eq!(bucket.take_up_to(start, 5), 0);
        let later = start + Duration::from_millis(50);
        assert_eq!(bucket.take_up_to(later, 64), 5, "refilled at 100 a second");
        let much_later = later + Duration::from_secs(60);
        assert_eq!(bucket.take_up_to(much_later, 64), 8, "never past the burst");
    }
}

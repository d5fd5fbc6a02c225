//! Latency histogram, error counts and the progress line, shared by all simulated nodes.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Stats {
    latency_us: Mutex<Histogram<u64>>,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub connected: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        // 1 µs to 60 s at 3 significant figures.
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
            .expect("1 µs to 60 s at 3 significant figures are valid bounds");
        Arc::new(Self {
            latency_us: Mutex::new(histogram),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn record_ack(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut histogram = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = histogram.record(micros.min(60_000_000));
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_error(&self, code: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        *errors.entry(code.to_owned()).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// p50, p99, p99.9 and max, in milliseconds.
    pub fn percentiles_ms(&self) -> [f64; 4] {
        let h = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ms = |us: u64| us as f64 / 1000.0;
        [
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        ]
    }

    /// Prints a progress line every second until `until`.
    pub async fn show_progress(self: Arc<Self>, label: &'static str, until: Instant) {
        let started = Instant::now();
        let mut last = 0;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let acked = self.acked.load(Ordering::Relaxed);
            let [p50, p99, ..] = self.percentiles_ms();
            eprintln!(
                "[{:>4}s] {} connected, {label} {}/s, p50 {p50:.2} ms, p99 {p99:.2} ms, errors {:?}",
                started.elapsed().as_secs(),
                self.connected.load(Ordering::Relaxed),
                acked - last,
                self.errors()
            );
            last = acked;
        }
    }
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was full, over every
/// socket of this network namespace (`RcvbufErrors` in /proc/net/snmp).
pub fn udp_receive_buffer_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    snmp_field(&snmp, "Udp:", "RcvbufErrors")
}

/// A counter of /proc/net/snmp: a header line of names, then a line of values, both led by
/// `prefix`.
fn snmp_field(snmp: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with(prefix));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    let (_, value) = names.zip(values).find(|(n, _)| *n == name)?;
    value.parse().ok()
}

/// Resident memory of a process, in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `count` per second over the whole planned run, even when loops ended early (each counts as
/// an error then): dividing by the time they lasted would inflate the rate.
pub fn planned_rate(
    count: &std::sync::atomic::AtomicU64,
    started: std::time::Instant,
    duration: std::time::Duration,
) -> f64 {
    let count = count.load(std::sync::atomic::Ordering::Relaxed) as f64;
    count / started.elapsed().max(duration).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::snmp_field;

    #[test]
    fn an_snmp_counter_is_read_by_name_from_its_protocols_lines() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 1000 2 30 900 25 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    UdpLite: 0 0 0 0 7 0\n";
        assert_eq!(snmp_field(snmp, "Udp:", "RcvbufErrors"), Some(25));
        assert_eq!(snmp_field(snmp, "UdpLite:", "RcvbufErrors"), Some(7));
        assert_eq!(snmp_field(snmp, "Udp:", "NoSuchCounter"), None);
    }
}

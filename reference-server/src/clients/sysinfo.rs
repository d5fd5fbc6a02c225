//! Host metrics read from /proc and statvfs, for the node agent's heartbeats.

use crate::protocol::nodemgr::Metrics;
use std::path::Path;

/// CPU time counters from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Reads metrics, keeping the previous CPU sample so that usage covers the last interval.
#[derive(Debug, Default)]
pub struct MetricsReader {
    previous: Option<CpuTimes>,
}

impl MetricsReader {
    pub fn read(&mut self) -> Metrics {
        let now = read_cpu_times().unwrap_or_default();
        let since = self.previous.unwrap_or_default();
        self.previous = Some(now);
        Metrics {
            cpu_usage: cpu_usage(since, now),
            memory_usage: read_memory_usage().unwrap_or(0.0),
            disk_usage: disk_usage(Path::new("/")).unwrap_or(0.0),
            load_average: read_load_average().unwrap_or(0.0),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn cpu_usage(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    let busy = after.busy.saturating_sub(before.busy);
    if total == 0 {
        return 0.0;
    }
    round2(busy as f64 * 100.0 / total as f64)
}

/// Parses `cpu  user nice system idle iowait irq softirq steal ...`.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

fn read_cpu_times() -> Option<CpuTimes> {
    parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Used memory as a percentage: (MemTotal - MemAvailable) / MemTotal.
pub fn parse_memory_usage(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| round2((total - available) * 100.0 / total))
}

fn read_memory_usage() -> Option<f64> {
    parse_memory_usage(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn disk_usage(path: &Path) -> Option<f64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    let total = stats.f_blocks as f64;
    let free = stats.f_bavail as f64;
    (total > 0.0).then(|| round2((total - free) * 100.0 / total))
}

pub fn parse_load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

fn read_load_average() -> Option<f64> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

/// The host's name, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// PRETTY_NAME from /etc/os-release, else the kernel's name.
pub fn os_info() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_is_the_busy_share_of_the_interval() {
        let before = parse_cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\n").unwrap();
        let after = parse_cpu_times("cpu  150 0 150 750 150 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_usage(before, after), 50.0);
    }

    #[test]
    fn memory_usage_counts_available_memory_as_free() {
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n";
        assert_eq!(parse_memory_usage(meminfo), Some(75.0));
    }

    #[test]
    fn load_average_is_the_one_minute_figure() {
        assert_eq!(parse_load_average("1.23 0.50 0.10 1/100 42\n"), Some(1.23));
    }

    #[test]
    fn this_host_yields_metrics_in_range() {
        let m = MetricsReader::default().read();
        for v in [m.cpu_usage, m.memory_usage, m.disk_usage] {
            assert!((0.0..=100.0).contains(&v), "{m:?}");
        }
        assert!(m.load_average >= 0.0);
    }
}

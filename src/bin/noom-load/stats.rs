//! Summaries of measured figures (nearest-rank percentiles of latencies, the
//! median of a few runs) and the units the reports print them in.

use std::time::Duration;

use serde::Serialize;

/// Latency distribution, in milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Summarises durations given in microseconds (nearest-rank percentiles).
pub fn summarize(mut us: Vec<u64>) -> Summary {
    if us.is_empty() {
        return Summary::default();
    }
    us.sort_unstable();
    let n = us.len();
    let rank = |p: f64| us[((p * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1000.0;
    Summary {
        count: n,
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
        max_ms: us[n - 1] as f64 / 1000.0,
        mean_ms: us.iter().sum::<u64>() as f64 / n as f64 / 1000.0,
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms  (n={})",
            self.p50_ms, self.p99_ms, self.max_ms, self.mean_ms, self.count
        )
    }
}

/// A duration in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The middle value (the upper one of an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

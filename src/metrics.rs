//! Counters shared by the subsystems and their rendering in the Prometheus text format.
//!
//! Plain atomics: the hot paths (a stored message, a relayed delivery) pay one
//! relaxed increment, and `/metrics` reads them all when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the store flush latency histogram.
const FLUSH_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Messages appended to the store.
    pub messages_stored: AtomicU64,
    /// Chat messages delivered to other sockets (one per recipient).
    pub messages_relayed: AtomicU64,
    /// Signaling payloads (offer, answer, ice) relayed between call members.
    pub signals_relayed: AtomicU64,
    /// Requests refused by the per-connection rate limit.
    pub rate_limited: AtomicU64,
    /// Connections closed for flooding.
    pub flood_disconnects: AtomicU64,
    /// Times the async runtime ran no task for `watchdog::STALL` or longer.
    pub runtime_stalls: AtomicU64,
    /// ...and how long those stalls lasted, in total (ms).
    pub runtime_stall_ms: AtomicU64,
    /// Messages removed by retention.
    pub messages_expired: AtomicU64,
    /// HTTP(S) connections refused at accept: too many open from one address.
    pub connections_refused: AtomicU64,
    /// Connections closed because the client did not read what it was sent.
    pub slow_consumer_disconnects: AtomicU64,
    /// HTTP connections closed because a request head did not arrive in time.
    pub http_timeouts: AtomicU64,
    /// Stored sessions deleted because they were unused for too long.
    pub sessions_expired: AtomicU64,
    flush_buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    flush_count: AtomicU64,
    flush_sum_us: AtomicU64,
    flush_errors: AtomicU64,
}

/// Values computed when scraped (they live elsewhere).
pub struct Gauges {
    pub connections_websocket: u64,
    pub connections_polling: u64,
    pub rooms_live: u64,
    pub rooms_known: u64,
    pub calls_live: u64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn observe_flush(&self, took: Duration, ok: bool) {
        if !ok {
            Self::inc(&self.flush_errors);
        }
        let secs = took.as_secs_f64();
        for (i, bound) in FLUSH_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                Self::inc(&self.flush_buckets[i]);
            }
        }
        Self::inc(&self.flush_count);
        Self::add(&self.flush_sum_us, took.as_micros() as u64);
    }

    /// The whole exposition, in the Prometheus text format 0.0.4.
    pub fn render(&self, g: &Gauges) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            write_metric(&mut out, name, kind, help, lines);
        };
        let one = |v: u64| vec![(String::new(), v as f64)];
        metric(
            "noom_connections",
            "gauge",
            "Socket.IO connections open now, by transport.",
            &[
                (
                    "{transport=\"websocket\"}".into(),
                    g.connections_websocket as f64,
                ),
                (
                    "{transport=\"polling\"}".into(),
                    g.connections_polling as f64,
                ),
            ],
        );
        metric(
            "noom_connections_total",
            "counter",
            "Socket.IO connections accepted since start.",
            &one(get(&self.connections_total)),
        );
        metric(
            "noom_rooms_live",
            "gauge",
            "Rooms with members now.",
            &one(g.rooms_live),
        );
        metric(
            "noom_rooms_known",
            "gauge",
            "Rooms in the store.",
            &one(g.rooms_known),
        );
        metric(
            "noom_calls_live",
            "gauge",
            "Rooms with a call in progress.",
            &one(g.calls_live),
        );
        metric(
            "noom_messages_stored_total",
            "counter",
            "Chat messages made durable.",
            &one(get(&self.messages_stored)),
        );
        metric(
            "noom_messages_relayed_total",
            "counter",
            "Chat messages delivered to other members (one per recipient).",
            &one(get(&self.messages_relayed)),
        );
        metric(
            "noom_messages_expired_total",
            "counter",
            "Chat messages removed by retention.",
            &one(get(&self.messages_expired)),
        );
        metric(
            "noom_signals_relayed_total",
            "counter",
            "Call signaling payloads relayed (offer, answer, ice).",
            &one(get(&self.signals_relayed)),
        );
        metric(
            "noom_rate_limited_total",
            "counter",
            "Requests refused by the per-connection rate limit.",
            &one(get(&self.rate_limited)),
        );
        metric(
            "noom_flood_disconnects_total",
            "counter",
            "Connections closed for ignoring the rate limit.",
            &one(get(&self.flood_disconnects)),
        );
        metric(
            "noom_runtime_stalls_total",
            "counter",
            "Times the server's async runtime ran no task for 0.5 s or longer.",
            &one(get(&self.runtime_stalls)),
        );
        metric(
            "noom_runtime_stall_seconds_total",
            "counter",
            "How long those stalls lasted, in total.",
            &[(String::new(), get(&self.runtime_stall_ms) as f64 / 1000.0)],
        );
        metric(
            "noom_connections_refused_total",
            "counter",
            "HTTP(S) connections refused because their address had too many open.",
            &one(get(&self.connections_refused)),
        );
        metric(
            "noom_slow_consumer_disconnects_total",
            "counter",
            "Connections closed because the client did not read what it was sent.",
            &one(get(&self.slow_consumer_disconnects)),
        );
        metric(
            "noom_http_timeouts_total",
            "counter",
            "HTTP connections closed because a request head did not arrive in time.",
            &one(get(&self.http_timeouts)),
        );
        metric(
            "noom_sessions_expired_total",
            "counter",
            "Stored sessions deleted because they were unused for store.session_ttl_secs.",
            &one(get(&self.sessions_expired)),
        );
        metric(
            "noom_store_flush_errors_total",
            "counter",
            "Store flushes that failed.",
            &one(get(&self.flush_errors)),
        );
        let mut lines: Vec<(String, f64)> = FLUSH_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    format!("_bucket{{le=\"{b}\"}}"),
                    get(&self.flush_buckets[i]) as f64,
                )
            })
            .collect();
        let count = get(&self.flush_count) as f64;
        lines.push(("_bucket{le=\"+Inf\"}".into(), count));
        lines.push(("_sum".into(), get(&self.flush_sum_us) as f64 / 1e6));
        lines.push(("_count".into(), count));
        metric(
            "noom_store_flush_seconds",
            "histogram",
            "Latency of the store's group-commit flushes.",
            &lines,
        );
        let p = process_stats();
        metric(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the server process.",
            &[(String::new(), p.cpu_seconds)],
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident set size of the server process.",
            &one(p.rss_bytes),
        );
        metric(
            "noom_process_peak_resident_memory_bytes",
            "gauge",
            "Peak resident set size of the server process.",
            &one(p.peak_rss_bytes),
        );
        metric(
            "process_open_fds",
            "gauge",
            "Open file descriptors of the server process.",
            &one(p.open_fds),
        );
        out
    }
}

/// The whole Prometheus exposition served at `/metrics` (and read back by
/// the admin page): which node this is (`node`, a valid [`crate::node`] id:
/// nothing in it needs escaping), the core's families, the relay's (`relay`,
/// rendered by it), and the served certificate's expiry when HTTPS is on.
pub fn exposition(
    node: &str,
    core: &Metrics,
    gauges: &Gauges,
    relay: Option<&str>,
    cert_expiry_secs: Option<i64>,
) -> String {
    let mut text = String::with_capacity(8192);
    write_metric(
        &mut text,
        "noom_node_info",
        "gauge",
        "This node: its id (cluster.node_id, or generated at start) and version.",
        &[(
            format!("{{node=\"{node}\",version=\"{}\"}}", crate::VERSION),
            1.0,
        )],
    );
    text.push_str(&core.render(gauges));
    if let Some(relay) = relay {
        text.push_str(relay);
    }
    if let Some(left) = cert_expiry_secs {
        write_metric(
            &mut text,
            "noom_tls_certificate_expiry_seconds",
            "gauge",
            "Seconds until the served TLS certificate expires (negative: expired).",
            &[(String::new(), left as f64)],
        );
    }
    text
}

/// Appends one metric family in the Prometheus text format: HELP, TYPE, then
/// one sample per (labels, value) pair (labels like `{transport="udp"}`, or empty).
pub fn write_metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// What the kernel says about this process (zeros where /proc is unavailable).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub open_fds: u64,
}

pub fn process_stats() -> ProcessStats {
    let mut stats = ProcessStats::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start after ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
            let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
            if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
                stats.cpu_seconds = (u + s) as f64 / 100.0;
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| v * 1024)
            };
            if line.starts_with("VmRSS:") {
                stats.rss_bytes = kb(line).unwrap_or(0);
            } else if line.starts_with("VmHWM:") {
                stats.peak_rss_bytes = kb(line).unwrap_or(0);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        stats.open_fds = dir.count() as u64;
    }
    stats
}

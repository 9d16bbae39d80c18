//! The `chat` report: what the members' logs add up to over the measured
//! window (sends, deliveries, correctness), next to the server's and the
//! generator's own figures, printed readable or as one JSON line.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::{ChatArgs, MemberLog, Outcome, Received};
use crate::http::ServerSample;
use crate::stats::{Summary, mib, summarize};

/// Send side of the measured window.
#[derive(Debug, Default, Serialize)]
struct SendStats {
    sent: u64,
    acked: u64,
    /// Failed acks by error code (`rate_limited` included).
    errors: BTreeMap<String, u64>,
    rate_limited: u64,
    ack_timeouts: u64,
    /// Sends or acks lost to a closed connection.
    closed: u64,
    ack_latency: Summary,
    generator_lag: Summary,
    #[serde(skip)]
    acked_ids: HashSet<u64>,
}

impl SendStats {
    fn new(logs: &[MemberLog], warmup_us: u64) -> Self {
        let mut stats = SendStats::default();
        let (mut latencies, mut lags) = (Vec::new(), Vec::new());
        for sent in logs
            .iter()
            .flat_map(|l| &l.sent)
            .filter(|s| s.at_us >= warmup_us)
        {
            stats.sent += 1;
            lags.push(sent.lag_us);
            match &sent.outcome {
                Outcome::Acked { latency_us, .. } => {
                    stats.acked += 1;
                    stats.acked_ids.insert(sent.id);
                    latencies.push(*latency_us);
                }
                Outcome::Refused(code) => *stats.errors.entry(code.clone()).or_default() += 1,
                Outcome::Timeout => stats.ack_timeouts += 1,
                Outcome::Closed => stats.closed += 1,
            }
        }
        stats.rate_limited = stats.errors.get("rate_limited").copied().unwrap_or(0);
        stats.ack_latency = summarize(latencies);
        stats.generator_lag = summarize(lags);
        stats
    }
}

/// Receive side of the measured window, checked against the acked messages.
#[derive(Debug, Default, Serialize)]
struct DeliveryStats {
    /// Distinct (message, recipient) deliveries of messages sent in the window.
    delivered: u64,
    /// Acked messages x (members - 1).
    expected: u64,
    missing: u64,
    duplicates: u64,
    /// Delivered although the sender got no successful ack.
    delivered_unacked: u64,
    /// `new_message` events from elsewhere (another room, the member itself).
    unexpected: u64,
    /// Arrivals whose seq was not above the previous one (whole run).
    out_of_order: u64,
    /// Acked seqs handed out twice in a room (whole run).
    seq_duplicates: u64,
    /// Members whose connection closed during the run.
    disconnects: u64,
    latency: Summary,
}

impl DeliveryStats {
    fn new(logs: &[MemberLog], members: usize, warmup_us: u64, acked: &HashSet<u64>) -> Self {
        let mut stats = DeliveryStats::default();
        let mut latencies = Vec::new();
        let mut received: Vec<HashSet<u64>> = Vec::with_capacity(logs.len());
        for log in logs {
            let mut ids = HashSet::with_capacity(log.received.len());
            for r in log.received.iter().filter(|r| r.sent_us >= warmup_us) {
                if ids.insert(r.id) {
                    latencies.push(r.latency_us);
                } else {
                    stats.duplicates += 1;
                }
            }
            stats.delivered += ids.len() as u64;
            stats.delivered_unacked += ids.iter().filter(|id| !acked.contains(id)).count() as u64;
            stats.unexpected += log.unexpected;
            stats.out_of_order += out_of_order(&log.received);
            stats.disconnects += u64::from(log.disconnected);
            received.push(ids);
        }
        for (sender, log) in logs.iter().enumerate() {
            let room = sender / members;
            let mates = (room * members..(room + 1) * members).filter(|&m| m != sender);
            for id in log
                .sent
                .iter()
                .map(|s| s.id)
                .filter(|id| acked.contains(id))
            {
                for mate in mates.clone() {
                    stats.expected += 1;
                    stats.missing += u64::from(!received[mate].contains(&id));
                }
            }
        }
        stats.seq_duplicates = seq_duplicates(logs, members);
        stats.latency = summarize(latencies);
        stats
    }
}

fn out_of_order(received: &[Received]) -> u64 {
    received.windows(2).filter(|w| w[1].seq <= w[0].seq).count() as u64
}

/// Seqs acked twice in the same room, over the whole run.
fn seq_duplicates(logs: &[MemberLog], members: usize) -> u64 {
    let mut seqs: Vec<(usize, u64)> = logs
        .iter()
        .enumerate()
        .flat_map(|(i, log)| {
            log.sent.iter().filter_map(move |s| match s.outcome {
                Outcome::Acked { seq, .. } => Some((i / members, seq)),
                _ => None,
            })
        })
        .collect();
    seqs.sort_unstable();
    seqs.windows(2).filter(|w| w[0] == w[1]).count() as u64
}

/// Server figures over the measured window.
#[derive(Debug, Default, Serialize)]
struct ServerWindow {
    cpu_seconds: f64,
    /// Share of one core, in percent.
    cpu_percent: f64,
    cpu_us_per_delivery: f64,
    /// The server's own count of relayed deliveries in the window.
    relayed: u64,
    rate_limited: u64,
    rss_bytes: u64,
    peak_rss_bytes: u64,
    /// With several nodes: each one's CPU, in percent of a core, in `--url` order.
    node_cpu_percent: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct ChatReport {
    kind: &'static str,
    run_id: String,
    url: Vec<String>,
    rooms: usize,
    members: usize,
    connections: usize,
    offered_rate: f64,
    duration_s: f64,
    warmup_s: f64,
    size: usize,
    sent_per_sec: f64,
    delivered_per_sec: f64,
    sends: SendStats,
    deliveries: DeliveryStats,
    server: Option<ServerWindow>,
    client_cpu_seconds: f64,
    drain_s: f64,
}

impl ChatReport {
    pub(super) fn new(args: &ChatArgs, run_id: String, logs: &[MemberLog], warmup_us: u64) -> Self {
        let sends = SendStats::new(logs, warmup_us);
        let deliveries = DeliveryStats::new(logs, args.members, warmup_us, &sends.acked_ids);
        ChatReport {
            kind: "chat",
            run_id,
            url: args.url.clone(),
            rooms: args.rooms,
            members: args.members,
            connections: logs.len(),
            offered_rate: args.rate,
            duration_s: args.duration,
            warmup_s: args.warmup,
            size: args.size,
            sent_per_sec: sends.sent as f64 / args.duration,
            delivered_per_sec: deliveries.delivered as f64 / args.duration,
            sends,
            deliveries,
            server: None,
            client_cpu_seconds: 0.0,
            drain_s: 0.0,
        }
    }

    pub(super) fn with_server(
        mut self,
        before: Option<Vec<ServerSample>>,
        after: Option<Vec<ServerSample>>,
        last: Option<Vec<ServerSample>>,
    ) -> Self {
        if let (Some(b), Some(a)) = (before, after) {
            let last = last.unwrap_or_else(|| a.clone());
            let node_cpu: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| a.cpu_seconds - b.cpu_seconds)
                .collect();
            let cpu: f64 = node_cpu.iter().sum();
            let sum =
                |f: fn(&ServerSample) -> u64, s: &[ServerSample]| s.iter().map(f).sum::<u64>();
            self.server = Some(ServerWindow {
                cpu_seconds: cpu,
                cpu_percent: 100.0 * cpu / self.duration_s,
                cpu_us_per_delivery: 1e6 * cpu / self.deliveries.delivered.max(1) as f64,
                relayed: sum(|s| s.messages_relayed, &a)
                    .saturating_sub(sum(|s| s.messages_relayed, &b)),
                rate_limited: sum(|s| s.rate_limited, &a)
                    .saturating_sub(sum(|s| s.rate_limited, &b)),
                rss_bytes: sum(|s| s.rss_bytes, &a),
                peak_rss_bytes: sum(|s| s.peak_rss_bytes, &last).max(sum(|s| s.peak_rss_bytes, &a)),
                node_cpu_percent: if node_cpu.len() > 1 {
                    node_cpu
                        .iter()
                        .map(|c| 100.0 * c / self.duration_s)
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        self
    }

    pub(super) fn with_client(mut self, cpu_seconds: f64, drained: Duration) -> Self {
        self.client_cpu_seconds = cpu_seconds;
        self.drain_s = drained.as_secs_f64();
        self
    }

    /// True when nothing was lost, duplicated or reordered.
    pub(super) fn correct(&self) -> bool {
        let d = &self.deliveries;
        d.missing == 0 && d.duplicates == 0 && d.out_of_order == 0 && d.seq_duplicates == 0
    }

    pub(super) fn print(&self) {
        let (s, d) = (&self.sends, &self.deliveries);
        println!(
            "noom-load chat  run {}  {}: {} rooms x {} members = {} connections",
            self.run_id,
            self.url.join(","),
            self.rooms,
            self.members,
            self.connections
        );
        println!(
            "offered        {:.0} msg/s for {} s (+{} s warm-up), {} B texts",
            self.offered_rate, self.duration_s, self.warmup_s, self.size
        );
        println!("sent           {} ({:.1}/s)", s.sent, self.sent_per_sec);
        println!("generator lag  {}", s.generator_lag);
        println!(
            "acked          {}   failed: rate_limited {}, other errors {:?}, timeouts {}, closed {}",
            s.acked,
            s.rate_limited,
            s.errors
                .iter()
                .filter(|(c, _)| *c != "rate_limited")
                .collect::<Vec<_>>(),
            s.ack_timeouts,
            s.closed
        );
        println!("ack latency    {}", s.ack_latency);
        println!(
            "delivered      {} of {} expected ({:.1}/s)",
            d.delivered, d.expected, self.delivered_per_sec
        );
        println!(
            "losses         missing {}, duplicates {}, out of order {}, seq duplicates {}, \
             delivered-but-unacked {}, unexpected {}, disconnects {}",
            d.missing,
            d.duplicates,
            d.out_of_order,
            d.seq_duplicates,
            d.delivered_unacked,
            d.unexpected,
            d.disconnects
        );
        println!("delivery lat.  {}", d.latency);
        match &self.server {
            Some(w) => println!(
                "server         CPU {:.2} s ({:.0}% of a core), {:.2} us per delivered message; \
                 relayed {}; rate-limited {}; RSS {:.1} MiB, peak {:.1} MiB",
                w.cpu_seconds,
                w.cpu_percent,
                w.cpu_us_per_delivery,
                w.relayed,
                w.rate_limited,
                mib(w.rss_bytes),
                mib(w.peak_rss_bytes)
            ),
            None => println!("server         (no /metrics figures)"),
        }
        if let Some(w) = self
            .server
            .as_ref()
            .filter(|w| !w.node_cpu_percent.is_empty())
        {
            let nodes: Vec<String> = w
                .node_cpu_percent
                .iter()
                .map(|p| format!("{p:.0}%"))
                .collect();
            println!("per node       CPU {} of a core", nodes.join(", "));
        }
        println!(
            "load generator CPU {:.2} s in the window ({:.0}% of a core); drain {:.2} s",
            self.client_cpu_seconds,
            100.0 * self.client_cpu_seconds / self.duration_s,
            self.drain_s
        );
        if !self.correct() {
            println!("PROBLEM: messages were lost, duplicated or reordered (see `losses`)");
        }
    }
}

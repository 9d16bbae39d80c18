//! `idle`: many idle connections: how many hold, and what they cost the server.
//!
//! Opens `--connections` idle connections, `--concurrency` at a time, holds
//! them for `--hold` seconds, and reports how many were established, the
//! failures, the connect latency and the server's RSS (before, with the
//! connections, per connection, peak, and after closing them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::stream::{self, StreamExt};
use noom::client::{Client, ClientError};
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{ServerSample, authority, check_server, try_scrape};
use crate::stats::{Summary, mib, micros, summarize};
use crate::{CONNECT_TIMEOUT, Res, print_json};

#[derive(Args, Debug)]
pub struct IdleArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to hold the connections before reading the server's memory.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Share one session among all connections (does not grow the session store).
    #[arg(long)]
    reuse_session: bool,
    /// Print one JSON line instead of the readable report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct IdleReport {
    kind: &'static str,
    url: String,
    requested: usize,
    established: usize,
    failed: usize,
    /// Failure messages and how often each happened.
    failures: BTreeMap<String, u64>,
    connect_seconds: f64,
    connects_per_sec: f64,
    connect_latency: Summary,
    /// Connections the client saw close during the hold.
    dropped_during_hold: usize,
    nofile_limit: u64,
    before: Option<ServerSample>,
    held: Option<ServerSample>,
    after_close: Option<ServerSample>,
    rss_per_connection_bytes: Option<f64>,
}

pub async fn run(args: IdleArgs) -> Res<bool> {
    let addr = authority(&args.url)?;
    let nofile_limit = rlimit::increase_nofile_limit(u64::MAX)?;
    if nofile_limit < args.connections as u64 + 64 {
        eprintln!("warning: this process may open only {nofile_limit} files");
    }
    check_server(&addr).await?;
    let before = try_scrape(&addr, "before connecting").await;
    let auth = match args.reuse_session {
        true => Some(json!({ "session": shared_session(&args.url).await? })),
        false => None,
    };
    eprintln!(
        "opening {} connections, {} at a time...",
        args.connections, args.concurrency
    );
    let started = Instant::now();
    let attempts: Vec<(Result<Client, ClientError>, Duration)> = stream::iter(0..args.connections)
        .map(|_| timed_connect(&args.url, auth.clone()))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let connect_time = started.elapsed();

    let mut clients = Vec::with_capacity(attempts.len());
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(attempts.len());
    for (result, took) in attempts {
        match result {
            Ok(client) => {
                latencies.push(micros(took));
                clients.push(client);
            }
            Err(e) => *failures.entry(e.to_string()).or_default() += 1,
        }
    }
    eprintln!(
        "{} established in {:.2} s; holding {} s...",
        clients.len(),
        connect_time.as_secs_f64(),
        args.hold
    );
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let dropped = clients
        .iter_mut()
        .map(saw_disconnect)
        .filter(|&gone| gone)
        .count();
    let held = try_scrape(&addr, "while holding").await;
    clients.iter().for_each(Client::close);
    let established = clients.len();
    drop(clients);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = try_scrape(&addr, "after closing").await;

    let rss_per_connection_bytes = match (before, held) {
        (Some(b), Some(h)) if established > 0 => {
            Some((h.rss_bytes as f64 - b.rss_bytes as f64) / established as f64)
        }
        _ => None,
    };
    let report = IdleReport {
        kind: "idle",
        url: args.url.clone(),
        requested: args.connections,
        established,
        failed: args.connections - established,
        failures,
        connect_seconds: connect_time.as_secs_f64(),
        connects_per_sec: established as f64 / connect_time.as_secs_f64().max(1e-9),
        connect_latency: summarize(latencies),
        dropped_during_hold: dropped,
        nofile_limit,
        before,
        held,
        after_close,
        rss_per_connection_bytes,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print_idle(&report);
    }
    Ok(report.failed == 0 && report.dropped_during_hold == 0)
}

/// Opens one connection and returns the session token the server gave it.
async fn shared_session(url: &str) -> Res<String> {
    let mut client = Client::connect(url, None).await?;
    let event = client
        .wait_event("session", Duration::from_secs(10))
        .await?;
    client.close();
    event
        .args
        .first()
        .and_then(|s| s.get("session"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the `session` event carries no token".into())
}

async fn timed_connect(url: &str, auth: Option<Value>) -> (Result<Client, ClientError>, Duration) {
    let started = Instant::now();
    let result = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(url, auth))
        .await
        .unwrap_or(Err(ClientError::Timeout(CONNECT_TIMEOUT)));
    (result, started.elapsed())
}

fn saw_disconnect(client: &mut Client) -> bool {
    client.drain_events().iter().any(|e| e.name == "disconnect")
}

fn print_idle(r: &IdleReport) {
    println!(
        "noom-load idle  {}: {} connections requested",
        r.url, r.requested
    );
    println!(
        "established    {}  failed {}  dropped during hold {}  (open-files limit {})",
        r.established, r.failed, r.dropped_during_hold, r.nofile_limit
    );
    for (reason, count) in &r.failures {
        println!("  failure x{count}: {reason}");
    }
    println!(
        "connect        {:.2} s total ({:.0}/s); each {}",
        r.connect_seconds, r.connects_per_sec, r.connect_latency
    );
    let line = |what: &str, s: &Option<ServerSample>| match s {
        Some(s) => println!(
            "{what:<15}RSS {:.1} MiB, peak {:.1} MiB, {} WebSocket connections, {} open fds",
            mib(s.rss_bytes),
            mib(s.peak_rss_bytes),
            s.ws_connections,
            s.open_fds
        ),
        None => println!("{what:<15}(no /metrics figures)"),
    };
    line("server before", &r.before);
    line("server held", &r.held);
    line("after close", &r.after_close);
    if let Some(per) = r.rss_per_connection_bytes {
        println!("RSS per conn.  {:.1} KiB", per / 1024.0);
    }
}

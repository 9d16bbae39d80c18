//! `turn-flood`: what a flood of unauthenticated Allocates costs a TURN server.
//!
//! Sends unauthenticated Allocate requests
//! ([`noom::client::turn::allocate_request`], a fresh transaction id each)
//! from one UDP socket as fast as it can for `--duration` seconds, counts the
//! answers, and samples the memory of the server's process `--pid` from
//! `/proc` every 5 s. Any TURN server will do: `scripts/bench-relay.sh` floods
//! Noom and coturn in turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use noom::client::turn::allocate_request;

use crate::Res;

#[derive(Args, Debug)]
pub struct TurnFloodArgs {
    /// TURN server address (UDP).
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: std::net::SocketAddr,
    /// Pid of the server process, to sample its memory from /proc.
    #[arg(long)]
    pid: u32,
    /// Seconds of flood.
    #[arg(long, default_value_t = 60)]
    duration: u64,
}

/// Resident and peak memory (KiB) of a process, from /proc.
fn proc_memory(pid: u32) -> Res<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The next pseudo-random transaction id (xorshift64 on `seed`): the
/// requests must differ, or the relay would answer retransmissions.
fn next_transaction_id(seed: &mut u64) -> [u8; 12] {
    let mut id = [0u8; 12];
    for b in id.iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
    id
}

pub async fn run(args: TurnFloodArgs) -> Res<bool> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(args.server).await?;
    let sock = Arc::new(sock);
    let (rss0, _) = proc_memory(args.pid)?;
    let answers = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (sock, answers) = (sock.clone(), answers.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while sock.recv(&mut buf).await.is_ok() {
                answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut sent = 0u64;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut samples = Vec::new();
    let mut next_sample = started;
    while Instant::now() < end {
        for _ in 0..256 {
            if sock
                .send(&allocate_request(next_transaction_id(&mut seed)))
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        if Instant::now() >= next_sample {
            samples.push(proc_memory(args.pid)?.0);
            next_sample += Duration::from_secs(5);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    let (rss1, peak) = proc_memory(args.pid)?;
    let answered = answers.load(std::sync::atomic::Ordering::Relaxed);
    println!("noom-load turn-flood  {}  pid {}", args.server, args.pid);
    println!(
        "sent           {sent} unauthenticated Allocate requests in {secs:.1} s ({:.0}/s)",
        sent as f64 / secs
    );
    println!(
        "answered       {answered} ({:.3}% of requests)",
        100.0 * answered as f64 / sent.max(1) as f64
    );
    println!(
        "server RSS     before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB; samples every 5 s (MiB): {}",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        peak as f64 / 1024.0,
        samples
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(true)
}

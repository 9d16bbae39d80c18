//! `startup`: how long the real binary takes to serve, on a (filled) data directory.
//!
//! Optionally fills an empty data directory through the library's store
//! (`--fill-rooms`, `--fill-messages`), then starts the real `noom` binary
//! `--runs` times and measures the wall time from spawn to the first `200` of
//! `GET /healthz` and of `GET /api/rooms` (polled every 5 ms over raw
//! HTTP/1.0). Each run ends with SIGTERM, and the server must exit 0. The
//! server runs in the data directory (so it reads no stray `./noom.toml`)
//! unless `--config` names a file.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use noom::metrics::Metrics;
use noom::store::{NewMessage, Store, StoreOptions};
use serde::Serialize;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::http::{http_get, scrape};
use crate::stats::{median, mib};
use crate::{Res, print_json};

#[derive(Args, Debug)]
pub struct StartupArgs {
    /// Path of the `noom` binary to start.
    #[arg(long, value_name = "PATH")]
    noom: PathBuf,
    /// Data directory the server starts on.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Rooms to create when the data directory is empty (0: no fill).
    #[arg(long, default_value_t = 0)]
    fill_rooms: u64,
    /// Messages to spread over the filled rooms.
    #[arg(long, default_value_t = 0)]
    fill_messages: u64,
    /// Number of starts.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Config file for the server. Without it the server runs in the data
    /// directory, so that no stray `./noom.toml` is read.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Give up on a start after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Print one JSON line instead of the readable report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct FillReport {
    rooms: u64,
    messages: u64,
    seconds: f64,
    disk_bytes: u64,
}

#[derive(Debug, Serialize)]
struct StartRun {
    healthz_ms: f64,
    rooms_ms: f64,
    /// Rooms in the `/api/rooms` answer (the list is capped by `rooms.list_max`).
    listed_rooms: usize,
    rss_bytes: u64,
    stop_ms: f64,
    exit_ok: bool,
    exit_status: String,
}

#[derive(Debug, Serialize)]
struct StartupReport {
    kind: &'static str,
    data_dir: PathBuf,
    disk_bytes: u64,
    fill: Option<FillReport>,
    runs: Vec<StartRun>,
    healthz_median_ms: f64,
    healthz_max_ms: f64,
    rooms_median_ms: f64,
    rooms_max_ms: f64,
    all_exit_ok: bool,
}

pub async fn run(args: StartupArgs) -> Res<bool> {
    if !args.noom.is_file() {
        return Err(format!("no noom binary at {}", args.noom.display()).into());
    }
    let fill = if args.fill_rooms > 0 && is_empty_dir(&args.data_dir)? {
        eprintln!(
            "filling {} with {} rooms, {} messages...",
            args.data_dir.display(),
            args.fill_rooms,
            args.fill_messages
        );
        Some(fill(&args.data_dir, args.fill_rooms, args.fill_messages).await?)
    } else {
        if args.fill_rooms > 0 {
            eprintln!(
                "{} is not empty: starting on it as it is",
                args.data_dir.display()
            );
        }
        None
    };
    let server = ServerCommand::new(&args)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut runs = Vec::with_capacity(args.runs);
    for i in 0..args.runs {
        let run = start_once(&server, timeout).await?;
        eprintln!(
            "start {}: /healthz {:.1} ms, /api/rooms {:.1} ms, {}",
            i + 1,
            run.healthz_ms,
            run.rooms_ms,
            run.exit_status
        );
        runs.push(run);
    }
    let report = StartupReport::new(&args.data_dir, fill, runs);
    if args.json {
        print_json(&report)?;
    } else {
        report.print();
    }
    Ok(report.all_exit_ok)
}

fn is_empty_dir(dir: &Path) -> Res<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("cannot read {}: {e}", dir.display()).into()),
    }
}

/// Writes rooms and messages straight through the store, waiting for
/// durability every 10,000 messages so the commit queue stays short.
async fn fill(dir: &Path, rooms: u64, messages: u64) -> Res<FillReport> {
    let started = Instant::now();
    let options = StoreOptions {
        cache_bytes: 64 << 20,
        commit_window: Duration::ZERO,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, &options, Arc::new(Metrics::default())).await?;
    let stop = CancellationToken::new();
    let committer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move { store.run(stop).await })
    };
    let now = now_ms();
    let names: Vec<String> = (0..rooms).map(|i| format!("fill-{i:06}")).collect();
    for name in &names {
        store.touch_room(name, now).await?;
    }
    for i in 0..messages {
        let room = &names[(i % rooms) as usize];
        let user = i % 50;
        let ts = now - (messages - i) as i64;
        let message = NewMessage {
            room: room.clone(),
            user: format!("fill-user-{user:02}"),
            nickname: format!("Filler {user}"),
            text: fill_text(i),
            ts,
        };
        store
            .append(message, Box::new(|_| Box::pin(async {})))
            .await?;
        if (i + 1) % 10_000 == 0 {
            store.durable().await?;
            if (i + 1) % 200_000 == 0 {
                eprintln!("  {} messages", i + 1);
            }
        }
    }
    store.durable().await?;
    stop.cancel();
    committer.await?;
    store.flush().await?;
    drop(store);
    Ok(FillReport {
        rooms,
        messages,
        seconds: started.elapsed().as_secs_f64(),
        disk_bytes: disk_usage(dir),
    })
}

/// A chat-like text of 40 to 140 bytes.
fn fill_text(i: u64) -> String {
    const WORDS: [&str; 8] = [
        "hello", "meeting", "at", "noon", "see", "you", "there", "thanks",
    ];
    let mut text = format!("message {i}:");
    for k in 0..(5 + i % 20) {
        text.push(' ');
        text.push_str(WORDS[((i + k) % 8) as usize]);
    }
    text
}

/// Bytes of the files under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn free_port() -> Res<u16> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// How to start the server under test (absolute paths: it may run elsewhere).
struct ServerCommand {
    noom: PathBuf,
    data_dir: PathBuf,
    config: Option<PathBuf>,
}

impl ServerCommand {
    fn new(args: &StartupArgs) -> Res<Self> {
        Ok(ServerCommand {
            noom: std::path::absolute(&args.noom)?,
            data_dir: std::path::absolute(&args.data_dir)?,
            config: args
                .config
                .as_deref()
                .map(std::path::absolute)
                .transpose()?,
        })
    }

    fn spawn(&self, addr: &str) -> Res<Child> {
        let mut command = Command::new(&self.noom);
        command
            .arg("--http")
            .arg(addr)
            .arg("--data-dir")
            .arg(&self.data_dir);
        match &self.config {
            Some(config) => command.arg("--config").arg(config),
            None => command.current_dir(&self.data_dir),
        };
        command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.noom.display()).into())
    }
}

/// One start: spawn, poll until ready, read RSS, SIGTERM, wait for exit.
async fn start_once(server: &ServerCommand, timeout: Duration) -> Res<StartRun> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let started = Instant::now();
    let mut child = server.spawn(&addr)?;
    let deadline = started + timeout;
    wait_ready(&mut child, &addr, "/healthz", deadline).await?;
    let healthz_at = started.elapsed();
    let rooms = wait_ready(&mut child, &addr, "/api/rooms", deadline).await?;
    let rooms_at = started.elapsed();
    let listed_rooms = serde_json::from_str::<Value>(&rooms)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    let rss_bytes = scrape(&addr).await.map_or(0, |s| s.rss_bytes);
    let stopping = Instant::now();
    let status = terminate(&mut child).await?;
    Ok(StartRun {
        healthz_ms: healthz_at.as_secs_f64() * 1e3,
        rooms_ms: rooms_at.as_secs_f64() * 1e3,
        listed_rooms,
        rss_bytes,
        stop_ms: stopping.elapsed().as_secs_f64() * 1e3,
        exit_ok: status.success(),
        exit_status: status.to_string(),
    })
}

/// Polls `path` every 5 ms until it answers 200; returns the body.
async fn wait_ready(child: &mut Child, addr: &str, path: &str, deadline: Instant) -> Res<String> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(format!("the server exited before {path} answered: {status}").into());
        }
        if let Ok((200, body)) = http_get(addr, path).await {
            return Ok(body);
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(format!("{path} did not answer 200 in time").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGTERM (through `kill`, to need no libc binding), then up to 15 s for the exit.
async fn terminate(child: &mut Child) -> Res<std::process::ExitStatus> {
    let pid = child.id().ok_or("the server has already exited")?;
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await?;
    if !sent.success() {
        return Err(format!("kill -TERM {pid} failed: {sent}").into());
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            child.kill().await?;
            Err("the server did not exit within 15 s of SIGTERM (killed)".into())
        }
    }
}

impl StartupReport {
    fn new(dir: &Path, fill: Option<FillReport>, runs: Vec<StartRun>) -> Self {
        let healthz: Vec<f64> = runs.iter().map(|r| r.healthz_ms).collect();
        let rooms: Vec<f64> = runs.iter().map(|r| r.rooms_ms).collect();
        StartupReport {
            kind: "startup",
            data_dir: dir.to_path_buf(),
            disk_bytes: disk_usage(dir),
            fill,
            healthz_median_ms: median(&healthz),
            healthz_max_ms: healthz.iter().copied().fold(0.0, f64::max),
            rooms_median_ms: median(&rooms),
            rooms_max_ms: rooms.iter().copied().fold(0.0, f64::max),
            all_exit_ok: runs.iter().all(|r| r.exit_ok),
            runs,
        }
    }

    fn print(&self) {
        println!(
            "noom-load startup  {} ({:.1} MiB on disk)",
            self.data_dir.display(),
            mib(self.disk_bytes)
        );
        if let Some(f) = &self.fill {
            println!(
                "fill           {} rooms, {} messages in {:.1} s ({:.0} msg/s)",
                f.rooms,
                f.messages,
                f.seconds,
                f.messages as f64 / f.seconds.max(1e-9)
            );
        }
        for (i, r) in self.runs.iter().enumerate() {
            println!(
                "start {:<9}/healthz {:>7.1} ms  /api/rooms {:>7.1} ms ({} listed)  RSS {:.1} MiB  \
                 SIGTERM -> exit in {:.0} ms: {}",
                i + 1,
                r.healthz_ms,
                r.rooms_ms,
                r.listed_rooms,
                mib(r.rss_bytes),
                r.stop_ms,
                r.exit_status
            );
        }
        println!(
            "/healthz       median {:.1} ms  max {:.1} ms",
            self.healthz_median_ms, self.healthz_max_ms
        );
        println!(
            "/api/rooms     median {:.1} ms  max {:.1} ms",
            self.rooms_median_ms, self.rooms_max_ms
        );
        if !self.all_exit_ok {
            println!("PROBLEM: the server did not exit 0 after SIGTERM");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

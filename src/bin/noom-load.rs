//! `noom-load`: a benchmark harness for a running Noom server. It reports
//! figures; it is not a test. Exit status: 0, or 1 when the run saw a problem
//! worth a look (a lost, duplicated or reordered message; a failed or dropped
//! idle connection; a server that did not exit 0), or 2 when the tool failed.
//!
//! Three subcommands:
//!
//! - `chat`: opens `rooms x members` real Socket.IO connections
//!   ([`noom::client::Client`], WebSocket), each enters its room
//!   (`load-<run id>-<i>`, so runs never mix), then every member posts
//!   `new_message` with an acknowledgement on its own schedule of absolute
//!   deadlines. The schedules are staggered so the aggregate offered rate is
//!   `--rate` messages/s, evenly spread; a member that falls behind catches up
//!   at once, so the offered rate stays honest, and the lateness is reported as
//!   "generator lag". Each text embeds a unique id and its send time (µs since
//!   the run's origin), so a receiver computes the delivery latency from the
//!   arrival stamp of the event ([`noom::client::Event::received`]). Measured:
//!   ack latency (send -> ack), delivery latency (send -> arrival at each other
//!   member), delivered messages/s, and correctness: every acked message must
//!   reach every other member of its room exactly once (missing, duplicate,
//!   out-of-order deliveries, duplicated seqs), plus failed acks by error code
//!   (`rate_limited` apart). Messages sent during `--warmup` are left out of
//!   every figure. `/metrics` is scraped when the measured window opens and
//!   closes: the server's CPU time delta divided by the deliveries gives the CPU
//!   cost of one delivered message; RSS and peak RSS come from the same scrape.
//!
//! - `idle`: opens `--connections` idle connections, `--concurrency` at a time,
//!   holds them for `--hold` seconds, and reports how many were established,
//!   the failures, the connect latency and the server's RSS (before, with the
//!   connections, per connection, peak, and after closing them).
//!
//! - `startup`: optionally fills an empty data directory through the library's
//!   store (`--fill-rooms`, `--fill-messages`), then starts the real `noom`
//!   binary `--runs` times and measures the wall time from spawn to the first
//!   `200` of `GET /healthz` and of `GET /api/rooms` (polled every 5 ms over
//!   raw HTTP/1.0). Each run ends with SIGTERM, and the server must exit 0.
//!   The server runs in the data directory (so it reads no stray
//!   `./noom.toml`) unless `--config` names a file.
//!
//! The load generator shares the machine with the server in most setups: its
//! own CPU time is reported next to the server's, so a saturated generator is
//! visible. Only `http://` URLs are supported.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use futures_util::stream::{self, FuturesUnordered, StreamExt};
use noom::client::{ACK_TIMEOUT, Client, ClientError, Event};
use noom::metrics::{Metrics, process_stats};
use noom::store::{NewMessage, Store, StoreOptions};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Timeout of one plain HTTP request (metrics, health, room list).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one Socket.IO connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of every text `chat` sends: `nl <id> <sent µs> <padding>`.
const TEXT_TAG: &str = "nl";

#[derive(Parser, Debug)]
#[command(
    name = "noom-load",
    version,
    about = "Benchmark harness for a Noom server"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Chat throughput, latency, losses and server CPU per delivered message.
    Chat(ChatArgs),
    /// Many idle connections: how many hold, and the server's memory.
    Idle(IdleArgs),
    /// Start-up time of the real binary on a (filled) data directory.
    Startup(StartupArgs),
    /// A flood of unauthenticated TURN Allocate requests from one source, and
    /// the memory of the relay's process meanwhile (any TURN server: give its pid).
    TurnFlood(TurnFloodArgs),
}

#[derive(Args, Debug)]
struct TurnFloodArgs {
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

#[derive(Args, Debug)]
struct ChatArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Number of rooms.
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    /// Connections per room (at least 2).
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Aggregate offered rate, in messages per second over all members.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Length of the measured window, in seconds (after the warm-up).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds of load before the measured window, left out of the figures.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Pad each message text to at least this many bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Connection attempts in flight at once during set-up.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Print one JSON line instead of the readable report.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct IdleArgs {
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

#[derive(Args, Debug)]
struct StartupArgs {
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Mode::Chat(args) => chat(args).await,
        Mode::Idle(args) => idle(args).await,
        Mode::Startup(args) => startup(args).await,
        Mode::TurnFlood(args) => turn_flood(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("noom-load: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------
// Shared helpers: HTTP, /metrics, summaries.

/// `host:port` of an `http://host[:port]` URL.
fn authority(url: &str) -> Res<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, not `{url}`"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("no host in `{url}`").into());
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// A plain `GET` over HTTP/1.0 (so the body ends with the connection): status and body.
async fn http_get(addr: &str, path: &str) -> Res<(u16, String)> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await?;
        let head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, request)
        .await
        .map_err(|_| format!("GET {path}: no answer within {HTTP_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: malformed response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in the response"))?;
    Ok((status, body.to_string()))
}

/// What `/metrics` says at one moment.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct ServerSample {
    cpu_seconds: f64,
    rss_bytes: u64,
    peak_rss_bytes: u64,
    open_fds: u64,
    ws_connections: u64,
    messages_stored: u64,
    messages_relayed: u64,
    rate_limited: u64,
}

async fn scrape(addr: &str) -> Res<ServerSample> {
    let (status, body) = http_get(addr, "/metrics").await?;
    if status != 200 {
        return Err(format!("GET /metrics answered {status}").into());
    }
    let get = |name: &str| metric(&body, name).unwrap_or(0.0);
    Ok(ServerSample {
        cpu_seconds: get("process_cpu_seconds_total"),
        rss_bytes: get("process_resident_memory_bytes") as u64,
        peak_rss_bytes: get("noom_process_peak_resident_memory_bytes") as u64,
        open_fds: get("process_open_fds") as u64,
        ws_connections: get("noom_connections{transport=\"websocket\"}") as u64,
        messages_stored: get("noom_messages_stored_total") as u64,
        messages_relayed: get("noom_messages_relayed_total") as u64,
        rate_limited: get("noom_rate_limited_total") as u64,
    })
}

/// A scrape that only warns when it fails (the run goes on without the figure).
async fn try_scrape(addr: &str, when: &str) -> Option<ServerSample> {
    match scrape(addr).await {
        Ok(sample) => Some(sample),
        Err(e) => {
            eprintln!("warning: cannot read /metrics {when}: {e}");
            None
        }
    }
}

/// The value of `name` (with its labels, if any) in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// Latency distribution, in milliseconds.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Summary {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

/// Summarises durations given in microseconds (nearest-rank percentiles).
fn summarize(mut us: Vec<u64>) -> Summary {
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

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU seconds this process has used so far.
fn own_cpu_seconds() -> f64 {
    process_stats().cpu_seconds
}

fn print_json<T: Serialize>(report: &T) -> Res<()> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}

/// Fails early, with a clear message, when nothing answers at `addr`.
async fn check_server(addr: &str) -> Res<()> {
    match http_get(addr, "/healthz").await {
        Ok((200, _)) => Ok(()),
        Ok((status, _)) => Err(format!("GET /healthz at {addr} answered {status}").into()),
        Err(e) => Err(format!("no Noom server at {addr}: {e}").into()),
    }
}

// ---------------------------------------------------------------------------
// chat

/// One connection's part of the run.
struct Plan {
    index: usize,
    room: String,
    /// Origin of the send stamps embedded in texts.
    t0: Instant,
    first: Instant,
    period: Duration,
    until: Instant,
    size: usize,
}

/// Counters the coordinator watches while the run drains.
#[derive(Default)]
struct Shared {
    acked: AtomicU64,
    delivered: AtomicU64,
    /// Members that sent their last message and got its ack (or gave up on it).
    done: AtomicUsize,
    stop: CancellationToken,
}

enum Outcome {
    Acked { latency_us: u64, seq: u64 },
    Refused(String),
    Timeout,
    Closed,
}

struct Sent {
    id: u64,
    /// Send time, µs since the run's origin.
    at_us: u64,
    /// How late the send was on its schedule.
    lag_us: u64,
    outcome: Outcome,
}

struct Received {
    id: u64,
    sent_us: u64,
    latency_us: u64,
    seq: u64,
}

#[derive(Default)]
struct MemberLog {
    sent: Vec<Sent>,
    /// In arrival order.
    received: Vec<Received>,
    /// `new_message` events not from this run's room-mates (or from itself).
    unexpected: u64,
    disconnected: bool,
}

async fn chat(args: ChatArgs) -> Res<bool> {
    validate_chat(&args)?;
    let addr = authority(&args.url)?;
    check_server(&addr).await?;
    let n = args.rooms * args.members;
    let run = run_id();
    if args.rate / n as f64 > 50.0 {
        eprintln!(
            "note: {:.1} msg/s per connection is above the default server limit (50/s)",
            args.rate / n as f64
        );
    }
    eprintln!(
        "run {run}: connecting {n} members ({} rooms)...",
        args.rooms
    );
    let set_up = Instant::now();
    let clients = connect_members(&args, &run).await?;
    eprintln!(
        "connected and entered in {:.2} s",
        set_up.elapsed().as_secs_f64()
    );
    // Let the set-up's welcome and room-list broadcasts pass (dropped at spawn).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let shared = Arc::new(Shared::default());
    let t0 = Instant::now() + Duration::from_millis(200);
    let warm_end = t0 + Duration::from_secs_f64(args.warmup);
    let until = warm_end + Duration::from_secs_f64(args.duration);
    let tasks = spawn_members(clients, &args, &run, &shared, t0, until);

    tokio::time::sleep_until(warm_end.into()).await;
    let (before, cpu_before) = (
        try_scrape(&addr, "at the window start").await,
        own_cpu_seconds(),
    );
    eprintln!("warm-up over; measuring for {} s...", args.duration);
    tokio::time::sleep_until(until.into()).await;
    let (after, cpu_after) = (
        try_scrape(&addr, "at the window end").await,
        own_cpu_seconds(),
    );
    let drained = drain(&shared, n, args.members).await;
    shared.stop.cancel();
    let mut logs = Vec::with_capacity(n);
    for task in tasks {
        logs.push(task.await?);
    }
    let last = try_scrape(&addr, "after the run").await;

    let warmup_us = micros(warm_end - t0);
    let report = ChatReport::new(&args, run, &logs, warmup_us)
        .with_server(before, after, last)
        .with_client(cpu_after - cpu_before, drained);
    let clean = report.correct();
    if args.json {
        print_json(&report)?;
    } else {
        report.print();
    }
    Ok(clean)
}

fn validate_chat(args: &ChatArgs) -> Res<()> {
    if args.rooms == 0 || args.members < 2 {
        return Err("need at least 1 room and 2 members per room".into());
    }
    if args.rate <= 0.0 || args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("--rate and --duration must be positive, --warmup not negative".into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    Ok(())
}

/// A short id that keeps this run's rooms apart from earlier ones.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:08x}",
        (nanos >> 10) as u32 ^ std::process::id().rotate_left(16)
    )
}

fn room_name(run: &str, room: usize) -> String {
    format!("load-{run}-{room}")
}

/// Connects every member and enters its room; member `i` is in room `i / members`.
async fn connect_members(args: &ChatArgs, run: &str) -> Res<Vec<Client>> {
    let results: Vec<Result<Client, BoxError>> = stream::iter(0..args.rooms * args.members)
        .map(|i| join_room(&args.url, room_name(run, i / args.members)))
        .buffered(args.concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let mut clients = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(client) => clients.push(client),
            Err(e) => {
                clients.iter().for_each(Client::close);
                return Err(format!("{failed} of the members could not join; first: {e}").into());
            }
        }
    }
    Ok(clients)
}

async fn join_room(url: &str, room: String) -> Res<Client> {
    let client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(url, None))
        .await
        .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
    let ack = client
        .request("enter_room", &[json!(room), json!({ "limit": 1 })])
        .await?;
    if ack.get("ok") != Some(&Value::Bool(true)) {
        client.close();
        return Err(format!("enter_room {room} refused: {ack}").into());
    }
    Ok(client)
}

fn spawn_members(
    clients: Vec<Client>,
    args: &ChatArgs,
    run: &str,
    shared: &Arc<Shared>,
    t0: Instant,
    until: Instant,
) -> Vec<tokio::task::JoinHandle<MemberLog>> {
    let n = clients.len();
    // Member i sends every n / rate seconds, starting i / rate after t0: evenly
    // spread over all members, `rate` messages per second in aggregate.
    let period = Duration::from_secs_f64(n as f64 / args.rate);
    clients
        .into_iter()
        .enumerate()
        .map(|(index, mut client)| {
            client.drain_events();
            let plan = Plan {
                index,
                room: room_name(run, index / args.members),
                t0,
                first: t0 + Duration::from_secs_f64(index as f64 / args.rate),
                period,
                until,
                size: args.size,
            };
            tokio::spawn(run_member(client, plan, shared.clone()))
        })
        .collect()
}

/// Sends on schedule, collects acks and deliveries, until told to stop.
async fn run_member(mut client: Client, plan: Plan, shared: Arc<Shared>) -> MemberLog {
    let mut log = MemberLog::default();
    let mut pending = FuturesUnordered::new();
    let mut next = plan.first;
    let mut counter: u32 = 0;
    let mut sending = next < plan.until;
    let mut done = false;
    let mut events_open = true;
    loop {
        if !sending && pending.is_empty() && !done {
            done = true;
            shared.done.fetch_add(1, Ordering::Relaxed);
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(next.into()), if sending => {
                match send_message(&client, &plan, counter, next) {
                    Ok(ack) => pending.push(ack),
                    Err(failed) => log.sent.push(failed),
                }
                counter += 1;
                next += plan.period;
                sending = next < plan.until;
            }
            Some(sent) = pending.next(), if !pending.is_empty() => {
                if matches!(sent.outcome, Outcome::Acked { .. }) {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                }
                log.sent.push(sent);
            }
            event = client.next_event(), if events_open => match event {
                Some(event) => record_event(&mut log, &plan, &shared, event),
                None => events_open = false,
            },
            _ = shared.stop.cancelled(), if done => break,
        }
    }
    client.close();
    log
}

/// Sends one message; on success, a future that resolves with its outcome.
fn send_message(
    client: &Client,
    plan: &Plan,
    counter: u32,
    scheduled: Instant,
) -> Result<impl Future<Output = Sent> + use<>, Sent> {
    let id = ((plan.index as u64) << 32) | u64::from(counter);
    let now = Instant::now();
    let at_us = micros(now.saturating_duration_since(plan.t0));
    let lag_us = micros(now.saturating_duration_since(scheduled));
    let mut text = format!("{TEXT_TAG} {id} {at_us} ");
    if text.len() < plan.size {
        text.push_str(&"x".repeat(plan.size - text.len()));
    }
    let record = Sent {
        id,
        at_us,
        lag_us,
        outcome: Outcome::Closed,
    };
    match client.send_with_ack("new_message", &[json!(plan.room), json!(text)]) {
        Ok(rx) => Ok(wait_ack(rx, now, record)),
        Err(_) => Err(record),
    }
}

async fn wait_ack(rx: oneshot::Receiver<Vec<Value>>, sent: Instant, mut record: Sent) -> Sent {
    record.outcome = match tokio::time::timeout(ACK_TIMEOUT, rx).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(_)) => Outcome::Closed,
        Ok(Ok(args)) => classify_ack(args.first(), sent.elapsed()),
    };
    record
}

fn classify_ack(ack: Option<&Value>, latency: Duration) -> Outcome {
    let Some(ack) = ack else {
        return Outcome::Refused("empty_ack".into());
    };
    if ack.get("ok") == Some(&Value::Bool(true)) {
        let seq = ack
            .pointer("/message/seq")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        return Outcome::Acked {
            latency_us: micros(latency),
            seq,
        };
    }
    let code = ack
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("malformed_ack");
    Outcome::Refused(code.to_string())
}

fn record_event(log: &mut MemberLog, plan: &Plan, shared: &Shared, event: Event) {
    match event.name.as_str() {
        "new_message" => match parse_delivery(plan, &event) {
            Some(received) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                log.received.push(received);
            }
            None => log.unexpected += 1,
        },
        "disconnect" => log.disconnected = true,
        _ => {}
    }
}

/// A delivery of a room-mate's message of this run, else `None`.
fn parse_delivery(plan: &Plan, event: &Event) -> Option<Received> {
    let message = event.args.first()?;
    if message.get("room").and_then(Value::as_str) != Some(plan.room.as_str()) {
        return None;
    }
    let seq = message.get("seq").and_then(Value::as_u64)?;
    let text = message.get("text").and_then(Value::as_str)?;
    let mut words = text.split(' ');
    if words.next() != Some(TEXT_TAG) {
        return None;
    }
    let id: u64 = words.next()?.parse().ok()?;
    let sent_us: u64 = words.next()?.parse().ok()?;
    if (id >> 32) as usize == plan.index {
        return None;
    }
    let arrived = micros(event.received.saturating_duration_since(plan.t0));
    Some(Received {
        id,
        sent_us,
        latency_us: arrived.saturating_sub(sent_us),
        seq,
    })
}

/// Waits for the last acks, then for the deliveries they imply (until they stop
/// coming for 2 s). Returns how long it took.
async fn drain(shared: &Shared, n: usize, members: usize) -> Duration {
    let start = Instant::now();
    let poll = Duration::from_millis(20);
    let acks_by = start + ACK_TIMEOUT + Duration::from_secs(2);
    while shared.done.load(Ordering::Relaxed) < n && Instant::now() < acks_by {
        tokio::time::sleep(poll).await;
    }
    let (mut seen, mut progress) = (0, Instant::now());
    while start.elapsed() < Duration::from_secs(30) {
        let expected = shared.acked.load(Ordering::Relaxed) * (members as u64 - 1);
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered >= expected {
            break;
        }
        if delivered != seen {
            (seen, progress) = (delivered, Instant::now());
        } else if progress.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    start.elapsed()
}

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
}

#[derive(Debug, Serialize)]
struct ChatReport {
    kind: &'static str,
    run_id: String,
    url: String,
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
    fn new(args: &ChatArgs, run_id: String, logs: &[MemberLog], warmup_us: u64) -> Self {
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

    fn with_server(
        mut self,
        before: Option<ServerSample>,
        after: Option<ServerSample>,
        last: Option<ServerSample>,
    ) -> Self {
        if let (Some(b), Some(a)) = (before, after) {
            let cpu = a.cpu_seconds - b.cpu_seconds;
            let last = last.unwrap_or(a);
            self.server = Some(ServerWindow {
                cpu_seconds: cpu,
                cpu_percent: 100.0 * cpu / self.duration_s,
                cpu_us_per_delivery: 1e6 * cpu / self.deliveries.delivered.max(1) as f64,
                relayed: a.messages_relayed.saturating_sub(b.messages_relayed),
                rate_limited: a.rate_limited.saturating_sub(b.rate_limited),
                rss_bytes: a.rss_bytes,
                peak_rss_bytes: last.peak_rss_bytes.max(a.peak_rss_bytes),
            });
        }
        self
    }

    fn with_client(mut self, cpu_seconds: f64, drained: Duration) -> Self {
        self.client_cpu_seconds = cpu_seconds;
        self.drain_s = drained.as_secs_f64();
        self
    }

    /// True when nothing was lost, duplicated or reordered.
    fn correct(&self) -> bool {
        let d = &self.deliveries;
        d.missing == 0 && d.duplicates == 0 && d.out_of_order == 0 && d.seq_duplicates == 0
    }

    fn print(&self) {
        let (s, d) = (&self.sends, &self.deliveries);
        println!(
            "noom-load chat  run {}  {}: {} rooms x {} members = {} connections",
            self.run_id, self.url, self.rooms, self.members, self.connections
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

// ---------------------------------------------------------------------------
// idle

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

async fn idle(args: IdleArgs) -> Res<bool> {
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

// ---------------------------------------------------------------------------
// startup

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

async fn startup(args: StartupArgs) -> Res<bool> {
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

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

// ---------------------------------------------------------------------------
// turn-flood: unauthenticated Allocate requests at full speed.

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

/// One unauthenticated Allocate request (REQUESTED-TRANSPORT UDP), with a
/// random transaction id, built by hand: 20-byte header + one attribute.
fn allocate_request(seed: &mut u64) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&0x0003u16.to_be_bytes());
    p[2..4].copy_from_slice(&8u16.to_be_bytes());
    p[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    for b in p[8..20].iter_mut() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
    p[20..22].copy_from_slice(&0x0019u16.to_be_bytes());
    p[22..24].copy_from_slice(&4u16.to_be_bytes());
    p[24] = 17;
    p
}

async fn turn_flood(args: TurnFloodArgs) -> Res<bool> {
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
            if sock.send(&allocate_request(&mut seed)).await.is_ok() {
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

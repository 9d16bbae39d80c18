//! `chat`: chat throughput, latency and correctness under a steady offered rate.
//!
//! Opens `rooms x members` real Socket.IO connections
//! ([`noom::client::Client`], WebSocket), each enters its room
//! (`load-<run id>-<i>`, so runs never mix), then every member posts
//! `new_message` with an acknowledgement on its own schedule of absolute
//! deadlines. The schedules are staggered so the aggregate offered rate is
//! `--rate` messages/s, evenly spread; a member that falls behind catches up
//! at once, so the offered rate stays honest, and the lateness is reported as
//! "generator lag". Each text embeds a unique id and its send time (µs since
//! the run's origin), so a receiver computes the delivery latency from the
//! arrival stamp of the event ([`noom::client::Event::received`]). Measured:
//! ack latency (send -> ack), delivery latency (send -> arrival at each other
//! member), delivered messages/s, and correctness: every acked message must
//! reach every other member of its room exactly once (missing, duplicate,
//! out-of-order deliveries, duplicated seqs), plus failed acks by error code
//! (`rate_limited` apart). Messages sent during `--warmup` are left out of
//! every figure. `/metrics` is scraped when the measured window opens and
//! closes: the server's CPU time delta divided by the deliveries gives the CPU
//! cost of one delivered message; RSS and peak RSS come from the same scrape.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use futures_util::stream::{self, FuturesUnordered, StreamExt};
use noom::client::{ACK_TIMEOUT, Client, ClientError, Event};
use noom::metrics::process_stats;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::http::{authority, check_server, try_scrape};
use crate::stats::micros;
use crate::{BoxError, CONNECT_TIMEOUT, Res, print_json};

mod report;

use report::ChatReport;

/// Prefix of every text `chat` sends: `nl <id> <sent µs> <padding>`.
const TEXT_TAG: &str = "nl";

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Base URL of the server; several, comma-separated, for the nodes of a
    /// cluster: member `i` connects to URL `i mod n`, so every room has
    /// members on every node, and the server figures add the nodes up.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:3000")]
    url: Vec<String>,
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

/// CPU seconds this process has used so far.
fn own_cpu_seconds() -> f64 {
    process_stats().cpu_seconds
}

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

pub async fn run(args: ChatArgs) -> Res<bool> {
    validate_chat(&args)?;
    let addrs = args
        .url
        .iter()
        .map(|u| authority(u))
        .collect::<Res<Vec<String>>>()?;
    for addr in &addrs {
        check_server(addr).await?;
    }
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
        scrape_all(&addrs, "at the window start").await,
        own_cpu_seconds(),
    );
    eprintln!("warm-up over; measuring for {} s...", args.duration);
    tokio::time::sleep_until(until.into()).await;
    let (after, cpu_after) = (
        scrape_all(&addrs, "at the window end").await,
        own_cpu_seconds(),
    );
    let drained = drain(&shared, n, args.members).await;
    shared.stop.cancel();
    let mut logs = Vec::with_capacity(n);
    for task in tasks {
        logs.push(task.await?);
    }
    let last = scrape_all(&addrs, "after the run").await;

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

/// Every node's figures (`None` if any is missing), one sample per node.
async fn scrape_all(addrs: &[String], when: &str) -> Option<Vec<crate::http::ServerSample>> {
    let mut samples = Vec::with_capacity(addrs.len());
    for addr in addrs {
        samples.push(try_scrape(addr, when).await?);
    }
    Some(samples)
}

fn validate_chat(args: &ChatArgs) -> Res<()> {
    if args.url.is_empty() {
        return Err("--url needs at least one server".into());
    }
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
        .map(|i| {
            join_room(
                &args.url[i % args.url.len()],
                room_name(run, i / args.members),
            )
        })
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

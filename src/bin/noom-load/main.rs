//! `noom-load`: a benchmark harness for a running Noom server. It reports
//! figures; it is not a test. Exit status: 0, or 1 when the run saw a problem
//! worth a look (a lost, duplicated or reordered message; a failed or dropped
//! idle connection; a server that did not exit 0), or 2 when the tool failed.
//!
//! Five subcommands, one module each (`docs/benchmarks.md` shows them at work):
//!
//! - `chat` ([`chat`]): chat throughput, ack and delivery latency, losses and
//!   the server's CPU time per delivered message;
//! - `idle` ([`idle`]): many idle connections: how many hold, and the server's
//!   memory with them;
//! - `startup` ([`startup`]): start-up time of the real `noom` binary on a
//!   (filled) data directory;
//! - `turn-flood` ([`turn_flood`]): a flood of unauthenticated TURN Allocate
//!   requests from one source, and the memory of the relay's process
//!   meanwhile (any TURN server; `scripts/bench-relay.sh` runs it against Noom
//!   and coturn);
//! - `sfu` ([`sfu`]): synthetic WebRTC participants publishing simulcast video
//!   and audio through the media server, against Noom or Janus: forwarded
//!   packets/s, loss, jitter and server CPU per forwarded packet
//!   (`scripts/bench-sfu.sh` runs both side by side).
//!
//! Shared: [`http`] talks plain HTTP to the server under test (`/healthz`,
//! `/metrics`); [`stats`] summarises latencies (percentiles) and converts units.
//!
//! The load generator shares the machine with the server in most setups: its
//! own CPU time is reported next to the server's, so a saturated generator is
//! visible. Only `http://` URLs are supported.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

mod chat;
mod http;
mod idle;
mod sfu;
mod startup;
mod stats;
mod turn_flood;

use chat::ChatArgs;
use idle::IdleArgs;
use sfu::SfuArgs;
use startup::StartupArgs;
use turn_flood::TurnFloodArgs;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Timeout of one Socket.IO connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Synthetic publishers and subscribers through a media server (Noom or
    /// Janus): forwarded packets/s, loss, jitter, server CPU per packet.
    Sfu(SfuArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Mode::Chat(args) => chat::run(args).await,
        Mode::Idle(args) => idle::run(args).await,
        Mode::Startup(args) => startup::run(args).await,
        Mode::TurnFlood(args) => turn_flood::run(args).await,
        Mode::Sfu(args) => sfu::run(args).await,
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

/// Prints a report as one JSON line (`--json`).
fn print_json<T: Serialize>(report: &T) -> Res<()> {
    println!("{}", serde_json::to_string(report)?);
    Ok(())
}

//! The `noom` binary: parse flags, load the configuration, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use noom::config::{Config, Overrides};
use tracing_subscriber::EnvFilter;

/// Self-hosted video calls and chat in one binary.
#[derive(Parser, Debug)]
#[command(name = "noom", version, about)]
struct Cli {
    /// Config file (default: ./noom.toml when present).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// HTTP listen address, e.g. 0.0.0.0:3000 (overrides server.http).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        config: cli.config,
        http: cli.http,
        data_dir: cli.data_dir,
    };
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = match Config::load(&overrides, env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("noom: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("noom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match noom::App::start(config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("noom: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "noom {} listening on http://{}",
            noom::VERSION,
            running.http_addr()
        );
        let token = running.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            token.cancel();
        });
        match running.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received");
}

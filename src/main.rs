//! The `noom` binary: parse flags, load the configuration, run until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the Argon2id hash of an admin password, for `admin.password_hash`.
    /// Reads the password from the terminal (not echoed) or from standard input.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
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
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
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

/// `noom hash-password`: the hash for `admin.password_hash`.
fn hash_password() -> ExitCode {
    use std::io::{BufRead as _, IsTerminal as _};
    let read = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Admin password: ").and_then(|first| {
            let again = rpassword::prompt_password("Again: ")?;
            if first == again {
                Ok(first)
            } else {
                Err(std::io::Error::other("the two passwords differ"))
            }
        })
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|_| line.trim_end_matches(['\r', '\n']).to_string())
    };
    let password = match read {
        Ok(p) if p.chars().count() >= 8 => p,
        Ok(_) => {
            eprintln!("noom: the password must have at least 8 characters");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("noom: cannot read the password: {e}");
            return ExitCode::from(2);
        }
    };
    match noom::admin::password::hash(&password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("noom: {e}");
            ExitCode::FAILURE
        }
    }
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

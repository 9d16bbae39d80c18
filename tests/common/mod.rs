//! Starting the app for a test. [`TestServer`] runs a real [`noom::App`]
//! in-process on a temporary data directory of its own, with HTTP and the
//! relay on ephemeral loopback ports (the tests of a binary run in parallel),
//! after the test's tweaks to the configuration; it knows its base URL and
//! shuts down cleanly. [`connect`], [`get_json`] and [`seqs`] (in
//! `client.rs`) are the ways in that most tests take: a Socket.IO session, a
//! JSON GET, the seqs of the messages it returns.
//!
//! Every test binary includes this module as
//! `#[path = "../common/mod.rs"] mod common;`. What only one area needs (the
//! relay's credentials, the TLS tests' certificates) stays in that area's
//! `support.rs`.

// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::Path;

use noom::config::Config;
use noom::{App, Running};
use tempfile::TempDir;

mod client;

pub use client::{Connected, WAIT, connect, get_json, get_text, seqs};

/// With `TEST_NOOM_POSTGRES_URL` set (not `NOOM_...`: a spawned binary
/// would read that as its own setting; `.ci/run` sets it for a second run of
/// the core suite), test servers keep their store in PostgreSQL: each
/// directory gets a schema of its own (named after it, so a server started
/// again on the same directory finds its data).
pub const POSTGRES_URL_VAR: &str = "TEST_NOOM_POSTGRES_URL";

/// The store settings of a server on `dir`, as `NOOM_STORE_*` environment
/// variables (for a spawned binary): PostgreSQL's when the tests run against
/// it, none for sled.
pub fn store_env(dir: &Path) -> Vec<(&'static str, String)> {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        return Vec::new();
    };
    let schema = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut h);
        format!("t_{:016x}", h.finish())
    };
    vec![
        ("NOOM_STORE_BACKEND", "postgres".into()),
        ("NOOM_STORE_POSTGRES_URL", url),
        ("NOOM_STORE_POSTGRES_SCHEMA", schema),
        ("NOOM_STORE_POSTGRES_POOL", "4".into()),
    ]
}

/// Whether the tests run against PostgreSQL (see [`POSTGRES_URL_VAR`]).
pub fn on_postgres() -> bool {
    std::env::var_os(POSTGRES_URL_VAR).is_some()
}

/// The configuration of a test server whose files go under `dir`: data in
/// `dir/data`, HTTP and the relay on ephemeral loopback ports.
pub fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.http = "127.0.0.1:0".into();
    config.server.data_dir = dir.join("data");
    for (name, value) in store_env(dir) {
        match name {
            "NOOM_STORE_BACKEND" => config.store.backend = value,
            "NOOM_STORE_POSTGRES_URL" => config.store.postgres_url = value,
            "NOOM_STORE_POSTGRES_SCHEMA" => config.store.postgres_schema = value,
            _ => config.store.postgres_pool = value.parse().unwrap_or(4),
        }
    }
    // Tests run in parallel: every server gets its own relay port.
    config.turn.listen = "127.0.0.1:0".into();
    config.sfu.listen = "127.0.0.1:0".into();
    config
}

/// Starts the app on `dir` (a fresh directory, or the one a stopped server
/// left behind) with `tweak` applied to [`config`].
pub async fn start_in(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = config(dir);
    tweak(&mut config);
    App::start(config).await.expect("server starts")
}

/// A started app on its own temporary directory, removed when dropped.
pub struct TestServer {
    pub running: Running,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub dir: TempDir,
}

/// A [`TestServer`] to be: its directory exists, its configuration is the
/// test default until tweaked.
pub struct Builder {
    dir: TempDir,
    config: Config,
}

impl Builder {
    /// The server's temporary directory (its data goes in `data/` under it),
    /// for tweaks that put files beside the data, such as certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the configuration; tweaks apply in order.
    pub fn tweak(mut self, tweak: impl FnOnce(&mut Config)) -> Builder {
        tweak(&mut self.config);
        self
    }

    pub async fn start(self) -> TestServer {
        let running = App::start(self.config).await.expect("server starts");
        let base = format!("http://{}", running.http_addr());
        TestServer {
            running,
            base,
            dir: self.dir,
        }
    }
}

impl TestServer {
    pub fn builder() -> Builder {
        let dir = TempDir::new().expect("temp dir");
        let config = config(dir.path());
        Builder { dir, config }
    }

    /// A server with the test defaults.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    /// A server with the test defaults changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::builder().tweak(tweak).start().await
    }

    /// Shuts the app down cleanly and hands back its directory (to start
    /// again on the same data, say).
    pub async fn stop(self) -> TempDir {
        self.running.shutdown().await.expect("clean shutdown");
        self.dir
    }

    /// The HTTP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.running.http_addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Connects a new session and consumes its `session` and first `room_change` events.
    pub async fn client(&self) -> Connected {
        connect(&self.base, None).await
    }
}

//! Configuration: every setting Noom has, its default, and how the layers combine.
//!
//! Layers, lowest first: built-in defaults, the config file (`--config PATH`, else
//! `./noom.toml` when present), `NOOM_<SECTION>_<KEY>` environment variables, and the
//! command-line flags (`layers.rs`). Every layer is checked against the defaults'
//! shape, so an unknown key or a value of the wrong type is reported with its name
//! and origin instead of being silently ignored. Then `validate.rs` checks ranges
//! and parses every address and list once, into [`Resolved`], which is what the
//! server starts from: nothing parses a setting again later.

mod layers;
mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use validate::{Resolved, ResolvedSfu, ResolvedTurn, valid_node_id};

/// Everything that can be configured. `noom.toml` at the repository root lists
/// every key with its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub rooms: RoomsConfig,
    pub store: StoreConfig,
    pub turn: TurnConfig,
    pub sfu: SfuConfig,
    pub call: CallConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP server (web app, API, Socket.IO).
    pub http: String,
    /// Directory holding the database; created when missing.
    pub data_dir: PathBuf,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` / `X-Forwarded-Proto`
    /// are believed; empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The URL people open, e.g. `https://noom.example.org`; empty: derived
    /// from the listen address. Used for redirects and what is printed.
    pub public_url: String,
    /// HTTP(S) connections open at once from one client address (trusted
    /// proxies are exempt).
    pub connections_per_ip: u64,
    /// A request head must arrive within this many seconds; also how long an
    /// idle kept-alive connection stays open.
    pub header_timeout_secs: u64,
    /// A request body must arrive within this many seconds from its first read.
    pub body_timeout_secs: u64,
}

/// HTTPS built in: a certificate from files (reloaded when they change) or a
/// self-signed one generated into the data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Generate a self-signed certificate once (kept in the data directory).
    pub self_signed: bool,
    /// PEM certificate chain (leaf first) and its private key.
    pub cert: String,
    pub key: String,
    /// Names the self-signed certificate covers besides localhost and the
    /// machine's addresses; `noom check` also checks a given certificate against them.
    pub hosts: Vec<String>,
    /// Plain-HTTP address that redirects to HTTPS, e.g. `0.0.0.0:80`; empty: off.
    pub http_redirect: String,
    /// How often the certificate files are checked for changes, in seconds.
    pub reload_secs: u64,
    /// Send Strict-Transport-Security (only ever with a real certificate).
    pub hsts: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub room_name_max: u64,
    pub nickname_max: u64,
    pub message_max: u64,
    pub call_max: u64,
    pub room_members_max: u64,
    pub rooms_per_connection: u64,
    pub events_per_sec: u64,
    pub events_burst: u64,
    pub max_payload_bytes: u64,
    /// A connection whose outgoing data waits this many seconds on a client
    /// that takes less than 2 KiB/s of it is closed.
    pub slow_consumer_secs: u64,
    /// Most unsent data one connection may hold, in KiB; more closes it.
    pub outgoing_max_kib: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    pub active_window_secs: u64,
    pub list_max: u64,
    /// Least time between two `room_change` broadcasts, in ms.
    pub broadcast_interval_ms: u64,
    /// How long someone a host removed from a room may not enter it again, in seconds.
    pub removal_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub cache_mb: u64,
    pub commit_window_ms: u64,
    pub retention_max_messages: u64,
    pub retention_max_age_days: u64,
    pub retention_interval_secs: u64,
    /// Writes are refused while the data directory's disk has less free space (MiB; 0: never).
    pub min_free_mb: u64,
    /// Stored sessions unused this long are deleted, in seconds.
    pub session_ttl_secs: u64,
    /// `sled` (an embedded database in the data directory, nothing else
    /// needed) or `postgres` (a PostgreSQL server, which several nodes may
    /// share).
    pub backend: String,
    /// `postgres://user:password@host:port/database` (backend `postgres`).
    pub postgres_url: String,
    /// Connections to PostgreSQL this node keeps at most.
    pub postgres_pool: u64,
    /// The PostgreSQL schema noom's tables live in (created when missing).
    pub postgres_schema: String,
}

/// How a call's media travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallConfig {
    /// `mesh`: every participant sends to every other (media never touches
    /// the server); `sfu`: every participant sends once, to the media
    /// server, which forwards; `auto`: a mesh while the call has at most
    /// `mesh_max` participants, then the media server for everyone until the
    /// call empties. Without a running media server every call is a mesh.
    pub mode: String,
    /// The largest call `auto` keeps in a mesh.
    pub mesh_max: u64,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            mode: "auto".into(),
            mesh_max: 4,
        }
    }
}

/// The selective forwarding unit: media of calls goes through the server
/// (`docs/sfu.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuConfig {
    pub enabled: bool,
    /// UDP address of the media server; one port carries every participant.
    pub listen: String,
    /// Address given to browsers; empty: the relay's advertised address (or,
    /// without the relay, detected from the default route).
    pub public_ip: String,
    /// Media sessions at once, over every call.
    pub max_participants: u64,
    /// Media sessions at once from one client address.
    pub sessions_per_ip: u64,
    /// Media sessions started per minute from one client address (each
    /// costs a DTLS certificate and handshake).
    pub joins_per_ip_per_min: u64,
    /// Audio streams a call forwards once more participants publish: the
    /// loudest, plus anyone who spoke in the last seconds.
    pub audio_streams: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:3479".into(),
            public_ip: String::new(),
            max_participants: 500,
            sessions_per_ip: 50,
            joins_per_ip_per_min: 60,
            audio_streams: 3,
        }
    }
}

/// The built-in STUN/TURN relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    pub enabled: bool,
    /// UDP (and TCP) address of STUN/TURN.
    pub listen: String,
    /// Address handed to browsers in `iceServers` and used as the relayed
    /// address; empty: detected from the host's default route.
    pub public_ip: String,
    pub realm: String,
    pub relay_port_min: u64,
    pub relay_port_max: u64,
    pub allocation_lifetime_secs: u64,
    pub credential_ttl_secs: u64,
    /// Shared secret of the TURN REST credentials; empty: generated once and
    /// kept in the data directory.
    pub secret: String,
    pub tcp: bool,
    /// Host name used in `iceServers` URLs instead of the IP (needed for TURNS:
    /// browsers check the certificate against it); empty: the public IP.
    pub public_host: String,
    /// TURN over TLS (TURNS) address; empty: off. Needs `tls_cert` and `tls_key`.
    pub tls_listen: String,
    /// PEM certificate chain and private key for TURNS.
    pub tls_cert: String,
    pub tls_key: String,
    /// CIDRs the relay may reach even though they are in a refused range.
    pub allow_peers: Vec<String>,
    /// CIDRs the relay must never reach.
    pub deny_peers: Vec<String>,
    pub max_allocations: u64,
    pub max_allocations_per_user: u64,
    /// Allocations open at once from one client IP address.
    pub max_allocations_per_ip: u64,
    /// New allocations per second from one client IP address (bursts of 5 s worth).
    pub allocations_per_ip_per_sec: u64,
    /// TURN credentials minted for `join_call` per minute for one client IP address.
    pub credentials_per_ip_per_min: u64,
    /// A TURN-over-TCP/TLS connection without an allocation is closed after this
    /// many seconds (from its start, or from the end of its allocation).
    pub tcp_idle_secs: u64,
    /// Per allocation, both directions together; 0: unlimited.
    pub bandwidth_kbps: u64,
    /// Unauthenticated requests per second from one source address.
    pub unauthenticated_per_sec: u64,
}

/// The admin page and its JSON API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// Argon2id hash of the admin password (`noom hash-password`); empty: a
    /// random password is generated once, stored hashed in the data directory
    /// and printed in the log.
    pub password_hash: String,
    /// Bearer token for `/admin/api/` scripts; empty: only the login cookie works.
    pub api_token: String,
    /// How long a login lasts, in seconds.
    pub session_ttl_secs: u64,
    /// Failed logins allowed from one address before it must wait.
    pub login_failures_max: u64,
    /// How long an address that used up its failed logins waits, in seconds.
    pub login_lockout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
}

/// Several nodes sharing one database (docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name in logs, `/metrics`, `/healthz` and the admin page:
    /// 1-64 letters, digits, `.`, `_`, `-`. Empty: `<host name>-<6 hex digits>`,
    /// new at every start ([`App::start`](crate::App::start) fills it in).
    pub node_id: String,
    /// Redis (7 or later) shared by the nodes, e.g. `redis://127.0.0.1:6379/`:
    /// turns on the Socket.IO adapter over Redis and the shared live
    /// membership. Empty: this node runs alone.
    pub redis_url: String,
    /// The cluster's name in Redis (its channels and keys start with it), so
    /// that one Redis can serve several clusters: 1-32 lowercase letters,
    /// digits, `_` or `-`. Nodes with the same Redis and name form one cluster.
    pub name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            redis_url: String::new(),
            name: "noom".into(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: "0.0.0.0:3000".into(),
            data_dir: PathBuf::from("data"),
            trusted_proxies: Vec::new(),
            public_url: String::new(),
            connections_per_ip: 256,
            header_timeout_secs: 30,
            body_timeout_secs: 60,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            self_signed: false,
            cert: String::new(),
            key: String::new(),
            hosts: Vec::new(),
            http_redirect: String::new(),
            reload_secs: 5,
            hsts: true,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            room_name_max: 64,
            nickname_max: 32,
            message_max: 2000,
            call_max: 50,
            room_members_max: 200,
            rooms_per_connection: 16,
            events_per_sec: 50,
            events_burst: 100,
            max_payload_bytes: 256 * 1024,
            slow_consumer_secs: 10,
            outgoing_max_kib: 4096,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            active_window_secs: 24 * 3600,
            list_max: 1000,
            broadcast_interval_ms: 1000,
            removal_secs: 3600,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_mb: 64,
            commit_window_ms: 2,
            retention_max_messages: 100_000,
            retention_max_age_days: 0,
            retention_interval_secs: 60,
            min_free_mb: 64,
            session_ttl_secs: 90 * 86_400,
            backend: "sled".into(),
            postgres_url: String::new(),
            postgres_pool: 16,
            postgres_schema: "noom".into(),
        }
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:3478".into(),
            public_ip: String::new(),
            realm: "noom".into(),
            relay_port_min: 49152,
            relay_port_max: 65535,
            allocation_lifetime_secs: 600,
            credential_ttl_secs: 600,
            secret: String::new(),
            tcp: true,
            public_host: String::new(),
            tls_listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            allow_peers: Vec::new(),
            deny_peers: Vec::new(),
            max_allocations: 1000,
            max_allocations_per_user: 10,
            max_allocations_per_ip: 100,
            allocations_per_ip_per_sec: 10,
            credentials_per_ip_per_min: 60,
            tcp_idle_secs: 60,
            bandwidth_kbps: 8000,
            unauthenticated_per_sec: 20,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            password_hash: String::new(),
            api_token: String::new(),
            session_ttl_secs: 12 * 3600,
            login_failures_max: 5,
            login_lockout_secs: 300,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Why a configuration was refused. Each variant names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` ({origin})")]
    UnknownKey { key: String, origin: String },
    #[error("bad value for `{key}` ({origin}): {reason}")]
    BadValue {
        key: String,
        origin: String,
        reason: String,
    },
}

/// The inputs that select and override a configuration, besides the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config PATH`: when absent, `./noom.toml` is read if it exists.
    pub config: Option<PathBuf>,
    /// `--http ADDR`
    pub http: Option<String>,
    /// `--data-dir DIR`
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration from all layers and validates it. `env` is the
    /// process environment (a parameter so tests need not mutate the real one).
    pub fn load<I>(overrides: &Overrides, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let config = layers::merge(overrides, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Whether the main listener serves HTTPS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.enabled()
    }
}

/// The TURNS port used when `[tls]` is on and `turn.tls_listen` is empty.
pub const DEFAULT_TURNS_PORT: u16 = 5349;

/// `server.public_url`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicUrl {
    pub https: bool,
    /// The host name (or IP) alone.
    pub host: String,
    /// The URL without a trailing slash, to which paths are appended.
    pub base: String,
}

impl TlsConfig {
    /// TLS is on with a self-signed certificate or a given one.
    pub fn enabled(&self) -> bool {
        self.self_signed || !self.cert.is_empty()
    }
}

impl AdminConfig {
    /// Shortest accepted `api_token`: it is the only secret in front of the API.
    pub const TOKEN_MIN: usize = 24;
}

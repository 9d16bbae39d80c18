//! Configuration: every setting Noom has, its default, and how the layers combine.
//!
//! Layers, lowest first: built-in defaults, the config file (`--config PATH`, else
//! `./noom.toml` when present), `NOOM_<SECTION>_<KEY>` environment variables, and the
//! command-line flags. Every layer is checked against the defaults' shape, so an
//! unknown key or a value of the wrong type is reported with its name and origin
//! instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

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
    pub tls: TlsConfig,
    pub admin: AdminConfig,
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
            call_max: 6,
            room_members_max: 200,
            rooms_per_connection: 16,
            events_per_sec: 50,
            events_burst: 100,
            max_payload_bytes: 64 * 1024,
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

/// A value of the right type but out of range, in the merged configuration.
fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.into(),
        origin: "configuration".into(),
        reason: reason.into(),
    }
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

const ENV_PREFIX: &str = "NOOM_";
const DEFAULT_FILE: &str = "noom.toml";

impl Config {
    /// Loads the configuration from all layers. `env` is the process environment
    /// (a parameter so tests need not mutate the real one).
    pub fn load<I>(overrides: &Overrides, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let defaults = defaults_table();
        let mut merged = defaults.clone();

        let file = match &overrides.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            let layer = read_file(&path)?;
            let origin = format!("in {}", path.display());
            merge_checked(&mut merged, &defaults, layer, "", &origin)?;
        }

        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, raw) in env {
            let (key, default) = env_key(&defaults, &name)?;
            let origin = format!("from {name}");
            let value = parse_scalar(&key, &origin, default, &raw)?;
            set_path(&mut merged, &key, value);
        }

        if let Some(http) = &overrides.http {
            set_path(&mut merged, "server.http", Value::String(http.clone()));
        }
        if let Some(dir) = &overrides.data_dir {
            let dir = dir.to_string_lossy().into_owned();
            set_path(&mut merged, "server.data_dir", Value::String(dir));
        }

        let config: Config = Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::BadValue {
                key: "?".into(),
                origin: "merged configuration".into(),
                reason: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The HTTP listen address, parsed.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .http
            .parse()
            .map_err(|e: std::net::AddrParseError| {
                bad(
                    "server.http",
                    format!(
                        "`{}` is not an address like 0.0.0.0:3000 ({e})",
                        self.server.http
                    ),
                )
            })
    }

    /// Checks the values that have the right type but are out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http_addr()?;
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(bad("server.data_dir", "must not be empty"));
        }
        let l = &self.limits;
        let s = &self.server;
        let ranges: [(&str, u64, u64, u64); 14] = [
            ("limits.outgoing_max_kib", l.outgoing_max_kib, 64, 1 << 20),
            (
                "server.connections_per_ip",
                s.connections_per_ip,
                1,
                1_000_000,
            ),
            ("server.header_timeout_secs", s.header_timeout_secs, 1, 3600),
            ("server.body_timeout_secs", s.body_timeout_secs, 1, 3600),
            ("limits.slow_consumer_secs", l.slow_consumer_secs, 1, 3600),
            ("limits.room_name_max", l.room_name_max, 1, 1024),
            ("limits.nickname_max", l.nickname_max, 1, 256),
            ("limits.message_max", l.message_max, 1, 100_000),
            ("limits.call_max", l.call_max, 2, 50),
            ("limits.room_members_max", l.room_members_max, 1, 1_000_000),
            (
                "limits.rooms_per_connection",
                l.rooms_per_connection,
                1,
                10_000,
            ),
            ("limits.events_per_sec", l.events_per_sec, 1, 1_000_000),
            ("limits.events_burst", l.events_burst, 1, 1_000_000),
            (
                "limits.max_payload_bytes",
                l.max_payload_bytes,
                1024,
                64 << 20,
            ),
        ];
        for (key, value, min, max) in ranges {
            if value < min || value > max {
                return Err(bad(key, format!("must be between {min} and {max}")));
            }
        }
        if self.rooms.list_max == 0 {
            return Err(bad("rooms.list_max", "must be at least 1"));
        }
        if self.rooms.broadcast_interval_ms > 60_000 {
            return Err(bad(
                "rooms.broadcast_interval_ms",
                "must be between 0 and 60000",
            ));
        }
        if self.store.cache_mb == 0 || self.store.cache_mb > 1 << 20 {
            return Err(bad("store.cache_mb", "must be between 1 and 1048576"));
        }
        if self.store.commit_window_ms > 1000 {
            return Err(bad("store.commit_window_ms", "must be between 0 and 1000"));
        }
        if self.store.retention_interval_secs == 0 {
            return Err(bad("store.retention_interval_secs", "must be at least 1"));
        }
        if self.store.min_free_mb > 1 << 20 {
            return Err(bad("store.min_free_mb", "must be between 0 and 1048576"));
        }
        if self.store.session_ttl_secs == 0 || self.store.session_ttl_secs > 100 * 365 * 86_400 {
            return Err(bad(
                "store.session_ttl_secs",
                "must be between 1 and 3153600000 (100 years)",
            ));
        }
        self.turn.validate()?;
        self.tls.validate()?;
        self.admin.validate()?;
        if self.turn.tls_listen_addr()?.is_some()
            && self.turn.tls_cert.is_empty()
            && !self.tls_enabled()
        {
            return Err(bad(
                "turn.tls_listen",
                "needs a certificate: turn on [tls] (shared) or set turn.tls_cert and turn.tls_key",
            ));
        }
        self.trusted_proxies()?;
        self.public_url()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                "must be a level (error, warn, info, debug, trace) or a RUST_LOG-style filter",
            ));
        }
        Ok(())
    }
}

/// Parses a list of CIDRs or bare addresses named `key`.
fn parse_cidrs(key: &str, list: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.iter()
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    bad(
                        key,
                        format!("`{c}` is not an address or a CIDR like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

impl Config {
    /// `server.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_cidrs("server.trusted_proxies", &self.server.trusted_proxies)
    }

    /// `server.public_url`, parsed (`None` when empty).
    pub fn public_url(&self) -> Result<Option<PublicUrl>, ConfigError> {
        let raw = self.server.public_url.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let bad = |reason: &str| bad("server.public_url", format!("`{raw}` {reason}"));
        let uri: axum::http::Uri = raw
            .parse()
            .map_err(|_| bad("is not a URL like https://noom.example.org"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must start with https:// or http://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host name"))?;
        Ok(Some(PublicUrl {
            https,
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            base: raw.trim_end_matches('/').to_string(),
        }))
    }

    /// Whether the main listener serves HTTPS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.enabled()
    }

    /// The address of the plain-HTTP redirect listener, when TLS is on and one is configured.
    pub fn http_redirect_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if !self.tls_enabled() || self.tls.http_redirect.is_empty() {
            return Ok(None);
        }
        self.tls.http_redirect.parse().map(Some).map_err(|_| {
            bad(
                "tls.http_redirect",
                format!(
                    "`{}` is not an address like 0.0.0.0:80",
                    self.tls.http_redirect
                ),
            )
        })
    }

    /// The TURNS address: `turn.tls_listen` when set ("off" turns it off),
    /// else port 5349 on the relay's IP when TLS is on (port 0 when the relay's
    /// port is 0, as in tests).
    pub fn turns_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.turn.tls_listen.as_str() {
            "off" => Ok(None),
            "" if self.tls_enabled() || !self.turn.tls_cert.is_empty() => {
                let listen = self.turn.listen_addr()?;
                let port = if listen.port() == 0 {
                    0
                } else {
                    DEFAULT_TURNS_PORT
                };
                Ok(Some(SocketAddr::new(listen.ip(), port)))
            }
            _ => self.turn.tls_listen_addr(),
        }
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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert.is_empty() != self.key.is_empty() {
            let key = if self.cert.is_empty() {
                "tls.cert"
            } else {
                "tls.key"
            };
            return Err(bad(
                key,
                "tls.cert and tls.key go together: set both or neither",
            ));
        }
        if self.self_signed && !self.cert.is_empty() {
            return Err(bad(
                "tls.self_signed",
                "choose one: self_signed = true or a certificate (tls.cert and tls.key)",
            ));
        }
        if !(1..=3600).contains(&self.reload_secs) {
            return Err(bad("tls.reload_secs", "must be between 1 and 3600"));
        }
        if !self.http_redirect.is_empty() && self.http_redirect.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "tls.http_redirect",
                "must be empty (off) or an address like 0.0.0.0:80",
            ));
        }
        for host in &self.hosts {
            if host.is_empty()
                || host.contains(['/', ' ', ':']) && host.parse::<std::net::IpAddr>().is_err()
            {
                return Err(bad(
                    "tls.hosts",
                    format!("`{host}` is not a host name or an IP address"),
                ));
            }
        }
        Ok(())
    }
}

impl AdminConfig {
    /// Shortest accepted `api_token`: it is the only secret in front of the API.
    pub const TOKEN_MIN: usize = 24;

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.password_hash.is_empty() && !self.password_hash.starts_with("$argon2id$") {
            return Err(bad(
                "admin.password_hash",
                "must be an Argon2id hash (`$argon2id$...`); make one with `noom hash-password`",
            ));
        }
        if !self.api_token.is_empty()
            && (self.api_token.len() < Self::TOKEN_MIN
                || !self.api_token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(bad(
                "admin.api_token",
                "must be at least 24 printable characters without spaces (e.g. `openssl rand -hex 24`)",
            ));
        }
        if self.session_ttl_secs < 60 || self.session_ttl_secs > 30 * 86_400 {
            return Err(bad(
                "admin.session_ttl_secs",
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        if self.login_failures_max == 0 || self.login_failures_max > 1000 {
            return Err(bad(
                "admin.login_failures_max",
                "must be between 1 and 1000",
            ));
        }
        if self.login_lockout_secs == 0 || self.login_lockout_secs > 86_400 {
            return Err(bad(
                "admin.login_lockout_secs",
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }
}

impl TurnConfig {
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            bad(
                "turn.listen",
                format!("`{}` is not an address like 0.0.0.0:3478", self.listen),
            )
        })
    }

    pub fn public_ip(&self) -> Result<Option<std::net::IpAddr>, ConfigError> {
        if self.public_ip.is_empty() {
            return Ok(None);
        }
        self.public_ip.parse().map(Some).map_err(|_| {
            bad(
                "turn.public_ip",
                format!("`{}` is not an IP address", self.public_ip),
            )
        })
    }

    /// The TURNS address, when TLS is configured.
    pub fn tls_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.tls_listen.is_empty() || self.tls_listen == "off" {
            return Ok(None);
        }
        self.tls_listen.parse().map(Some).map_err(|_| {
            bad(
                "turn.tls_listen",
                format!("`{}` is not an address like 0.0.0.0:5349", self.tls_listen),
            )
        })
    }

    /// Parses `allow_peers` or `deny_peers`.
    pub fn cidrs(&self, allow: bool) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        if allow {
            parse_cidrs("turn.allow_peers", &self.allow_peers)
        } else {
            parse_cidrs("turn.deny_peers", &self.deny_peers)
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.public_ip()?;
        self.tls_listen_addr()?;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(bad(
                "turn.tls_cert",
                "turn.tls_cert and turn.tls_key go together: set both or neither",
            ));
        }
        self.cidrs(true)?;
        self.cidrs(false)?;
        if self.realm.is_empty() || self.realm.len() > 128 {
            return Err(bad("turn.realm", "must be 1 to 128 characters"));
        }
        if self.relay_port_min < 1024
            || self.relay_port_max > 65535
            || self.relay_port_min > self.relay_port_max
        {
            return Err(bad(
                "turn.relay_port_min",
                "relay ports must satisfy 1024 <= relay_port_min <= relay_port_max <= 65535",
            ));
        }
        if !(60..=3600).contains(&self.allocation_lifetime_secs) {
            return Err(bad(
                "turn.allocation_lifetime_secs",
                "must be between 60 and 3600",
            ));
        }
        if !(60..=86_400).contains(&self.credential_ttl_secs) {
            return Err(bad(
                "turn.credential_ttl_secs",
                "must be between 60 and 86400",
            ));
        }
        if !self.secret.is_empty() && self.secret.len() < 16 {
            return Err(bad(
                "turn.secret",
                "must be empty (generated) or at least 16 characters",
            ));
        }
        if self.max_allocations == 0 || self.max_allocations_per_user == 0 {
            return Err(bad(
                "turn.max_allocations",
                "allocation quotas must be at least 1",
            ));
        }
        if self.unauthenticated_per_sec == 0 {
            return Err(bad("turn.unauthenticated_per_sec", "must be at least 1"));
        }
        if self.max_allocations_per_ip == 0 {
            return Err(bad("turn.max_allocations_per_ip", "must be at least 1"));
        }
        if self.allocations_per_ip_per_sec == 0 {
            return Err(bad("turn.allocations_per_ip_per_sec", "must be at least 1"));
        }
        if self.credentials_per_ip_per_min == 0 {
            return Err(bad("turn.credentials_per_ip_per_min", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.tcp_idle_secs) {
            return Err(bad("turn.tcp_idle_secs", "must be between 1 and 3600"));
        }
        Ok(())
    }
}

fn defaults_table() -> Table {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t,
        // The defaults are plain structs of scalars: serialising them cannot fail.
        _ => Table::new(),
    }
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Merges `layer` into `merged`, refusing keys the defaults do not have and
/// values whose type differs from the default's.
fn merge_checked(
    merged: &mut Table,
    defaults: &Table,
    layer: Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (name, value) in layer {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(default) = defaults.get(&name) else {
            return Err(ConfigError::UnknownKey {
                key,
                origin: origin.into(),
            });
        };
        match (default, value) {
            (Value::Table(d), Value::Table(v)) => {
                let slot = merged
                    .entry(name.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(m) = slot {
                    merge_checked(m, d, v, &key, origin)?;
                }
            }
            (d, v) => {
                check_type(&key, origin, d, &v)?;
                merged.insert(name, v);
            }
        }
    }
    Ok(())
}

fn check_type(key: &str, origin: &str, default: &Value, value: &Value) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        key: key.into(),
        origin: origin.into(),
        reason,
    };
    if std::mem::discriminant(default) != std::mem::discriminant(value) {
        return Err(bad(format!(
            "expected {}, found {}",
            type_name(default),
            type_name(value)
        )));
    }
    if let Value::Integer(i) = value
        && *i < 0
    {
        return Err(bad(format!("must not be negative (got {i})")));
    }
    Ok(())
}

/// Maps `NOOM_SECTION_KEY` to `section.key` and its default value.
fn env_key<'a>(defaults: &'a Table, name: &str) -> Result<(String, &'a Value), ConfigError> {
    let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
    for (section, table) in defaults {
        let Value::Table(table) = table else { continue };
        if let Some(key) = rest.strip_prefix(&format!("{section}_"))
            && let Some(default) = table.get(key)
        {
            return Ok((format!("{section}.{key}"), default));
        }
    }
    Err(ConfigError::UnknownKey {
        key: name.into(),
        origin: "environment variable; expected NOOM_<SECTION>_<KEY>, e.g. NOOM_SERVER_HTTP".into(),
    })
}

fn parse_scalar(key: &str, origin: &str, default: &Value, raw: &str) -> Result<Value, ConfigError> {
    let bad = |reason: String| ConfigError::BadValue {
        key: key.into(),
        origin: origin.into(),
        reason,
    };
    let value = match default {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("expected an integer, found `{raw}`")))?,
        ),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => return Err(bad(format!("expected true or false, found `{raw}`"))),
        },
        Value::Float(_) => Value::Float(
            raw.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("expected a number, found `{raw}`")))?,
        ),
        // Lists come as comma-separated strings: NOOM_TURN_ALLOW_PEERS=10.0.0.0/8,192.168.1.5
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        other => {
            return Err(bad(format!(
                "cannot be set from the environment ({})",
                type_name(other)
            )));
        }
    };
    check_type(key, origin, default, &value)?;
    Ok(value)
}

fn set_path(table: &mut Table, key: &str, value: Value) {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return;
        }
        let slot = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match slot {
            Value::Table(t) => current = t,
            _ => return,
        }
    }
}

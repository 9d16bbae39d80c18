//! Range checks of a merged configuration, and the parsing of every address
//! and list in it, done once: [`Config::validate`] returns them as
//! [`Resolved`], the typed values the server starts from.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::{
    AdminConfig, Config, ConfigError, DEFAULT_TURNS_PORT, PublicUrl, TlsConfig, TurnConfig,
};

/// The addresses and lists of a valid configuration, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `server.http`.
    pub http: SocketAddr,
    /// The plain-HTTP redirect listener: `tls.http_redirect`, when TLS is on
    /// and it is set.
    pub http_redirect: Option<SocketAddr>,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    /// `server.public_url` (`None` when empty).
    pub public_url: Option<PublicUrl>,
    pub turn: ResolvedTurn,
    /// The media server's addresses, when it is enabled.
    pub sfu: Option<ResolvedSfu>,
}

/// The media server's addresses, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSfu {
    /// `sfu.listen`.
    pub listen: SocketAddr,
    /// `sfu.public_ip` (`None` when empty).
    pub public_ip: Option<IpAddr>,
}

/// The relay's addresses and peer lists, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTurn {
    /// `turn.listen`.
    pub listen: SocketAddr,
    /// `turn.public_ip` (`None` when empty: detected at start).
    pub public_ip: Option<IpAddr>,
    /// The TURNS address: `turn.tls_listen` when set ("off" turns it off),
    /// else port 5349 on the relay's IP when TLS is on (port 0 when the
    /// relay's port is 0, as in tests).
    pub turns: Option<SocketAddr>,
    /// `turn.allow_peers` and `turn.deny_peers`.
    pub allow_peers: Vec<IpNet>,
    pub deny_peers: Vec<IpNet>,
}

/// A value of the right type but out of range, in the merged configuration.
fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.into(),
        origin: "configuration".into(),
        reason: reason.into(),
    }
}

impl Config {
    /// The HTTP listen address, parsed.
    fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
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

    /// Checks the values that have the right type but are out of range,
    /// and returns every address and list parsed.
    pub fn validate(&self) -> Result<Resolved, ConfigError> {
        let http = self.http_addr()?;
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
        if self.rooms.removal_secs > 366 * 24 * 3600 {
            return Err(bad(
                "rooms.removal_secs",
                "must be at most a year (31622400)",
            ));
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
        match self.store.backend.as_str() {
            "sled" => {}
            "postgres" => {
                if self.store.postgres_url.is_empty() {
                    return Err(bad(
                        "store.postgres_url",
                        "must be set with store.backend = \"postgres\", e.g. postgres://noom:secret@127.0.0.1/noom",
                    ));
                }
                if self
                    .store
                    .postgres_url
                    .parse::<tokio_postgres::Config>()
                    .is_err()
                {
                    return Err(bad(
                        "store.postgres_url",
                        "is not a PostgreSQL connection URL (postgres://user:password@host:port/database)",
                    ));
                }
            }
            _ => return Err(bad("store.backend", "must be `sled` or `postgres`")),
        }
        if self.store.postgres_pool == 0 || self.store.postgres_pool > 1000 {
            return Err(bad("store.postgres_pool", "must be between 1 and 1000"));
        }
        let schema = &self.store.postgres_schema;
        if schema.is_empty()
            || schema.len() > 63
            || !schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(
                "store.postgres_schema",
                "must be 1 to 63 lowercase letters, digits and `_`, not starting with a digit",
            ));
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
        let mut turn = self.turn.validate()?;
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
        let trusted_proxies = self.trusted_proxies()?;
        let public_url = self.public_url()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                "must be a level (error, warn, info, debug, trace) or a RUST_LOG-style filter",
            ));
        }
        turn.turns = self.turns_addr()?;
        let sfu = self.sfu_addrs()?;
        if !["auto", "mesh", "sfu"].contains(&self.call.mode.as_str()) {
            return Err(bad("call.mode", "must be `auto`, `mesh` or `sfu`"));
        }
        if !(1..=49).contains(&self.call.mesh_max) {
            return Err(bad("call.mesh_max", "must be between 1 and 49"));
        }
        Ok(Resolved {
            http,
            http_redirect: self.http_redirect_addr()?,
            trusted_proxies,
            public_url,
            turn,
            sfu,
        })
    }
}

/// Parses a list of CIDRs or bare addresses named `key`.
fn parse_cidrs(key: &str, list: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    list.iter()
        .map(|c| {
            c.parse::<IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
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
    fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        parse_cidrs("server.trusted_proxies", &self.server.trusted_proxies)
    }

    /// `server.public_url`, parsed (`None` when empty).
    fn public_url(&self) -> Result<Option<PublicUrl>, ConfigError> {
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

    /// The address of the plain-HTTP redirect listener, when TLS is on and one is configured.
    fn http_redirect_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
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
    fn turns_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
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

impl TlsConfig {
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
            if host.is_empty() || host.contains(['/', ' ', ':']) && host.parse::<IpAddr>().is_err()
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
    fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            bad(
                "turn.listen",
                format!("`{}` is not an address like 0.0.0.0:3478", self.listen),
            )
        })
    }

    fn public_ip(&self) -> Result<Option<IpAddr>, ConfigError> {
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
    fn tls_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
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
    fn cidrs(&self, allow: bool) -> Result<Vec<IpNet>, ConfigError> {
        if allow {
            parse_cidrs("turn.allow_peers", &self.allow_peers)
        } else {
            parse_cidrs("turn.deny_peers", &self.deny_peers)
        }
    }

    /// Returns the relay's addresses; `turns` is filled in by
    /// [`Config::validate`], which knows whether `[tls]` is on.
    fn validate(&self) -> Result<ResolvedTurn, ConfigError> {
        let listen = self.listen_addr()?;
        let public_ip = self.public_ip()?;
        self.tls_listen_addr()?;
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(bad(
                "turn.tls_cert",
                "turn.tls_cert and turn.tls_key go together: set both or neither",
            ));
        }
        let allow_peers = self.cidrs(true)?;
        let deny_peers = self.cidrs(false)?;
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
        Ok(ResolvedTurn {
            listen,
            public_ip,
            turns: None,
            allow_peers,
            deny_peers,
        })
    }
}

impl Config {
    /// `[sfu]`, parsed and checked (`None` when it is off).
    fn sfu_addrs(&self) -> Result<Option<ResolvedSfu>, ConfigError> {
        let sfu = &self.sfu;
        if !sfu.enabled {
            return Ok(None);
        }
        let listen = sfu.listen.parse().map_err(|_| {
            bad(
                "sfu.listen",
                format!("`{}` is not an address like 0.0.0.0:3479", sfu.listen),
            )
        })?;
        let public_ip = if sfu.public_ip.is_empty() {
            None
        } else {
            Some(sfu.public_ip.parse().map_err(|_| {
                bad(
                    "sfu.public_ip",
                    format!("`{}` is not an IP address", sfu.public_ip),
                )
            })?)
        };
        if sfu.max_participants == 0 || sfu.max_participants > 100_000 {
            return Err(bad("sfu.max_participants", "must be between 1 and 100000"));
        }
        if sfu.audio_streams == 0 || sfu.audio_streams > 50 {
            return Err(bad("sfu.audio_streams", "must be between 1 and 50"));
        }
        if sfu.sessions_per_ip == 0 || sfu.joins_per_ip_per_min == 0 {
            return Err(bad(
                "sfu.sessions_per_ip",
                "sfu.sessions_per_ip and sfu.joins_per_ip_per_min must be at least 1",
            ));
        }
        Ok(Some(ResolvedSfu { listen, public_ip }))
    }
}

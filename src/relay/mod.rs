//! The built-in STUN/TURN relay, so calls connect across NATs and firewalls.
//!
//! One UDP port serves STUN and TURN (default 3478) and, on the same port, TURN
//! over TCP. Credentials are coturn-compatible TURN REST credentials minted per
//! session for `join_call`; peers in private ranges are refused unless allowed.
//! See `docs/relay.md`.

mod allocation;
mod auth;
mod policy;
mod selftest;
mod server;
mod transport;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use allocation::{AllocationInfo, ClientKey, Transport};
pub use auth::{Credentials, Minted, unix_now};
pub use selftest::SelfTest;
pub use server::RelayStats;

use crate::config::{ConfigError, ResolvedTurn, TurnConfig};
use server::{Server, Settings};
use transport::{bind_listeners, serve_tcp, serve_tls, serve_udp, tls_acceptor};

/// File in the data directory holding the generated shared secret.
const SECRET_FILE: &str = "turn_secret";

/// True for an address the internet cannot reach, by the rule the relay
/// applies to peers (`noom check` warns when the relay advertises one).
pub fn is_internal(ip: IpAddr) -> bool {
    policy::refused_by_default(ip)
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({transport}): {source}")]
    Bind {
        addr: SocketAddr,
        transport: &'static str,
        source: std::io::Error,
    },
    #[error("cannot load the TURNS certificate or key: {0}")]
    Tls(String),
    #[error("cannot read or write the relay secret {path}: {source}")]
    Secret {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A running relay.
pub struct Relay {
    server: Arc<Server>,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    /// Host put in `iceServers` URLs.
    host: String,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The relay's own runtime (one worker thread); see `start`.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    last_self_test: Mutex<Option<SelfTest>>,
}

impl Relay {
    /// Binds the listeners and starts serving.
    ///
    /// The relay runs on a Tokio runtime of its own with one worker thread:
    /// every packet is handled on the thread that received it, with no
    /// wake-ups across threads (measured: about 15% less CPU per relayed
    /// packet than on the shared runtime, on par with coturn), and chat load
    /// cannot delay relayed media.
    ///
    /// `at`: the parsed addresses (TURNS: see [`ResolvedTurn::turns`]); the
    /// TURNS certificate is `turn.tls_cert` when set, else `shared` (the web
    /// server's, so a reload reaches both).
    pub async fn start(
        cfg: &TurnConfig,
        at: &ResolvedTurn,
        data_dir: &Path,
        shared: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Result<Arc<Relay>, RelayError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("noom-relay")
            .enable_all()
            .build()
            .map_err(|source| RelayError::Bind {
                addr: at.listen,
                transport: "runtime",
                source,
            })?;
        let started = {
            // Sockets register with the runtime they are created in.
            let _inside = runtime.enter();
            Self::start_in(cfg, at, data_dir, shared)
        };
        match started {
            Ok(relay) => {
                *relay.runtime.lock() = Some(runtime);
                Ok(relay)
            }
            Err(e) => {
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    fn start_in(
        cfg: &TurnConfig,
        at: &ResolvedTurn,
        data_dir: &Path,
        shared: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Result<Arc<Relay>, RelayError> {
        let listen = at.listen;
        let secret = match cfg.secret.as_str() {
            "" => load_or_create_secret(data_dir)?,
            s => s.as_bytes().to_vec(),
        };
        let (udp, tcp) = bind_listeners(listen, cfg.tcp)?;
        let udp_addr = udp.local_addr().map_err(|source| RelayError::Bind {
            addr: listen,
            transport: "udp",
            source,
        })?;
        let public_ip = match at.public_ip {
            Some(ip) => ip,
            None => crate::net::advertised_ip(listen.ip()).unwrap_or_else(|| {
                tracing::warn!(
                    "no default route: the relay advertises 127.0.0.1; set turn.public_ip"
                );
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }),
        };
        let settings = Settings {
            public_ip,
            relay_bind_ip: listen.ip(),
            port_min: cfg.relay_port_min as u16,
            port_max: cfg.relay_port_max as u16,
            max_lifetime: Duration::from_secs(cfg.allocation_lifetime_secs),
            max_allocations: cfg.max_allocations as usize,
            max_allocations_per_user: cfg.max_allocations_per_user as usize,
            max_allocations_per_ip: cfg.max_allocations_per_ip as usize,
            tcp_idle: Duration::from_secs(cfg.tcp_idle_secs),
            allocations_per_ip_per_sec: cfg.allocations_per_ip_per_sec as f64,
            bandwidth_bytes_per_sec: cfg.bandwidth_kbps * 1000 / 8,
            unauthenticated_per_sec: cfg.unauthenticated_per_sec as f64,
        };
        let creds = Credentials::new(
            &secret,
            &cfg.realm,
            Duration::from_secs(cfg.credential_ttl_secs),
        );
        let mut own = vec![public_ip];
        if !listen.ip().is_unspecified() {
            own.push(listen.ip());
        }
        let ports = cfg.relay_port_min as u16..=cfg.relay_port_max as u16;
        let policy =
            policy::PeerPolicy::new(at.allow_peers.clone(), at.deny_peers.clone(), own, ports);
        let server = Arc::new(Server::new(settings, creds, policy));
        let stop = CancellationToken::new();
        let udp = Arc::new(udp);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(serve_udp(
            server.clone(),
            udp.clone(),
            stop.clone(),
        )));
        let tcp_addr = match tcp {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                tasks.push(tokio::spawn(serve_tcp(
                    server.clone(),
                    listener,
                    stop.clone(),
                )));
                addr
            }
            None => None,
        };
        let tls_addr = match at.turns {
            Some(addr) => {
                let acceptor = match shared {
                    _ if !cfg.tls_cert.is_empty() => tls_acceptor(&cfg.tls_cert, &cfg.tls_key)?,
                    Some(config) => tokio_rustls::TlsAcceptor::from(config),
                    None => {
                        return Err(RelayError::Tls(
                            "TURNS needs a certificate: turn on [tls] or set turn.tls_cert and turn.tls_key".into(),
                        ));
                    }
                };
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std);
                match listener {
                    Ok(listener) => {
                        let bound = listener.local_addr().ok();
                        tasks.push(tokio::spawn(serve_tls(
                            server.clone(),
                            listener,
                            acceptor,
                            stop.clone(),
                        )));
                        bound
                    }
                    // TURNS is the last resort of a few networks: without its
                    // port the relay still serves UDP and TCP, not advertising it.
                    Err(e) => {
                        tracing::error!(%addr, error = %e, "TURNS is NOT listening (port taken?); the relay runs without it");
                        None
                    }
                }
            }
            None => None,
        };
        tasks.push(tokio::spawn(sweep(server.clone(), stop.clone())));
        tracing::info!(%udp_addr, tcp = ?tcp_addr, tls = ?tls_addr, %public_ip, "STUN/TURN relay listening");
        let host = if !cfg.public_host.is_empty() {
            cfg.public_host.clone()
        } else {
            match public_ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                ip => ip.to_string(),
            }
        };
        Ok(Arc::new(Relay {
            server,
            udp_addr,
            tcp_addr,
            tls_addr,
            host,
            stop,
            tasks: Mutex::new(tasks),
            runtime: Mutex::new(None),
            last_self_test: Mutex::new(None),
        }))
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address browsers are told to use.
    pub fn public_ip(&self) -> IpAddr {
        self.server.settings.public_ip
    }

    /// How long minted credentials stay valid.
    pub fn credential_ttl(&self) -> Duration {
        self.server.creds.ttl
    }

    /// Fresh credentials for `user`.
    pub fn mint(&self, user: &str) -> Minted {
        self.server.creds.mint(user)
    }

    /// The `iceServers` entry list for a call participant, with fresh credentials.
    pub fn ice_servers(&self, user: &str) -> Vec<Value> {
        self.ice_servers_with(&self.mint(user))
    }

    /// The `iceServers` entry list carrying credentials minted earlier.
    pub fn ice_servers_with(&self, minted: &Minted) -> Vec<Value> {
        let host = &self.host;
        let port = self.udp_addr.port();
        let mut turn = vec![format!("turn:{host}:{port}?transport=udp")];
        if let Some(tcp) = self.tcp_addr {
            turn.push(format!("turn:{host}:{}?transport=tcp", tcp.port()));
        }
        if let Some(tls) = self.tls_addr {
            turn.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
        }
        vec![
            json!({ "urls": [format!("stun:{host}:{port}")] }),
            json!({ "urls": turn, "username": minted.username, "credential": minted.password }),
        ]
    }

    pub fn allocations(&self) -> Vec<AllocationInfo> {
        self.server.table.infos()
    }

    pub fn allocation_count(&self) -> usize {
        self.server.table.len()
    }

    /// Ends the allocations of `user` and refuses the credentials it was given.
    pub fn revoke_user(&self, user: &str) {
        self.server.creds.revoke(user);
        self.server.table.remove_user(user);
    }

    pub fn stats(&self) -> &RelayStats {
        &self.server.stats
    }

    /// Allocates from inside the process and relays a packet to a local echo.
    pub async fn self_test(&self) -> SelfTest {
        let result = selftest::run(self).await;
        *self.last_self_test.lock() = Some(result.clone());
        result
    }

    /// The last self-test, run again when older than `max_age`.
    pub async fn self_test_cached(&self, max_age: Duration) -> SelfTest {
        let cached = self.last_self_test.lock().clone();
        match cached {
            Some(t) if t.at.elapsed() < max_age => t,
            _ => self.self_test().await,
        }
    }

    pub fn last_self_test(&self) -> Option<SelfTest> {
        self.last_self_test.lock().clone()
    }

    /// Lets relayed clients reach this server's own addresses on `port`, and
    /// no other port beside the relay range (the media server's port).
    pub fn open_own_port(&self, port: u16) {
        self.server.policy.open_own_port(port);
    }

    pub(crate) fn policy(&self) -> &policy::PeerPolicy {
        &self.server.policy
    }

    /// Stops listening and drops every allocation.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        self.server.table.clear();
        let runtime = self.runtime.lock().take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }

    /// Prometheus lines for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.server.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let healthy = self.last_self_test().is_some_and(|t| t.ok);
        let lines: [(&str, &str, &str, u64); 11] = [
            (
                "noom_relay_up",
                "gauge",
                "1 when the last relay self-test passed.",
                healthy as u64,
            ),
            (
                "noom_relay_allocations",
                "gauge",
                "TURN allocations open now.",
                self.allocation_count() as u64,
            ),
            (
                "noom_relay_allocations_total",
                "counter",
                "TURN allocations created.",
                get(&s.allocations_total),
            ),
            (
                "noom_relay_packets_total",
                "counter",
                "Packets relayed, both directions.",
                get(&s.packets_relayed),
            ),
            (
                "noom_relay_bytes_total",
                "counter",
                "Payload bytes relayed, both directions.",
                get(&s.bytes_relayed),
            ),
            (
                "noom_relay_auth_failures_total",
                "counter",
                "Requests refused for bad, expired or stale credentials.",
                get(&s.auth_failures),
            ),
            (
                "noom_relay_forbidden_peers_total",
                "counter",
                "Permissions or channels refused by the peer policy.",
                get(&s.forbidden_peers),
            ),
            (
                "noom_relay_quota_refusals_total",
                "counter",
                "Allocations refused by a quota.",
                get(&s.quota_refusals),
            ),
            (
                "noom_relay_unauthenticated_dropped_total",
                "counter",
                "Unauthenticated requests dropped by the per-source limit.",
                get(&s.unauthenticated_dropped),
            ),
            (
                "noom_relay_idle_closed_total",
                "counter",
                "TURN TCP/TLS connections closed for having no allocation.",
                get(&s.idle_closed),
            ),
            (
                "noom_relay_binding_requests_total",
                "counter",
                "STUN Binding requests answered.",
                get(&s.binding_requests),
            ),
        ];
        for (name, kind, help, value) in lines {
            crate::metrics::write_metric(out, name, kind, help, &[(String::new(), value as f64)]);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Without an explicit shutdown (e.g. a test that drops its server), the
        // relay still stops and releases its ports.
        self.stop.cancel();
        self.server.table.clear();
        if let Some(runtime) = self.runtime.get_mut().take() {
            runtime.shutdown_background();
        }
    }
}

fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, RelayError> {
    let path = data_dir.join(SECRET_FILE);
    let err = |source| RelayError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 16 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) | Err(_) if path.exists() => {
            return Err(err(std::io::Error::other(
                "the file exists but holds no usable secret",
            )));
        }
        _ => {}
    }
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(err)?;
    std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    tracing::info!(path = %path.display(), "generated the TURN shared secret");
    Ok(secret.into_bytes())
}

async fn sweep(server: Arc<Server>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let gone = server.table.sweep();
        if gone > 0 {
            tracing::debug!(gone, "expired TURN allocations removed");
        }
        server.sweep_limiter();
        server.policy.refresh();
    }
}

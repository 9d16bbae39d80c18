//! Starting and stopping the whole server in-process.
//!
//! [`App::start`] binds the listeners, opens the store and spawns every task;
//! the returned [`Running`] knows the bound addresses and stops everything in
//! order: stop accepting, close the Socket.IO connections, make the store
//! durable. `main.rs` and the tests use the same entry point.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::config::{Config, ConfigError};
use crate::http::Proxies;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::sfu::{Sfu, SfuSettings};
use crate::signaling::{self, Hub};
use crate::store::{Retention, Store, StoreError, StoreOptions};
use crate::tls::{CertStore, TlsError};
use crate::web::conn::{ConnLimits, Gate};
use crate::web::https::{RedirectTarget, TlsIncoming, redirect_router};
use crate::web::serve::{Tcp, Timeouts, serve};
use crate::web::{self, Web};

/// Pending connections the kernel may queue (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;
/// How long open HTTP connections get to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("the store could not be made durable at shutdown: {0}; the last changes may be lost")]
    Flush(StoreError),
    #[error("admin password: {0}")]
    AdminPassword(#[from] admin::PasswordError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::BusError),
    #[error(transparent)]
    Adapter(#[from] signaling::AdapterError),
    #[error("a server task panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The entry point.
pub struct App;

/// A started server.
pub struct Running {
    http_addr: SocketAddr,
    redirect_addr: Option<SocketAddr>,
    cert: Option<Arc<CertStore>>,
    url: String,
    relay: Option<Arc<Relay>>,
    sfu: Option<Arc<Sfu>>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AppError>>,
}

impl App {
    /// Starts the server described by `config` (port 0 picks a free port).
    pub async fn start(mut config: Config) -> Result<Running, AppError> {
        let resolved = Arc::new(config.validate()?);
        if config.cluster.node_id.is_empty() {
            config.cluster.node_id = crate::node::generate();
        }
        let addr = resolved.http;
        let config = Arc::new(config);
        // In a cluster, Redis comes first: a node that cannot reach it would
        // serve its visitors apart from everyone else's.
        let bus = if config.cluster.redis_url.is_empty() {
            crate::cluster::Bus::Alone
        } else {
            let bus = crate::cluster::bus::connect(&config.cluster.redis_url).await?;
            tracing::info!(redis = %bus.address, version = %bus.version, "connected to the cluster's Redis");
            crate::cluster::Bus::Redis(bus)
        };
        let metrics = Arc::new(Metrics::default());
        let metrics_store = metrics.clone();

        let store = {
            let dir = config.server.data_dir.clone();
            let options = StoreOptions {
                cache_bytes: config.store.cache_mb << 20,
                commit_window: Duration::from_millis(config.store.commit_window_ms),
                min_free_bytes: config.store.min_free_mb << 20,
                session_ttl: Duration::from_secs(config.store.session_ttl_secs),
            };
            if config.store.backend == "postgres" {
                let settings = crate::store::PgSettings {
                    url: config.store.postgres_url.clone(),
                    pool: config.store.postgres_pool as usize,
                    schema: config.store.postgres_schema.clone(),
                };
                Store::open_postgres(&settings, &options, metrics_store).await?
            } else {
                open_store(&dir, &options, metrics_store).await?
            }
        };
        let admin_password = if config.admin.enabled {
            let configured = config.admin.password_hash.clone();
            let dir = config.server.data_dir.clone();
            let hash = tokio::task::spawn_blocking(move || admin::load_password(&configured, &dir))
                .await??;
            Some(hash)
        } else {
            None
        };
        let cert = {
            let (config, resolved) = (config.clone(), resolved.clone());
            tokio::task::spawn_blocking(move || CertStore::from_config(&config, &resolved))
                .await??
        };
        let listener = listen(addr).map_err(|source| AppError::Bind { addr, source })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| AppError::Bind { addr, source })?;
        let redirect_listener = match resolved.http_redirect {
            Some(addr) => Some(listen(addr).map_err(|source| AppError::Bind { addr, source })?),
            None => None,
        };
        let redirect_addr = match &redirect_listener {
            Some(l) => Some(l.local_addr().map_err(|source| AppError::Bind {
                addr: http_addr,
                source,
            })?),
            None => None,
        };

        // A relay that cannot start (port taken, bad secret file) leaves chat and
        // LAN calls working: it is reported in the log and in /healthz instead.
        let (relay, relay_error) = if config.turn.enabled {
            let shared = cert.as_ref().map(|c| c.server_config(&[]));
            match Relay::start(
                &config.turn,
                &resolved.turn,
                &config.server.data_dir,
                shared,
            )
            .await
            {
                Ok(relay) => {
                    let probe = relay.clone();
                    tokio::spawn(async move {
                        probe.self_test().await;
                    });
                    (Some(relay), None)
                }
                Err(e) => {
                    tracing::error!("the STUN/TURN relay is NOT running: {e}");
                    (None, Some(e.to_string()))
                }
            }
        } else {
            (None, None)
        };
        // Likewise the media server: without it, calls stay in the mesh.
        let (sfu, sfu_events, sfu_error) = match &resolved.sfu {
            Some(at) => start_sfu(&config, at, relay.as_deref()),
            None => (None, None, None),
        };
        let proxies = Proxies::new(resolved.trusted_proxies.clone(), cert.is_some());
        let known_rooms = store.rooms().await?;
        let roster = Arc::new(crate::cluster::Roster::new(
            &bus,
            &config.cluster.name,
            &config.cluster.node_id,
        ));
        let mut hub = Hub::new(
            config.clone(),
            store.clone(),
            &known_rooms,
            metrics.clone(),
            relay.clone(),
            roster.clone(),
        );
        hub.relay_error = relay_error;
        hub.sfu = sfu.clone();
        let media_link = Arc::new(crate::cluster::MediaLink::new(
            &bus,
            &config.cluster.name,
            &config.cluster.node_id,
        ));
        hub.media_link = media_link.clone();
        hub.sfu_error = sfu_error;
        let hub = Arc::new(hub);
        let hub_relay = relay.clone();
        let (sio_layer, io) = signaling::layer(&hub, bus.clone()).await?;
        let admin = match admin_password {
            Some(hash) => {
                let admin = Arc::new(Admin::new(hub.clone(), io.clone(), hash, cert.clone()));
                admin::live::register(&io, &admin).await?;
                Some(admin)
            }
            None => None,
        };
        let mut router = web::router(Web {
            hub: hub.clone(),
            io: io.clone(),
            cert: cert.clone(),
        });
        if let Some(admin) = &admin {
            router = router.merge(admin::router(admin.clone()));
        }
        // Socket.IO around the routes, and the client address (behind
        // trusted proxies) computed before either sees the request.
        let mut router = web::with_headers(router).layer(sio_layer).layer(
            axum::middleware::map_request_with_state(proxies, crate::http::attach_client),
        );
        if cert.as_ref().is_some_and(|c| !c.is_self_signed()) && config.tls.hsts {
            // Only with a certificate browsers trust: HSTS on a self-signed one
            // would lock visitors out of the "proceed anyway" page.
            router = router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static("max-age=31536000"),
            ));
        }

        let shutdown = CancellationToken::new();
        let stop_store = CancellationToken::new();
        let committer = {
            let store = store.clone();
            let stop = stop_store.clone();
            tokio::spawn(async move { store.run(stop).await })
        };
        let mut background = vec![
            tokio::spawn(signaling::broadcast_room_changes(
                hub.clone(),
                io.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(retention(hub.clone(), shutdown.clone())),
            tokio::spawn(signaling::delivery::deliver_messages(
                hub.clone(),
                io.clone(),
                bus.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(signaling::deliver_late_messages(
                hub.clone(),
                io.clone(),
                shutdown.clone(),
            )),
            match &cert {
                Some(cert) => tokio::spawn(cert.clone().watch(
                    Duration::from_secs(config.tls.reload_secs),
                    shutdown.clone(),
                )),
                None => tokio::spawn(async {}),
            },
        ];
        if roster.is_clustered() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            background.push(tokio::spawn(roster.clone().run(tx, shutdown.clone())));
            background.push(tokio::spawn(signaling::tell_health(
                hub.clone(),
                io.clone(),
                cert.clone(),
                shutdown.clone(),
            )));
            background.push(tokio::spawn(signaling::follow_cluster(
                hub.clone(),
                io.clone(),
                rx,
                shutdown.clone(),
            )));
        }
        if media_link.is_clustered() && sfu.is_some() {
            // This node carries the media of calls placed on it, for
            // participants connected to any node.
            let served = hub.clone();
            let serve: crate::cluster::media::Serve =
                Arc::new(move |ask| Box::pin(signaling::hub::serve_remote(served.clone(), ask)));
            background.push(tokio::spawn(
                media_link.clone().run(serve, shutdown.clone()),
            ));
            background.push(tokio::spawn(hub.clone().keep_placements(shutdown.clone())));
        }
        if let Some(events) = sfu_events {
            background.push(tokio::spawn(signaling::media::forward_events(
                hub.clone(),
                io.clone(),
                events,
                shutdown.clone(),
            )));
        }
        if let Some(admin) = admin {
            background.push(tokio::spawn(admin::live::run(admin, shutdown.clone())));
        }
        background.push(tokio::spawn(crate::watchdog::run(
            metrics.clone(),
            shutdown.clone(),
        )));

        let stop_http = CancellationToken::new();
        let public = resolved.public_url.clone();
        let target = RedirectTarget {
            base: public.as_ref().filter(|u| u.https).map(|u| u.base.clone()),
            https_port: http_addr.port(),
            host: crate::net::host_of(http_addr),
            data_dir: config.server.data_dir.clone(),
        };
        let gate = Gate::new(
            ConnLimits {
                per_ip: config.server.connections_per_ip as usize,
                exempt: resolved.trusted_proxies.clone(),
                slow_consumer: Duration::from_secs(config.limits.slow_consumer_secs),
                outgoing_max: (config.limits.outgoing_max_kib as usize) << 10,
            },
            metrics.clone(),
        );
        let timeouts = Timeouts {
            header: Duration::from_secs(config.server.header_timeout_secs),
            body: Duration::from_secs(config.server.body_timeout_secs),
        };
        let server = {
            let stop = stop_http.clone();
            let metrics = metrics.clone();
            match &cert {
                None => tokio::spawn(serve(
                    Tcp::new(listener, gate.clone()),
                    router,
                    timeouts,
                    metrics,
                    stop,
                )),
                Some(cert) => {
                    // HTTP/1.1 only: WebSocket upgrades (Socket.IO) need it.
                    let tls = cert.server_config(&[b"http/1.1"]);
                    let (incoming, plain) =
                        TlsIncoming::new(listener, tls, gate.clone(), stop.clone());
                    let redirect = redirect_router(target.clone());
                    tokio::spawn(async move {
                        // Plain HTTP on the HTTPS port gets a redirect, not a broken handshake.
                        let wrong_scheme = tokio::spawn(serve(
                            plain,
                            redirect,
                            timeouts,
                            metrics.clone(),
                            stop.clone(),
                        ));
                        serve(incoming, router, timeouts, metrics, stop).await;
                        let _ = wrong_scheme.await;
                    })
                }
            }
        };
        let redirect = redirect_listener.map(|listener| {
            let target = target.clone();
            let stop = stop_http.clone();
            tokio::spawn(serve(
                Tcp::new(listener, gate.clone()),
                redirect_router(target),
                timeouts,
                metrics.clone(),
                stop,
            ))
        });
        let url = match &public {
            Some(u) => u.base.clone(),
            None => {
                let scheme = if cert.is_some() { "https" } else { "http" };
                let shown = if http_addr.ip().is_unspecified() {
                    SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), http_addr.port())
                } else {
                    http_addr
                };
                format!("{scheme}://{shown}")
            }
        };

        let task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tracing::info!("shutting down: closing connections");
                stop_http.cancel();
                // The background tasks emit through `io`: they stop before it closes.
                for task in background {
                    task.await?;
                }
                io.close().await;
                let served = match tokio::time::timeout(DRAIN, server).await {
                    Ok(joined) => joined.map_err(AppError::Task),
                    Err(_) => {
                        tracing::warn!("some HTTP connections did not close in time");
                        Ok(())
                    }
                };
                if let Some(redirect) = redirect {
                    let _ = tokio::time::timeout(DRAIN, redirect).await;
                }
                if let Some(relay) = &relay {
                    relay.shutdown().await;
                }
                stop_store.cancel();
                committer.await?;
                store.flush().await.map_err(AppError::Flush)?;
                tracing::info!("store flushed; bye");
                served
            })
        };
        tracing::info!(node = %config.cluster.node_id, %http_addr, https = cert.is_some(), ?redirect_addr, data_dir = %config.server.data_dir.display(), "noom is listening");
        if let Some(cert) = &cert {
            tracing::info!(
                fingerprint = %cert.fingerprint(),
                self_signed = cert.is_self_signed(),
                cert = %cert.source().cert.display(),
                "serving HTTPS"
            );
        }
        Ok(Running {
            http_addr,
            redirect_addr,
            cert,
            url,
            relay: hub_relay,
            sfu,
            shutdown,
            task,
        })
    }
}

impl Running {
    /// The address the HTTP server (and Socket.IO) listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The plain-HTTP port that redirects to HTTPS, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// The certificate served, when TLS is on (fingerprint, reloads).
    pub fn cert(&self) -> Option<&Arc<CertStore>> {
        self.cert.as_ref()
    }

    /// Whether the main listener serves HTTPS.
    pub fn is_https(&self) -> bool {
        self.cert.is_some()
    }

    /// The URL to open: `server.public_url`, else the listen address
    /// (loopback when listening on all addresses).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The relay, when enabled (its addresses, allocations, self-test).
    pub fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.as_ref()
    }

    /// The media server, when it runs.
    pub fn sfu(&self) -> Option<&Arc<Sfu>> {
        self.sfu.as_ref()
    }

    /// A token that stops the server when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the server and waits until the store is durable.
    pub async fn shutdown(self) -> Result<(), AppError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server has stopped (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<(), AppError> {
        self.task.await?
    }
}

/// Binds the HTTP listener with a backlog deep enough for a reconnect storm
/// (every client of a restarted server coming back at once).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Opens the store, waiting a moment for a previous instance in this process
/// (a quick in-process restart) to release the directory lock.
async fn open_store(
    dir: &std::path::Path,
    options: &StoreOptions,
    metrics: Arc<Metrics>,
) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match Store::open(dir, options, metrics.clone()).await {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Applies the retention policy now and then.
async fn retention(hub: Arc<Hub>, shutdown: CancellationToken) {
    let cfg = &hub.config.store;
    let policy = Retention {
        max_messages: cfg.retention_max_messages,
        max_age_ms: (cfg.retention_max_age_days as i64).saturating_mul(86_400_000),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.retention_interval_secs));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = signaling::hub::now_ms();
        let window_ms = (hub.config.rooms.active_window_secs as i64).saturating_mul(1000);
        let ttl_ms = (hub.config.store.session_ttl_secs as i64).saturating_mul(1000);
        match retention_pass(&hub, &policy, now, window_ms, ttl_ms).await {
            Ok((0, rooms)) if rooms.is_empty() => {}
            Ok((messages, rooms)) => {
                tracing::info!(
                    messages,
                    rooms = rooms.len(),
                    "retention removed old messages and idle empty rooms"
                );
                if !rooms.is_empty() {
                    hub.rooms_forgotten(&rooms);
                    hub.rooms_changed();
                }
            }
            // A full disk is reported by /healthz; retention waits for room.
            Err(e @ (StoreError::DiskFull { .. } | StoreError::Unavailable { .. })) => {
                tracing::debug!(error = %e, "retention pass skipped")
            }
            Err(e) => tracing::error!(error = %e, "retention pass failed"),
        }
    }
}

/// One pass of [`retention`]: old messages, idle empty rooms, unused sessions.
async fn retention_pass(
    hub: &Hub,
    policy: &Retention,
    now: i64,
    window_ms: i64,
    ttl_ms: i64,
) -> Result<(u64, Vec<String>), StoreError> {
    let store = &hub.store;
    // Sessions with a connection open are in use, however long ago it opened.
    for (i, key) in hub.live_sessions().iter().enumerate() {
        store.session_used(key, now).await;
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    let messages = store.enforce_retention(policy, now).await?;
    let rooms = store
        .prune_idle_rooms(now.saturating_sub(window_ms), hub.live_rooms())
        .await?;
    let sessions = store.expire_sessions(now.saturating_sub(ttl_ms)).await?;
    if sessions > 0 {
        tracing::info!(
            sessions,
            "deleted sessions unused for store.session_ttl_secs"
        );
    }
    Ok((messages, rooms))
}

/// Starts the media server on `at`; it tells browsers the configured public
/// address, else the relay's, else this host's on its default route. A
/// media server that cannot start is logged, reported by `/healthz` (the
/// error returned) and left out.
fn start_sfu(
    config: &Config,
    at: &crate::config::ResolvedSfu,
    relay: Option<&Relay>,
) -> (
    Option<Arc<Sfu>>,
    Option<tokio::sync::mpsc::UnboundedReceiver<crate::sfu::SfuEvent>>,
    Option<String>,
) {
    let public_ip = at
        .public_ip
        .or_else(|| relay.map(Relay::public_ip))
        .or_else(|| crate::net::advertised_ip(at.listen.ip()))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let settings = SfuSettings {
        listen: at.listen,
        public_ip,
        max_participants: config.sfu.max_participants as usize,
        audio_streams: config.sfu.audio_streams as usize,
    };
    match Sfu::start(settings) {
        Ok((sfu, events)) => {
            // A participant without UDP reaches it through the relay.
            if let Some(relay) = relay {
                relay.open_own_port(sfu.addr().port());
            }
            (Some(sfu), Some(events), None)
        }
        Err(e) => {
            tracing::error!("the media server (SFU) is NOT running: {e}");
            (None, None, Some(e.to_string()))
        }
    }
}

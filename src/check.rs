//! `noom check`: validates a deployment before (or while) it runs.
//!
//! Exists so a self-hoster learns what is wrong, and how to fix it, from one
//! command instead of from a call that does not connect: the configuration,
//! the certificate (readable, parses, key matches, expiry, names), the data
//! directory, the listen ports and the relay (started on its configured ports
//! and self-tested, or, when a running noom holds them, that server's
//! `/api/relay/self-test`). Each finding is ok, warn or FAIL, with a fix.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Config, Resolved, ResolvedTurn};
use crate::relay::Relay;
use crate::tls;

/// Certificates expiring sooner than this are reported.
const EXPIRY_WARN: Duration = Duration::from_secs(tls::EXPIRY_WARN_SECS as u64);
/// How long a probe of a running noom may take.
const PROBE: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    /// What was checked: `config`, `https`, `certificate`, `data`, `ports`, `relay`.
    pub area: &'static str,
    pub message: String,
    /// How to fix it, when not ok.
    pub fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn add(
        &mut self,
        level: Level,
        area: &'static str,
        message: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Finding {
            level,
            area,
            message: message.into(),
            fix,
        });
    }
    fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.add(Level::Ok, area, message, None);
    }
    fn warn(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Warn, area, message, Some(fix.into()));
    }
    fn fail(&mut self, area: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Fail, area, message, Some(fix.into()));
    }
}

/// Prints the findings; returns whether none failed.
pub fn print(findings: &[Finding]) -> bool {
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {:<11} {}", f.area, f.message);
        if let Some(fix) = &f.fix {
            println!("      {:<11} fix: {fix}", "");
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    if failed == 0 {
        println!("no problems found ({warned} warning(s))");
    } else {
        println!("{failed} problem(s) found, {warned} warning(s)");
    }
    failed == 0
}

/// Runs every check on a configuration that loaded.
pub async fn run(config: &Config, origin: &str) -> Vec<Finding> {
    let mut r = Report::default();
    // A configuration that loaded has been validated: this cannot fail.
    let at = match config.validate() {
        Ok(at) => at,
        Err(e) => {
            r.fail("config", e.to_string(), "fix the key named");
            return r.0;
        }
    };
    r.ok("config", format!("loaded ({origin})"));
    check_https(config, &at, &mut r);
    let in_use = check_data_dir(&config.server.data_dir, &mut r);
    check_admin(config, &mut r);
    let noom_running = check_ports(config, &at, in_use, &mut r).await;
    check_store(config, &at, in_use, noom_running, &mut r).await;
    check_relay(config, &at, noom_running, &mut r).await;
    r.0
}

fn check_https(config: &Config, at: &Resolved, r: &mut Report) {
    let public = at.public_url.clone();
    let Some(source) = tls::Source::from_config(config) else {
        match &public {
            Some(u) if u.https => r.ok(
                "https",
                format!("served by a reverse proxy at {} (server.public_url)", u.base),
            ),
            _ => r.warn(
                "https",
                "HTTPS is off: browsers allow calls only on https:// (or http://localhost)",
                "set `[tls] self_signed = true`, or `cert` and `key` (e.g. from Let's Encrypt), or put a \
                 reverse proxy in front and set server.public_url = \"https://...\" (docs/deploy.md)",
            ),
        }
        if !config.turn.tls_cert.is_empty() {
            check_cert_files(
                config,
                at,
                Path::new(&config.turn.tls_cert),
                Path::new(&config.turn.tls_key),
                false,
                r,
            );
        }
        return;
    };
    if source.self_signed && !source.cert.is_file() {
        r.ok(
            "certificate",
            format!(
                "self-signed: generated at the first start into {}",
                source.cert.display()
            ),
        );
        r.warn(
            "certificate",
            "a self-signed certificate makes every browser warn once per device, and some \
             networks' TURNS clients refuse it",
            "for a public server use a real certificate (tls.cert / tls.key), e.g. certbot (docs/deploy.md)",
        );
    } else {
        check_cert_files(config, at, &source.cert, &source.key, source.self_signed, r);
    }
    if !config.turn.tls_cert.is_empty() {
        check_cert_files(
            config,
            at,
            Path::new(&config.turn.tls_cert),
            Path::new(&config.turn.tls_key),
            false,
            r,
        );
    }
}

fn check_cert_files(
    config: &Config,
    at: &Resolved,
    cert: &Path,
    key: &Path,
    self_signed: bool,
    r: &mut Report,
) {
    let loaded = match tls::load(cert, key) {
        Ok(l) => l,
        Err(e) => {
            let fix = match &e {
                tls::TlsError::Read { path, .. } => format!(
                    "check that {} exists and that the user running noom can read it (certbot's \
                     /etc/letsencrypt/live is root-only: copy the files in a deploy hook, docs/deploy.md)",
                    path.display()
                ),
                tls::TlsError::Mismatch { .. } => {
                    "use the key that belongs to this certificate (certbot: fullchain.pem with privkey.pem)"
                        .to_string()
                }
                _ => "give a PEM certificate chain (leaf first) and its PEM private key".to_string(),
            };
            r.fail("certificate", e.to_string(), fix);
            return;
        }
    };
    let info = match tls::inspect(loaded.leaf()) {
        Ok(i) => i,
        Err(e) => {
            r.fail(
                "certificate",
                format!("{}: cannot read the certificate: {e}", cert.display()),
                "give a valid X.509 certificate in PEM",
            );
            return;
        }
    };
    let now = SystemTime::now();
    let days = |t: SystemTime| match t.duration_since(now) {
        Ok(d) => d.as_secs() as i64 / 86_400,
        Err(e) => -(e.duration().as_secs() as i64 / 86_400),
    };
    if info.not_after <= now {
        r.fail(
            "certificate",
            format!(
                "{} EXPIRED {} day(s) ago: browsers refuse it",
                cert.display(),
                -days(info.not_after)
            ),
            "renew it (certbot renew); noom picks up the new files without a restart",
        );
    } else if info.not_before > now {
        r.fail(
            "certificate",
            format!("{} is not valid yet (check the clock)", cert.display()),
            "fix the system clock or the certificate",
        );
    } else if info.not_after.duration_since(now).unwrap_or_default() < EXPIRY_WARN {
        r.warn(
            "certificate",
            format!(
                "{} expires in {} day(s)",
                cert.display(),
                days(info.not_after)
            ),
            "renew it soon (certbot renew); noom reloads it without a restart",
        );
    } else {
        r.ok(
            "certificate",
            format!(
                "{} valid for {} more day(s), SHA-256 {}",
                cert.display(),
                days(info.not_after),
                loaded.fingerprint
            ),
        );
    }
    let mut wanted: Vec<String> = config.tls.hosts.clone();
    if let Some(u) = &at.public_url {
        wanted.push(u.host.clone());
    }
    if !config.turn.public_host.is_empty() {
        wanted.push(config.turn.public_host.clone());
    }
    wanted.dedup();
    if wanted.is_empty() && !self_signed {
        r.warn(
            "certificate",
            format!(
                "names {:?}: no host name configured to check them against",
                info.names
            ),
            "set server.public_url (or tls.hosts) to the name people open",
        );
    }
    for host in wanted {
        if info.names.iter().any(|n| tls::name_covers(n, &host)) {
            r.ok("certificate", format!("covers {host}"));
        } else {
            r.fail(
                "certificate",
                format!("does not cover {host} (it names {:?})", info.names),
                if self_signed {
                    "delete the tls-self-signed.* files in the data directory to generate a new one".to_string()
                } else {
                    format!("get a certificate for {host}, or correct server.public_url / tls.hosts / turn.public_host")
                },
            );
        }
    }
}

/// Checks the data directory; returns whether a running noom holds it.
fn check_data_dir(dir: &Path, r: &mut Report) -> bool {
    if !dir.exists() {
        let mut parent = dir.parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                parent = Some(Path::new("."));
                break;
            }
            if p.exists() {
                break;
            }
            parent = p.parent();
        }
        let parent = parent.unwrap_or(Path::new("."));
        match probe_writable(parent) {
            Ok(()) => r.ok(
                "data",
                format!("{} does not exist yet; it will be created", dir.display()),
            ),
            Err(e) => r.fail(
                "data",
                format!(
                    "{} does not exist and cannot be created in {}: {e}",
                    dir.display(),
                    parent.display()
                ),
                "create it and give it to the user running noom (systemd: StateDirectory=noom)",
            ),
        }
        return false;
    }
    if !dir.is_dir() {
        r.fail(
            "data",
            format!("{} is not a directory", dir.display()),
            "point server.data_dir at a directory",
        );
        return false;
    }
    if let Err(e) = probe_writable(dir) {
        r.fail(
            "data",
            format!("{} is not writable: {e}", dir.display()),
            "give it to the user running noom (chown), or choose another server.data_dir",
        );
        return false;
    }
    // sled holds an exclusive lock on `db` while a server runs.
    let locked = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(crate::store::DB_DIR).join("db"))
        .ok()
        .is_some_and(|f| match f.try_lock() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        });
    if locked {
        r.ok(
            "data",
            format!("{} is writable and in use by a running noom", dir.display()),
        );
    } else {
        r.ok("data", format!("{} is writable", dir.display()));
    }
    locked
}

/// The database: opened and read through when no server holds it, else as
/// the running server's `/healthz` reports it.
async fn check_store(
    config: &Config,
    at: &Resolved,
    in_use: bool,
    noom_running: bool,
    r: &mut Report,
) {
    let dir = config.server.data_dir.clone();
    if in_use {
        let http = Some(at.http);
        let health = match http {
            Some(http) if noom_running => probe_json(http, config.tls_enabled(), "/healthz").await,
            _ => None,
        };
        match health {
            Some(h) if h.get("store").and_then(Value::as_str) == Some("ok") => {
                r.ok("store", "the running noom reports its store ok")
            }
            Some(h) => r.fail(
                "store",
                format!(
                    "the running noom reports its store {}: {}",
                    h.get("store").and_then(Value::as_str).unwrap_or("?"),
                    h.get("store_detail").and_then(Value::as_str).unwrap_or("")
                ),
                "see its log; free disk space, or restore the data directory from a backup",
            ),
            None => r.warn(
                "store",
                "in use by a running noom that did not answer /healthz",
                "check that process and its log",
            ),
        }
        return;
    }
    if !dir.join(crate::store::DB_DIR).exists() {
        r.ok("store", "none yet: created at first start");
        return;
    }
    let options = crate::store::StoreOptions {
        cache_bytes: config.store.cache_mb << 20,
        ..crate::store::StoreOptions::default()
    };
    let verified = async {
        let store = crate::store::Store::open(
            &dir,
            &options,
            std::sync::Arc::new(crate::metrics::Metrics::default()),
        )
        .await?;
        let health = store.health();
        let verified = store.verify().await?;
        Ok::<_, crate::store::StoreError>((health, verified))
    }
    .await;
    match verified {
        Ok((_, v)) if v.damaged.is_empty() => r.ok(
            "store",
            format!(
                "{} rooms, {} messages and {} session records, all readable",
                v.rooms, v.messages, v.sessions
            ),
        ),
        Ok((_, v)) => r.fail(
            "store",
            format!("damaged data: {}", v.damaged.join("; ")),
            "restore the data directory from a backup; the rest is still served",
        ),
        // A noom that started meanwhile holds it: not a fault of the store.
        Err(e @ crate::store::StoreError::Locked(_)) => r.warn(
            "store",
            format!("not read: {e}"),
            "run noom check again, or ask the running noom: curl its /healthz",
        ),
        Err(e) => r.fail(
            "store",
            format!("cannot be opened: {e}"),
            "restore the data directory from a backup, or move it aside to start empty",
        ),
    }
}

/// The admin password: configured, generated earlier, or to be generated.
fn check_admin(config: &Config, r: &mut Report) {
    let admin = &config.admin;
    if !admin.enabled {
        r.ok("admin", "the admin page is off (admin.enabled = false)");
        return;
    }
    let token = if admin.api_token.is_empty() {
        ""
    } else {
        "; API token set"
    };
    if !admin.password_hash.is_empty() {
        match crate::admin::password::check_hash(&admin.password_hash, "admin.password_hash") {
            Ok(()) => r.ok("admin", format!("password from admin.password_hash{token}")),
            Err(e) => r.fail(
                "admin",
                e.to_string(),
                "put the line `noom hash-password` prints in admin.password_hash",
            ),
        }
        return;
    }
    let file = config
        .server
        .data_dir
        .join(crate::admin::password::PASSWORD_FILE);
    let origin = file.display().to_string();
    match std::fs::read_to_string(&file) {
        Ok(text) if crate::admin::password::check_hash(text.trim(), &origin).is_ok() => r.ok(
            "admin",
            format!(
                "password generated at first start (hash in {}; printed in the log of that start){token}",
                file.display()
            ),
        ),
        Ok(_) => r.fail(
            "admin",
            format!("{} does not hold an Argon2id hash", file.display()),
            "delete it to have a new password generated and printed at the next start, \
             or set admin.password_hash (`noom hash-password`)",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => r.ok(
            "admin",
            format!(
                "a password will be generated at the first start and printed once in the log{token}"
            ),
        ),
        Err(e) => r.fail(
            "admin",
            format!("cannot read {}: {e}", file.display()),
            "let the user running noom read the data directory",
        ),
    }
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".noom-check-{}", std::process::id()));
    std::fs::write(&probe, b"check")?;
    std::fs::remove_file(&probe)
}

/// Checks that the web ports can be bound; returns whether a running noom
/// answers on `server.http`.
async fn check_ports(config: &Config, at: &Resolved, data_in_use: bool, r: &mut Report) -> bool {
    let http = at.http;
    let mut running = false;
    match std::net::TcpListener::bind(http) {
        Ok(_) => r.ok("ports", format!("{http} (web) is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            match probe_json(http, config.tls_enabled(), "/healthz").await {
                Some(body) if body.get("version").is_some() => {
                    running = true;
                    r.ok("ports", format!("{http} (web) is served by a running noom"));
                }
                _ => r.fail(
                    "ports",
                    format!("{http} (web) is taken by another program"),
                    "stop that program or choose another server.http",
                ),
            }
        }
        Err(e) => r.fail(
            "ports",
            format!("cannot listen on {http} (web): {e}"),
            bind_fix(http),
        ),
    }
    if !running && data_in_use {
        r.warn(
            "ports",
            "the data directory is in use but no noom answers on server.http",
            "is another noom running with a different config? Stop it first",
        );
    }
    if let Some(redirect) = at.http_redirect {
        check_tcp_port(r, "ports", redirect, "HTTP redirect", running);
    }
    running
}

/// A TCP port noom will listen on: free, or held by the running noom (`running`).
fn check_tcp_port(r: &mut Report, area: &'static str, addr: SocketAddr, what: &str, running: bool) {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => r.ok(area, format!("{addr} ({what}) is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && running => r.ok(
            area,
            format!("{addr} ({what}) is in use by the running noom"),
        ),
        Err(e) => r.fail(
            area,
            format!("cannot listen on {addr} ({what}): {e}"),
            bind_fix(addr),
        ),
    }
}

fn bind_fix(addr: SocketAddr) -> String {
    if addr.port() < 1024 {
        format!(
            "ports below 1024 need a capability: systemd AmbientCapabilities=CAP_NET_BIND_SERVICE \
             (deploy/noom.service) or `setcap cap_net_bind_service=+ep $(which noom)`; or stop what holds {addr}"
        )
    } else {
        format!("stop what holds {addr} or choose another address")
    }
}

async fn check_relay(config: &Config, at: &Resolved, noom_running: bool, r: &mut Report) {
    if !config.turn.enabled {
        r.warn(
            "relay",
            "the built-in STUN/TURN relay is disabled (turn.enabled = false)",
            "calls between networks behind NATs need a relay: enable it or configure your own",
        );
        return;
    }
    // Any secret works for the self-test (it mints its own credentials):
    // the check does not create the data directory's secret file.
    let mut turn = config.turn.clone();
    if turn.secret.is_empty() {
        turn.secret = format!("check-{:032x}", rand::random::<u128>());
    }
    let turns = at.turn.turns;
    if turns.is_some() && config.turn.public_host.is_empty() {
        r.warn(
            "relay",
            "TURNS is on but turn.public_host is empty: browsers get turns: URLs with an IP \
             address, which the certificate must name",
            "set turn.public_host to the certificate's host name (e.g. the host of server.public_url)",
        );
    }
    if let Some(addr) = turns {
        check_tcp_port(r, "relay", addr, "TURNS", noom_running);
    }
    let dir = std::env::temp_dir();
    let only_udp_tcp = ResolvedTurn {
        turns: None,
        ..at.turn.clone()
    };
    match Relay::start(&turn, &only_udp_tcp, &dir, None).await {
        Ok(relay) => {
            let test = relay.self_test().await;
            relay.shutdown().await;
            let public = relay.public_ip();
            if test.ok {
                r.ok(
                    "relay",
                    format!(
                        "started on {} and self-tested: {} (advertised address {public})",
                        config.turn.listen, test.detail
                    ),
                );
            } else {
                r.fail(
                    "relay",
                    format!("self-test failed on {}: {}", config.turn.listen, test.detail),
                    "check turn.listen / turn.public_ip and that the firewall lets UDP 3478 and the relay range in",
                );
            }
            if !public.is_loopback()
                && !crate::net::local_addresses().is_empty()
                && !crate::net::local_addresses().contains(&public)
            {
                r.warn(
                    "relay",
                    format!("the relay advertises {public}, which is not an address of this machine"),
                    "fine behind a 1:1 NAT (most clouds) when UDP/TCP 3478, TCP 5349 and the relay range \
                     are forwarded; otherwise correct turn.public_ip",
                );
            }
            if public.is_loopback() || is_private(public) {
                r.warn(
                    "relay",
                    format!("the relay advertises {public}, which the internet cannot reach"),
                    "set turn.public_ip to this server's public address (behind NAT: forward UDP/TCP 3478, 5349 and the relay range)",
                );
            }
        }
        Err(e) => {
            let http = Some(at.http);
            let running = match http {
                Some(http) if noom_running => {
                    probe_json(http, config.tls_enabled(), "/api/relay/self-test").await
                }
                _ => None,
            };
            match running {
                Some(body) if body.get("ok") == Some(&Value::Bool(true)) => r.ok(
                    "relay",
                    format!(
                        "{} is held by the running noom, whose relay self-test passed",
                        config.turn.listen
                    ),
                ),
                Some(body) => r.fail(
                    "relay",
                    format!(
                        "the running noom's relay self-test failed: {}",
                        body.get("detail")
                            .and_then(Value::as_str)
                            .unwrap_or("no detail")
                    ),
                    "see its log; check turn.listen / turn.public_ip and the firewall",
                ),
                None => r.fail(
                    "relay",
                    format!("the relay cannot start: {e}"),
                    format!(
                        "stop the program holding {} (e.g. coturn) or choose another turn.listen",
                        config.turn.listen
                    ),
                ),
            }
        }
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// GETs `path` from a server on `addr` (loopback when it listens on all
/// addresses) and parses the body as JSON. Over TLS, the certificate is not
/// verified: this only asks the local server how it is doing.
async fn probe_json(addr: SocketAddr, https: bool, path: &str) -> Option<Value> {
    let target = if addr.ip().is_unspecified() {
        let ip = match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    };
    tokio::time::timeout(PROBE, async {
        let tcp = TcpStream::connect(target).await.ok()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\r\n",
            tls::host_of(target)
        );
        let raw = if https {
            let name = rustls_pki_types::ServerName::IpAddress(target.ip().into());
            let mut tls = tokio_rustls::TlsConnector::from(tls::client_accepting_any_certificate())
                .connect(name, tcp)
                .await
                .ok()?;
            exchange(&mut tls, &request).await?
        } else {
            let mut tcp = tcp;
            exchange(&mut tcp, &request).await?
        };
        let text = String::from_utf8_lossy(&raw);
        let (_, body) = text.split_once("\r\n\r\n")?;
        serde_json::from_str(body.trim()).ok()
    })
    .await
    .ok()
    .flatten()
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> Option<Vec<u8>> {
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    (!raw.is_empty()).then_some(raw)
}

//! Certificates, servers and clients for the TLS tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use noom::Running;
use noom::config::Config;
use tokio_rustls::rustls;

use crate::common::TestServer;

pub const SECRET: &str = "test-secret-0123456789";
pub const REALM: &str = "noom";
/// The name the test certificates are made for (resolved to loopback by the clients).
pub const HOST: &str = "noom.test";

/// A test CA that signs leaves.
pub struct Ca {
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "Noom test CA");
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).expect("CA cert");
        Ca {
            der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, valid from `from` to `until` (relative to now, in days).
    pub fn leaf(&self, names: &[&str], from_days: i64, until_days: i64) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.not_before = days_from_now(from_days).into();
        params.not_after = days_from_now(until_days).into();
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem() + &pem_of(&self.der),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn days_from_now(days: i64) -> SystemTime {
    let d = Duration::from_secs(days.unsigned_abs() * 86_400);
    if days >= 0 {
        SystemTime::now() + d
    } else {
        SystemTime::now() - d
    }
}

/// A leaf certificate (full chain PEM: leaf then CA) and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    pub fn fingerprint(&self) -> String {
        noom::tls::fingerprint(&self.der)
    }

    /// Writes `cert.pem` and `key.pem` into `dir` (replacing them atomically).
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        replace(&key, self.key_pem.as_bytes());
        replace(&cert, self.cert_pem.as_bytes());
        (cert, key)
    }

    /// Writes the pair into `dir` and points `[tls] cert` and `key` at it.
    pub fn install(&self, c: &mut Config, dir: &Path) {
        let (cert, key) = self.write(dir);
        c.tls.cert = cert.to_string_lossy().into();
        c.tls.key = key.to_string_lossy().into();
    }
}

/// Replaces a file by a rename, as certbot's symlink swap does.
pub fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A test server whose relay has the secret [`SECRET`]; `tweak` also gets
/// the server's directory, to put certificates there.
pub async fn server(tweak: impl FnOnce(&mut Config, &Path)) -> TestServer {
    let builder = TestServer::builder().tweak(|c| c.turn.secret = SECRET.into());
    let dir = builder.dir().to_path_buf();
    builder.tweak(|c| tweak(c, &dir)).start().await
}

/// The same on the directory `dir` (a restart on the same data, say).
pub async fn server_in(dir: &Path, tweak: impl FnOnce(&mut Config, &Path)) -> Running {
    crate::common::start_in(dir, |c| {
        c.turn.secret = SECRET.into();
        tweak(c, dir);
    })
    .await
}

/// The test server's URLs under the certificates' name.
pub trait Named {
    /// `https://noom.test:<port><path>` (the clients resolve it to loopback).
    fn named(&self, path: &str) -> String;
}

impl Named for TestServer {
    fn named(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.addr().port())
    }
}

/// A client trusting only `ca`, resolving `noom.test` to `addr`; no pooling,
/// so every request makes a fresh TLS connection.
pub fn trusting(ca: &[u8], addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(ca).expect("CA der"))
        .resolve(HOST, addr)
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A client accepting any certificate (for a self-signed one); no pooling.
pub fn insecure() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The SHA-256 fingerprint of the certificate a response came over.
pub fn served_fingerprint(resp: &reqwest::Response) -> String {
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    noom::tls::fingerprint(info.peer_certificate().expect("a peer certificate"))
}

/// The leaf certificate a bare TLS handshake with `addr` gets (any protocol on top).
pub async fn handshake_fingerprint(addr: SocketAddr) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from(HOST).expect("name");
    let tls = tokio_rustls::TlsConnector::from(noom::tls::client_accepting_any_certificate())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let certs = conn.peer_certificates().expect("peer certificates");
    noom::tls::fingerprint(certs[0].as_ref())
}

/// A rustls client configuration trusting only `ca`.
pub fn rustls_trusting(ca: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca.to_vec()))
        .expect("root");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Polls `f` until it returns `Some`, for up to `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// coturn-style REST credentials for `user`, valid for `ttl_secs`.
pub fn rest_credentials(user: &str, ttl_secs: i64) -> (String, String) {
    noom::client::turn::credentials(SECRET, user, ttl_secs)
}

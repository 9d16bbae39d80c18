//! HTTPS built in: the certificate the web server and the TURNS listener share.
//!
//! Browsers allow camera and microphone only on secure origins, so calls across
//! the internet need HTTPS. This module loads a PEM certificate chain and key
//! (and swaps in a new pair when the files change, keeping the old one when
//! the new files are bad), or generates a self-signed certificate once into
//! the data directory. [`CertStore`] is a rustls certificate resolver: every
//! TLS acceptor built from it (web and TURNS) sees a reload at the next
//! handshake. It also inspects certificates for `noom check`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Resolved};

mod self_signed;

use self_signed::ensure_self_signed;
pub use self_signed::self_signed_names;

/// Files of the generated certificate, in the data directory.
pub const SELF_SIGNED_CERT: &str = "tls-self-signed.pem";
pub const SELF_SIGNED_KEY: &str = "tls-self-signed.key";
/// A certificate expiring sooner than this is reported (log, `/healthz`, `noom check`).
pub const EXPIRY_WARN_SECS: i64 = 14 * 86_400;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("the private key {key} does not belong to the certificate {cert} ({reason})")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate chain and key that parsed and belong together.
#[derive(Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, `AB:CD:...`.
    pub fingerprint: String,
    /// Hash of the two files' bytes, to notice changes.
    digest: [u8; 32],
    /// When the leaf certificate expires (`None` when it cannot be read).
    pub not_after: Option<SystemTime>,
}

impl Loaded {
    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &[u8] {
        self.key
            .cert
            .first()
            .map(|c| c.as_ref())
            .unwrap_or_default()
    }
}

/// A TLS client configuration that accepts any server certificate: only for
/// talking to a server whose identity is known otherwise (`noom check` asking
/// the local noom for its health, which may well have a self-signed or
/// not-yet-valid certificate). Never for a peer on the network.
pub fn client_accepting_any_certificate() -> Arc<rustls::ClientConfig> {
    // As in `server_config`: the ring provider supports the default versions.
    let builder = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(_) => rustls::ClientConfig::builder(),
    };
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
    )
}

/// Accepts any certificate, but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate as colon-separated hex (what browsers show).
pub fn fingerprint(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    hash.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads and checks a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    parse(cert, &cert_pem, key, &key_pem)
}

fn digest_of(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert_pem.len() as u64).to_be_bytes());
    h.update(cert_pem);
    h.update(key_pem);
    h.finalize().into()
}

fn parse(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse {
            path: cert.to_path_buf(),
            reason: format!("not a PEM certificate chain ({e})"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Parse {
            path: cert.to_path_buf(),
            reason: "no certificate in the file (expected -----BEGIN CERTIFICATE-----)".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Parse {
        path: key.to_path_buf(),
        reason: format!("no usable PEM private key ({e})"),
    })?;
    let certified =
        CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    let fingerprint = fingerprint(certified.cert[0].as_ref());
    let not_after = inspect(certified.cert[0].as_ref())
        .ok()
        .map(|i| i.not_after);
    Ok(Loaded {
        key: Arc::new(certified),
        fingerprint,
        digest: digest_of(cert_pem, key_pem),
        not_after,
    })
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub struct Source {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed: bool,
}

impl Source {
    /// The certificate `config` asks for, `None` when `[tls]` is off. A
    /// self-signed one lives in the data directory.
    pub fn from_config(config: &Config) -> Option<Source> {
        let tls = &config.tls;
        if tls.self_signed {
            let dir = &config.server.data_dir;
            Some(Source {
                cert: dir.join(SELF_SIGNED_CERT),
                key: dir.join(SELF_SIGNED_KEY),
                self_signed: true,
            })
        } else if !tls.cert.is_empty() {
            Some(Source {
                cert: PathBuf::from(&tls.cert),
                key: PathBuf::from(&tls.key),
                self_signed: false,
            })
        } else {
            None
        }
    }
}

/// The current certificate, shared by every TLS acceptor; see the module doc.
pub struct CertStore {
    source: Source,
    current: RwLock<Loaded>,
    /// Digest of files that failed to load, so a bad file is reported once.
    failed: RwLock<Option<[u8; 32]>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().key.clone())
    }
}

impl CertStore {
    /// Loads the certificate `config` asks for (generating a self-signed one
    /// when needed); `None` when `[tls]` is off.
    pub fn from_config(
        config: &Config,
        resolved: &Resolved,
    ) -> Result<Option<Arc<CertStore>>, TlsError> {
        let Some(source) = Source::from_config(config) else {
            return Ok(None);
        };
        if source.self_signed {
            ensure_self_signed(config, resolved)?;
        }
        let loaded = load(&source.cert, &source.key)?;
        Ok(Some(Arc::new(CertStore {
            source,
            current: RwLock::new(loaded),
            failed: RwLock::new(None),
        })))
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn is_self_signed(&self) -> bool {
        self.source.self_signed
    }

    /// SHA-256 fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> String {
        self.current.read().fingerprint.clone()
    }

    /// The certificate served now.
    pub fn current(&self) -> Loaded {
        self.current.read().clone()
    }

    /// Seconds until the certificate served now expires (negative: expired).
    pub fn expires_in_secs(&self) -> Option<i64> {
        let not_after = self.current.read().not_after?;
        Some(match not_after.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64),
        })
    }

    /// A rustls server configuration resolving through this store.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions();
        // The ring provider supports the default versions: this cannot fail,
        // but a fallback keeps the signature infallible.
        let mut config = match builder {
            Ok(b) => b.with_no_client_auth().with_cert_resolver(self.clone()),
            Err(_) => rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Reads the files again; swaps in a changed, valid pair. `Ok(true)` when
    /// the certificate changed; an error leaves the old certificate in place.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(&self.source.cert)?, read(&self.source.key)?);
        let digest = digest_of(&cert_pem, &key_pem);
        if digest == self.current.read().digest || *self.failed.read() == Some(digest) {
            return Ok(false);
        }
        match parse(&self.source.cert, &cert_pem, &self.source.key, &key_pem) {
            Ok(loaded) => {
                *self.current.write() = loaded;
                *self.failed.write() = None;
                Ok(true)
            }
            Err(e) => {
                *self.failed.write() = Some(digest);
                Err(e)
            }
        }
    }

    /// Checks the files every `every` until `stop`, logging what changed.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut warned: Option<std::time::Instant> = None;
        loop {
            // A renewal that keeps failing shows in the log a day at a time.
            if let Some(left) = self.expires_in_secs()
                && left < EXPIRY_WARN_SECS
                && warned.is_none_or(|at| at.elapsed() > Duration::from_secs(86_400))
            {
                warned = Some(std::time::Instant::now());
                tracing::warn!(
                    days = left / 86_400,
                    cert = %self.source.cert.display(),
                    "the TLS certificate expires soon (or has expired): is its renewal running?"
                );
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(Ok(true)) => tracing::info!(
                    fingerprint = %self.fingerprint(),
                    cert = %self.source.cert.display(),
                    "TLS certificate reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(
                    "TLS certificate NOT reloaded, still serving the previous one: {e}"
                ),
                Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
            }
        }
    }
}

/// What `noom check` wants to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub not_after: SystemTime,
    pub not_before: SystemTime,
    /// DNS names and IP addresses (subject alternative names; the common
    /// name when there are none).
    pub names: Vec<String>,
    /// Issuer equals subject.
    pub self_issued: bool,
}

/// Reads validity and names from a DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let to_time = |t: ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(
                        IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                    ),
                    16 => names.push(
                        IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_string());
            }
        }
    }
    Ok(CertInfo {
        not_after: to_time(cert.validity().not_after),
        not_before: to_time(cert.validity().not_before),
        names,
        self_issued: cert.issuer() == cert.subject(),
    })
}

/// Whether a certificate name (possibly `*.example.org`) covers `host`.
pub fn name_covers(name: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_hosts_like_browsers_match_them() {
        assert!(name_covers("noom.example.org", "NOOM.example.org"));
        assert!(name_covers("*.example.org", "noom.example.org"));
        assert!(!name_covers("*.example.org", "example.org"));
        assert!(!name_covers("*.example.org", "a.b.example.org"));
        assert!(name_covers("2001:db8::1", "[2001:db8::1]"));
        assert!(!name_covers("10.0.0.1", "10.0.0.2"));
    }

    #[test]
    fn fingerprints_are_colon_separated_sha256() {
        let f = fingerprint(b"");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("E3:B0:C4:42"), "{f}");
    }
}

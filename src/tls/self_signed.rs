//! The self-signed certificate: made once into the data directory for the
//! names this server is reached by, and made again only when the configured
//! names change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{SELF_SIGNED_CERT, SELF_SIGNED_KEY, TlsError, fingerprint};
use crate::config::{Config, Resolved};

/// The names the generated certificate was made for, one a line.
const SELF_SIGNED_NAMES: &str = "tls-self-signed.names";
/// How long a generated certificate is valid.
const SELF_SIGNED_DAYS: u64 = 3650;

/// The names a self-signed certificate is made for: the configured ones
/// (`tls.hosts`, the host of `server.public_url`, `turn.public_host`,
/// `turn.public_ip`, the listen IP) and then localhost and this machine's
/// addresses. Only a change of the configured ones asks for a new certificate.
pub fn self_signed_names(config: &Config, resolved: &Resolved) -> (Vec<String>, Vec<String>) {
    let mut configured: Vec<String> = config.tls.hosts.clone();
    if let Some(url) = &resolved.public_url {
        configured.push(url.host.clone());
    }
    for name in [&config.turn.public_host, &config.turn.public_ip] {
        if !name.is_empty() {
            configured.push(name.clone());
        }
    }
    if !resolved.http.ip().is_unspecified() {
        configured.push(resolved.http.ip().to_string());
    }
    let mut machine = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && name.parse::<IpAddr>().is_err() {
            machine.push(name.to_string());
        }
    }
    if let Some(ip) = crate::net::default_route_ip() {
        machine.push(ip.to_string());
    }
    machine.extend(crate::net::local_addresses().iter().map(IpAddr::to_string));
    let mut seen = std::collections::BTreeSet::new();
    configured.retain(|n| seen.insert(n.to_ascii_lowercase()));
    machine.retain(|n| seen.insert(n.to_ascii_lowercase()));
    (configured, machine)
}

/// Generates the self-signed certificate unless one covering the configured
/// names is already in the data directory.
pub(super) fn ensure_self_signed(config: &Config, resolved: &Resolved) -> Result<(), TlsError> {
    let dir = &config.server.data_dir;
    let (cert_path, key_path, names_path) = (
        dir.join(SELF_SIGNED_CERT),
        dir.join(SELF_SIGNED_KEY),
        dir.join(SELF_SIGNED_NAMES),
    );
    let (configured, machine) = self_signed_names(config, resolved);
    if cert_path.is_file() && key_path.is_file() {
        let stored = std::fs::read_to_string(&names_path).unwrap_or_default();
        let stored: Vec<&str> = stored.lines().collect();
        if configured
            .iter()
            .all(|n| stored.iter().any(|s| s.eq_ignore_ascii_case(n)))
        {
            return Ok(());
        }
        tracing::info!(
            ?configured,
            "configured names changed: new self-signed certificate"
        );
    }
    let mut names = configured;
    names.extend(machine);
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| TlsError::Generate(format!("names {names:?}: {e}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "Noom self-signed");
    params.distinguished_name = dn;
    let now = SystemTime::now();
    let (from, until) = (
        now - Duration::from_secs(86_400),
        now + Duration::from_secs(SELF_SIGNED_DAYS * 86_400),
    );
    params.not_before = from.into();
    params.not_after = until.into();
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&names_path, names.join("\n").as_bytes(), 0o644)?;
    tracing::info!(
        cert = %cert_path.display(),
        fingerprint = %fingerprint(cert.der()),
        ?names,
        "generated a self-signed TLS certificate"
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_file(path, bytes, 0o600)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    std::io::Write::write_all(&mut file, bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

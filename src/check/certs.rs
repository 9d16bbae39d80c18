//! The certificate checks: HTTPS on or off, and for each certificate file
//! that it reads, parses, matches its key, is in date and names this server.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::Report;
use crate::config::{Config, Resolved};
use crate::tls;

/// Certificates expiring sooner than this are reported.
const EXPIRY_WARN: Duration = Duration::from_secs(tls::EXPIRY_WARN_SECS as u64);

pub(super) fn check_https(config: &Config, at: &Resolved, r: &mut Report) {
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

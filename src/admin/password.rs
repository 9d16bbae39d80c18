//! The admin password: Argon2id hashes, the password generated at first start,
//! and checking a login attempt.
//!
//! Only a hash is ever stored (in `noom.toml` or in the data directory). Checking
//! is deliberately slow, so it runs on the blocking pool, a few at a time.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::PasswordHash;
use rand::Rng;

/// The file in the data directory that holds the generated password's hash.
pub const PASSWORD_FILE: &str = "admin_password";
/// Length of a generated password, from an alphabet without look-alikes.
const GENERATED_LEN: usize = 20;
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("{origin} does not hold an Argon2id hash: {reason}")]
    BadHash { origin: String, reason: String },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub use crate::password::verify;

/// Hashes `password` with Argon2id and a random salt (PHC string format).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    crate::password::hash(password).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks that `hash` (from `origin`, for the message) is an Argon2id PHC string.
pub fn check_hash(hash: &str, origin: &str) -> Result<(), PasswordError> {
    let parsed = PasswordHash::new(hash).map_err(|e| PasswordError::BadHash {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::BadHash {
            origin: origin.to_string(),
            reason: format!("algorithm is {}, not argon2id", parsed.algorithm),
        });
    }
    Ok(())
}

/// The password hash in force, and the password itself when it was generated
/// just now (to be shown once).
pub struct Loaded {
    pub hash: String,
    pub generated: Option<String>,
}

/// The configured hash; else the one generated earlier into `data_dir`; else a
/// new random password, whose hash is written there (mode 0600).
pub fn load_or_generate(configured: &str, data_dir: &Path) -> Result<Loaded, PasswordError> {
    if !configured.is_empty() {
        check_hash(configured, "admin.password_hash")?;
        return Ok(Loaded {
            hash: configured.to_string(),
            generated: None,
        });
    }
    let path = data_dir.join(PASSWORD_FILE);
    let io = |source| PasswordError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let hash = text.trim().to_string();
            check_hash(&hash, &path.display().to_string())?;
            return Ok(Loaded {
                hash,
                generated: None,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut rng = rand::rng();
    let password: String = (0..GENERATED_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let hash = hash(&password)?;
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?
    };
    file.write_all(format!("{hash}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    Ok(Loaded {
        hash,
        generated: Some(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse").expect("hash");
        let b = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify(&a, "correct horse"));
        assert!(!verify(&a, "correct horse "));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_generate("", dir.path()).expect("generate");
        let password = first.generated.expect("a new password");
        assert_eq!(password.len(), GENERATED_LEN);
        let again = load_or_generate("", dir.path()).expect("load");
        assert!(again.generated.is_none());
        assert_eq!(again.hash, first.hash);
        assert!(verify(&again.hash, &password));
        let mode = std::fs::metadata(dir.path().join(PASSWORD_FILE))
            .expect("file")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn refuses_other_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            load_or_generate("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA", dir.path()).is_err()
        );
        std::fs::write(dir.path().join(PASSWORD_FILE), "garbage").expect("write");
        assert!(load_or_generate("", dir.path()).is_err());
    }
}

//! Which node this is. Several nodes can share one database (docs/cluster.md);
//! each names itself in its logs, `/metrics`, `/healthz` and the admin page, so
//! an operator can tell which one said what. `cluster.node_id` sets the name;
//! without it each start picks a new one from the host name. (What a valid
//! name is, the configuration checks: [`valid_id`].)

use rand::Rng;

pub use crate::config::valid_node_id as valid_id;

/// How much of the host name a generated id keeps.
const HOST_MAX: usize = 40;

/// A new id: this host's name (as far as it is valid in an id) and six
/// random hex digits, e.g. `web-1-3fa9c2`: two nodes on one host, or one
/// node restarted, get different ones (one chance in 16 million of a clash).
pub fn generate() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(HOST_MAX)
        .collect();
    let host = host.trim_matches('-');
    let host = if host.is_empty() { "noom" } else { host };
    let suffix: u32 = rand::rng().random_range(0..1 << 24);
    format!("{host}-{suffix:06x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let (a, b) = (generate(), generate());
        assert!(valid_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_checked() {
        for ok in ["a", "node-1", "web_2.example", &"x".repeat(64)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "two words", "ünïcode", "a\"b", "a/b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

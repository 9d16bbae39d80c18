//! Noom: self-hosted video calls and chat in one binary.
//!
//! Read this file as the table of contents:
//! - [`config`]: settings, their defaults, the layers that override them, and
//!   the parsed values ([`config::Resolved`]) the server starts from;
//! - [`app`]: start and stop the whole server in-process ([`App::start`]);
//! - [`store`]: sessions, rooms and chat history behind one async interface;
//!   sled (with group commit) is its engine;
//! - [`signaling`]: the Socket.IO wire contract (chat and call signaling);
//! - [`sfu`]: the selective forwarding unit for calls too large for a mesh
//!   (str0m, one UDP port, its own thread);
//! - [`relay`]: the built-in STUN/TURN relay (UDP and TCP), its credentials and self-test;
//! - [`web`]: pages, JSON API, health, metrics and embedded static files; the
//!   server loop and its limits (`web::serve`, `web::conn`); HTTPS listener
//!   and redirect port (`web::https`);
//! - [`http`]: what every HTTP handler shares (client address behind proxies,
//!   the JSON error body); a leaf that imports nothing of the crate;
//! - [`tls`]: the certificate (files reloaded on change, or self-signed) shared by
//!   HTTPS and TURNS;
//! - [`check`]: `noom check`, which validates a deployment and says how to fix it;
//! - [`admin`]: the admin page and API behind a login: inspect and manage everything;
//! - [`limit`]: rate limits keyed by source address, in bounded tables;
//! - [`password`]: Argon2id hashes for the admin and room passwords (a leaf);
//! - [`metrics`]: counters and their Prometheus rendering;
//! - [`watchdog`]: notices (counts, logs) when the async runtime stalls;
//! - [`node`]: this node's name among several sharing one database;
//! - [`cluster`]: several nodes through Redis: the Socket.IO adapter's bus,
//!   live membership shared by the nodes, and which node carries each
//!   call's media;
//! - [`net`]: this host's addresses, and accept loops that survive running out of descriptors;
//! - [`client`]: clients for `noom-load` and the tests: Socket.IO on the contract,
//!   and a hand-built TURN client that can send exactly the wrong thing.

pub mod admin;
pub mod app;
pub mod check;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod net;
pub mod node;
pub mod password;
pub mod relay;
pub mod sfu;
pub mod signaling;
pub mod store;
pub mod tls;
pub mod watchdog;
pub mod web;

pub use app::{App, AppError, Running};
pub use config::Config;

/// The version of this build, as `noom --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The module graph is one-way: no top-level module reaches itself through
/// the others. Run by `cargo test`; the picture is in the README ("Layout").
#[cfg(test)]
mod module_graph {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module -> the top-level modules its code names (`crate::x`),
    /// comments left out.
    fn edges() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).expect("under src");
                let first = rel
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let module = first.trim_end_matches(".rs").to_string();
                if path.extension().is_none_or(|e| e != "rs")
                    || matches!(module.as_str(), "lib" | "main" | "bin")
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("readable");
                let uses = out.entry(module.clone()).or_default();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    let mut rest = line;
                    while let Some(at) = rest.find("crate::") {
                        rest = &rest[at + "crate::".len()..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        if name.is_empty() {
                            // `use crate::{a, b}`
                            if let Some(list) = rest.strip_prefix('{') {
                                let list = &list[..list.find('}').unwrap_or(list.len())];
                                for item in list.split(',') {
                                    let item = item.trim();
                                    let head: String = item
                                        .chars()
                                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                                        .collect();
                                    if !head.is_empty() && head != module {
                                        uses.insert(head);
                                    }
                                }
                            }
                        } else if name != module {
                            uses.insert(name);
                        }
                    }
                }
            }
        }
        out
    }

    /// A cycle through `from`, if any.
    fn cycle(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = cycle(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }

    #[test]
    fn no_module_reaches_itself() {
        let graph = edges();
        assert!(graph.contains_key("signaling") && graph.contains_key("store"));
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            if let Some(c) = cycle(&graph, node, &mut Vec::new(), &mut done) {
                panic!("module cycle: {}\n{graph:#?}", c.join(" -> "));
            }
        }
    }

    #[test]
    fn leaves_import_nothing_of_the_crate() {
        let graph = edges();
        for leaf in [
            "http", "config", "limit", "metrics", "net", "client", "sfu", "cluster",
        ] {
            assert!(
                graph.get(leaf).is_none_or(BTreeSet::is_empty),
                "{leaf} imports {:?}",
                graph.get(leaf)
            );
        }
    }
}

//! What the fault tests need from the machine: network namespaces, the real
//! binary, a process's CPU time and memory.

use std::process::Command;

/// Where a test that needs a network namespace of its own runs.
pub enum Netns {
    /// This process is the copy inside the namespace: run the test's body.
    Inside,
    /// The body ran in a child process (and passed), or cannot run here.
    Done,
}

const NETNS_VAR: &str = "NOOM_FAULTS_NETNS";

/// Runs the test `name` (its path inside this test binary, as `--exact`
/// takes it) again in a child process inside a new network namespace, after
/// the shell commands `setup` ran there. Returns [`Netns::Inside`] in that
/// child. Without namespaces (not root, no `unshare` or `ip`) the test is
/// skipped with a message; CI runs as root and has them.
pub fn netns(name: &str, setup: &str) -> Netns {
    if std::env::var(NETNS_VAR).as_deref() == Ok(name) {
        return Netns::Inside;
    }
    let usable = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        eprintln!("SKIPPED {name}: needs a network namespace (root, `unshare` and `ip`)");
        return Netns::Done;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let script = format!(
        "ip link set lo up && {setup} && exec \"$0\" --exact {name} --nocapture --test-threads=1"
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .arg(exe)
        .env(NETNS_VAR, name)
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed inside its network namespace:\n{stdout}\n{stderr}"
    );
    Netns::Done
}

/// The name `--exact` takes for the test function `f` of module `module`
/// (`module_path!()`, whose first segment is the test binary's name).
pub fn test_name(module: &str, f: &str) -> String {
    let inner = module.split_once("::").map_or("", |(_, rest)| rest);
    if inner.is_empty() {
        f.to_string()
    } else {
        format!("{inner}::{f}")
    }
}

/// A multi-threaded runtime for a test body that runs in a sync test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

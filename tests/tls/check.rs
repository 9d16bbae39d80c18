//! `noom check`, run as the real binary: what it reports and its exit code.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// Runs `noom check --config <dir>/noom.toml` with `toml` as the config,
/// in `dir`, without the caller's NOOM_* variables.
fn check(dir: &Path, toml: &str) -> (Output, String) {
    let config = dir.join("noom.toml");
    std::fs::write(&config, toml).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_noom"));
    cmd.arg("check")
        .arg("--config")
        .arg(&config)
        .current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("NOOM_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("noom runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// Ephemeral ports everywhere, so the checks can run in parallel.
fn base(extra: &str) -> String {
    format!(
        "[server]\nhttp = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\n[turn]\nlisten = \"127.0.0.1:0\"\n\n[sfu]\nlisten = \"127.0.0.1:0\"\n{extra}"
    )
}

fn fail_line<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with("FAIL") && l.contains(needle))
}

#[test]
fn a_sound_deployment_passes() {
    let dir = tempfile::TempDir::new().expect("dir");
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&[HOST], -1, 90).write(dir.path());
    let toml = base(&format!(
        "\n[tls]\ncert = {:?}\nkey = {:?}\nhosts = [\"{HOST}\"]\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let (out, text) = check(dir.path(), &toml);
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    assert!(
        text.contains(&format!("ok    certificate covers {HOST}")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("self-tested")),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn reports_a_missing_certificate_file() {
    let dir = tempfile::TempDir::new().expect("dir");
    let toml = base("\n[tls]\ncert = \"/no/such/fullchain.pem\"\nkey = \"/no/such/privkey.pem\"\n");
    let (out, text) = check(dir.path(), &toml);
    assert!(!out.status.success(), "{text}");
    let line = fail_line(&text, "certificate").unwrap_or_else(|| panic!("no FAIL line:\n{text}"));
    assert!(line.contains("/no/such/fullchain.pem"), "{line}");
    assert!(
        text.contains("fix: check that /no/such/fullchain.pem exists"),
        "{text}"
    );
}

#[test]
fn reports_an_expired_certificate_and_one_for_another_name() {
    let dir = tempfile::TempDir::new().expect("dir");
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["other.example"], -100, -3).write(dir.path());
    let toml = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\ndata_dir = \"data\"\npublic_url = \"https://{HOST}\"\n\n\
         [turn]\nlisten = \"127.0.0.1:0\"\n\n[tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (out, text) = check(dir.path(), &toml);
    assert!(!out.status.success(), "{text}");
    let line = fail_line(&text, "EXPIRED").unwrap_or_else(|| panic!("no FAIL line:\n{text}"));
    assert!(line.contains("3 day(s) ago"), "{line}");
    assert!(
        fail_line(&text, &format!("does not cover {HOST}")).is_some(),
        "{text}"
    );
}

#[test]
fn warns_about_a_certificate_expiring_soon() {
    let dir = tempfile::TempDir::new().expect("dir");
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&[HOST], -80, 5).write(dir.path());
    let toml = base(&format!(
        "\n[tls]\ncert = {:?}\nkey = {:?}\nhosts = [\"{HOST}\"]\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let (out, text) = check(dir.path(), &toml);
    assert!(out.status.success(), "a warning is not a failure:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains("expires in")),
        "{text}"
    );
}

#[test]
fn reports_a_relay_port_held_by_another_program() {
    let dir = tempfile::TempDir::new().expect("dir");
    // Not a noom: a bare UDP socket on the relay's port.
    let squatter = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    let toml = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\n[turn]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let (out, text) = check(dir.path(), &toml);
    assert!(!out.status.success(), "{text}");
    let line = fail_line(&text, "relay").unwrap_or_else(|| panic!("no FAIL line:\n{text}"));
    assert!(line.contains("cannot start"), "{line}");
    assert!(
        text.contains(&format!("stop the program holding 127.0.0.1:{port}")),
        "{text}"
    );
    drop(squatter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_a_running_noom_when_it_holds_the_ports_and_data() {
    let s = server(|c, _| c.tls.self_signed = true).await;
    let relay = s.running.relay().expect("relay").udp_addr();
    let sfu = s.running.sfu().expect("media server").addr();
    let toml = format!(
        "[server]\nhttp = \"{}\"\ndata_dir = {:?}\n\n[turn]\nlisten = \"{relay}\"\ntls_listen = \"off\"\n\n[sfu]\nlisten = \"{sfu}\"\n\n[tls]\nself_signed = true\n",
        s.addr(),
        s.dir.path().join("data").display().to_string()
    );
    let dir = s.dir.path().to_path_buf();
    let (out, text) = tokio::task::spawn_blocking(move || check(&dir, &toml))
        .await
        .expect("check ran");
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    assert!(text.contains("in use by a running noom"), "{text}");
    assert!(text.contains("served by a running noom"), "{text}");
    assert!(text.contains("whose relay self-test passed"), "{text}");
    assert!(
        text.contains("/udp (media server) is in use by the running noom"),
        "{text}"
    );
}

#[test]
fn a_bad_config_fails_with_the_key_named() {
    let dir = tempfile::TempDir::new().expect("dir");
    let (out, text) = check(dir.path(), "[tls]\ncert = \"x.pem\"\n");
    assert!(!out.status.success(), "{text}");
    assert!(fail_line(&text, "tls.").is_some(), "{text}");
}

#[test]
fn the_shipped_deploy_config_loads() {
    let overrides = noom::config::Overrides {
        config: Some("deploy/noom.toml".into()),
        ..Default::default()
    };
    let config =
        noom::config::Config::load(&overrides, Vec::new()).expect("deploy/noom.toml loads");
    assert!(config.tls_enabled());
    assert_eq!(config.server.http, "0.0.0.0:443");
    assert_eq!(
        config.validate().expect("valid").turn.turns,
        Some("0.0.0.0:5349".parse().expect("addr"))
    );
    assert_eq!(
        config.validate().expect("valid").http_redirect,
        Some("0.0.0.0:80".parse().expect("addr"))
    );
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_load() {
    let load = |toml: &str| {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("noom.toml");
        std::fs::write(&path, toml).expect("write");
        let overrides = noom::config::Overrides {
            config: Some(path),
            ..Default::default()
        };
        noom::config::Config::load(&overrides, Vec::new()).map_err(|e| e.to_string())
    };
    for (toml, key) in [
        ("[tls]\ncert = \"c.pem\"\n", "tls.cert"),
        (
            "[tls]\nself_signed = true\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            "tls.self_signed",
        ),
        (
            "[tls]\nself_signed = true\nhttp_redirect = \"port 80\"\n",
            "tls.http_redirect",
        ),
        ("[tls]\nreload_secs = 0\n", "tls.reload_secs"),
        ("[turn]\ntls_listen = \"0.0.0.0:5349\"\n", "turn.tls_listen"),
        (
            "[server]\ntrusted_proxies = [\"nginx\"]\n",
            "server.trusted_proxies",
        ),
        (
            "[server]\npublic_url = \"noom.example.org\"\n",
            "server.public_url",
        ),
    ] {
        let err = load(toml).expect_err(toml);
        assert!(err.contains(key), "{toml}: {err}");
    }
    // The environment reaches the new section like the others.
    let config = noom::config::Config::load(
        &noom::config::Overrides::default(),
        vec![
            ("NOOM_TLS_SELF_SIGNED".to_string(), "true".to_string()),
            ("NOOM_TLS_HOSTS".to_string(), "a.test, b.test".to_string()),
            (
                "NOOM_SERVER_TRUSTED_PROXIES".to_string(),
                "10.0.0.0/8".to_string(),
            ),
        ],
    )
    .expect("loads");
    assert!(config.tls.self_signed);
    assert_eq!(config.tls.hosts, ["a.test", "b.test"]);
    assert_eq!(config.server.trusted_proxies, ["10.0.0.0/8"]);
}

#[test]
fn the_admin_password_file_is_checked() {
    let dir = tempfile::TempDir::new().expect("dir");
    let (out, text) = check(dir.path(), &base(""));
    assert!(out.status.success(), "exit {:?}:\n{text}", out.status);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("password will be generated")),
        "{text}"
    );
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::fs::write(dir.path().join("data/admin_password"), "not a hash\n").expect("write");
    let (out, text) = check(dir.path(), &base(""));
    assert!(!out.status.success(), "{text}");
    let line = fail_line(&text, "admin_password").unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("Argon2id"), "{line}");
    assert!(text.contains("noom hash-password"), "{text}");
}

//! Configuration layers and errors, in the library and through the binary.

use std::process::Command;

use noom::config::{Config, ConfigError, Overrides};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("noom.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Loads `path` as the config file, with no environment and no flags.
fn load_file(path: impl Into<std::path::PathBuf>) -> Result<Config, ConfigError> {
    let overrides = Overrides {
        config: Some(path.into()),
        ..Default::default()
    };
    Config::load(&overrides, env(&[]))
}

#[test]
fn the_shipped_noom_toml_lists_every_key_with_its_default() {
    let shipped: toml::Table = std::fs::read_to_string("noom.toml")
        .unwrap()
        .parse()
        .unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    assert_eq!(shipped, defaults);
    let loaded = load_file("noom.toml").unwrap();
    assert_eq!(loaded, Config::default());
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let (_d, path) = file(
        "[server]\nhttp = \"127.0.0.1:4000\"\ndata_dir = \"/srv/noom\"\n[limits]\ncall_max = 4\nmessage_max = 500\n",
    );
    let with_file = Overrides {
        config: Some(path.clone()),
        ..Default::default()
    };
    let c = Config::load(&with_file, env(&[])).unwrap();
    assert_eq!(c.server.http, "127.0.0.1:4000");
    assert_eq!(c.limits.call_max, 4);
    assert_eq!(
        c.limits.nickname_max, 32,
        "untouched keys keep their default"
    );

    let c = Config::load(
        &with_file,
        env(&[
            ("NOOM_LIMITS_CALL_MAX", "5"),
            ("NOOM_SERVER_HTTP", "127.0.0.1:5000"),
        ]),
    )
    .unwrap();
    assert_eq!(c.limits.call_max, 5);
    assert_eq!(c.limits.message_max, 500);
    assert_eq!(c.server.http, "127.0.0.1:5000");

    let flags = Overrides {
        config: Some(path),
        http: Some("127.0.0.1:6000".into()),
        data_dir: Some("/tmp/elsewhere".into()),
    };
    let c = Config::load(&flags, env(&[("NOOM_SERVER_HTTP", "127.0.0.1:5000")])).unwrap();
    assert_eq!(c.server.http, "127.0.0.1:6000");
    assert_eq!(
        c.server.data_dir,
        std::path::PathBuf::from("/tmp/elsewhere")
    );
    // Lists are comma-separated in the environment.
    let c = Config::load(
        &Overrides::default(),
        env(&[("NOOM_TURN_ALLOW_PEERS", "10.0.0.0/8, 192.168.1.5")]),
    )
    .unwrap();
    assert_eq!(
        c.turn.allow_peers,
        vec!["10.0.0.0/8".to_string(), "192.168.1.5".to_string()]
    );
    let err = Config::load(
        &Overrides::default(),
        env(&[("NOOM_TURN_ALLOW_PEERS", "10.0.0.0/33")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`turn.allow_peers`"), "{err}");
    // Variables outside our prefix are none of our business.
    assert!(
        Config::load(
            &Overrides::default(),
            env(&[("PATH", "/bin"), ("NOOMISH", "x")])
        )
        .is_ok()
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let cases: Vec<(&str, &str)> = vec![
        ("[server]\nhtp = \"x\"\n", "server.htp"),
        ("[sever]\nhttp = \"x\"\n", "sever"),
        ("[limits]\ncall_max = \"six\"\n", "limits.call_max"),
        ("[limits]\ncall_max = -1\n", "limits.call_max"),
        ("[limits]\ncall_max = 1\n", "limits.call_max"),
        ("[server]\nhttp = \"localhost\"\n", "server.http"),
        ("[log]\nlevel = \"loud[\"\n", "log.level"),
        ("limits = 3\n", "limits"),
        (
            "[admin]\npassword_hash = \"$2b$12$bcrypt\"\n",
            "admin.password_hash",
        ),
        ("[admin]\napi_token = \"short\"\n", "admin.api_token"),
        ("[admin]\nsession_ttl_secs = 5\n", "admin.session_ttl_secs"),
        (
            "[admin]\nlogin_failures_max = 0\n",
            "admin.login_failures_max",
        ),
        (
            "[server]\ntrusted_proxies = [\"not-a-net\"]\n",
            "server.trusted_proxies",
        ),
        ("[cluster]\nnode_id = \"two words\"\n", "cluster.node_id"),
        ("[cluster]\nnode_id = \"a\\\"b\"\n", "cluster.node_id"),
        ("[cluster]\nname = \"Upper\"\n", "cluster.name"),
        ("[cluster]\nredis_url = \"http://x\"\n", "cluster.redis_url"),
        // A cluster shares one store and its secrets.
        (
            "[cluster]\nredis_url = \"redis://127.0.0.1/\"\n",
            "store.backend",
        ),
        (
            "[cluster]\nredis_url = \"redis://127.0.0.1/\"\n[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://a@b/c\"\n",
            "turn.secret",
        ),
        (
            "[cluster]\nredis_url = \"redis://127.0.0.1/\"\n[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://a@b/c\"\n[turn]\nsecret = \"sixteen characters!\"\n",
            "admin.password_hash",
        ),
    ];
    for (text, key) in cases {
        let (_d, path) = file(text);
        let err = load_file(path).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{text:?} -> {err}"
        );
    }
    let (_d, path) = file("[server\n");
    let err = load_file(path).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");

    let err = Config::load(
        &Overrides::default(),
        env(&[("NOOM_LIMITS_CALL_MAX", "many")]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`limits.call_max`")
            && err.to_string().contains("NOOM_LIMITS_CALL_MAX"),
        "{err}"
    );
    let err = Config::load(&Overrides::default(), env(&[("NOOM_SERVER_PORT", "1")])).unwrap_err();
    assert!(err.to_string().contains("NOOM_SERVER_PORT"), "{err}");
    let err = load_file("/no/such/noom.toml").unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn the_binary_reports_config_errors_with_exit_code_2() {
    let (_d, path) = file("[limits]\nroom_name_max = 0\n");
    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`limits.room_name_max`"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .env("NOOM_SERVER_HTTP", "not an address")
        .arg("--config")
        .arg("noom.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`server.http`"));

    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("--bogus-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("noom {}", noom::VERSION)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_noom"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--http", "--data-dir"] {
        assert!(help.contains(flag), "{help}");
    }
}

//! A cluster for one test: nodes that share a Redis, a PostgreSQL schema and
//! a cluster name of their own (tests run in parallel on the same servers).

use std::sync::atomic::{AtomicUsize, Ordering};

use noom::config::Config;

use crate::common::TestServer;

pub const REDIS_URL_VAR: &str = "TEST_NOOM_REDIS_URL";

/// The services' URLs, or `None` (with a message) when the test cannot run.
pub fn services(test: &str) -> Option<(String, String)> {
    match (
        std::env::var(REDIS_URL_VAR),
        std::env::var(crate::common::POSTGRES_URL_VAR),
    ) {
        (Ok(redis), Ok(pg)) => Some((redis, pg)),
        _ => {
            eprintln!(
                "{test}: not run: needs Redis and PostgreSQL; run `bash scripts/test-cluster.sh`"
            );
            None
        }
    }
}

/// Nodes of one cluster.
pub struct Cluster {
    pub nodes: Vec<TestServer>,
    redis: String,
    pg: String,
    name: String,
}

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// `n` nodes, `n0`, `n1`, ...; `None` when the services are missing.
    pub async fn start(test: &str, n: usize) -> Option<Cluster> {
        Self::start_with(test, n, |_| {}).await
    }

    pub async fn start_with(test: &str, n: usize, tweak: impl Fn(&mut Config)) -> Option<Cluster> {
        let (redis, pg) = services(test)?;
        let name = format!(
            "t{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let mut cluster = Cluster {
            nodes: Vec::new(),
            redis,
            pg,
            name,
        };
        for _ in 0..n {
            cluster.add_node(&tweak).await;
        }
        Some(cluster)
    }

    /// Starts one more node; returns its index.
    pub async fn add_node(&mut self, tweak: &impl Fn(&mut Config)) -> usize {
        let i = self.nodes.len();
        let (redis, pg, name) = (self.redis.clone(), self.pg.clone(), self.name.clone());
        let server = TestServer::builder()
            .tweak(|c| {
                c.cluster.redis_url = redis;
                c.cluster.name = name.replace('-', "_");
                c.cluster.node_id = format!("n{i}");
                c.store.backend = "postgres".into();
                c.store.postgres_url = pg;
                c.store.postgres_schema = format!("c_{}", name.replace('-', "_"));
                c.store.postgres_pool = 4;
                c.turn.secret = "a shared secret for the test cluster".into();
                c.admin.password_hash = noom::password::hash("cluster admin").expect("hash");
                tweak(c);
            })
            .start()
            .await;
        self.nodes.push(server);
        i
    }

    pub fn base(&self, node: usize) -> &str {
        &self.nodes[node].base
    }

    /// The binary, set up as node `name` of this cluster (what every node
    /// shares: Redis, PostgreSQL, the TURN secret, the admin password).
    fn binary_as(&self, name: &str) -> std::process::Command {
        let prefix = self.name.replace('-', "_");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_noom"));
        command
            .env("NOOM_TURN_LISTEN", "127.0.0.1:0")
            .env("NOOM_SFU_LISTEN", "127.0.0.1:0")
            .env("NOOM_CLUSTER_REDIS_URL", &self.redis)
            .env("NOOM_CLUSTER_NAME", &prefix)
            .env("NOOM_CLUSTER_NODE_ID", name)
            .env("NOOM_STORE_BACKEND", "postgres")
            .env("NOOM_STORE_POSTGRES_URL", &self.pg)
            .env("NOOM_STORE_POSTGRES_SCHEMA", format!("c_{prefix}"))
            .env("NOOM_STORE_POSTGRES_POOL", "4")
            .env("NOOM_TURN_SECRET", "a shared secret for the test cluster")
            .env(
                "NOOM_ADMIN_PASSWORD_HASH",
                noom::password::hash("cluster admin").expect("hash"),
            );
        command
    }

    /// `noom check` as node `name` of this cluster would run it: its report.
    pub fn check(&self, name: &str) -> String {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let out = self
            .binary_as(name)
            .arg("check")
            .arg("--data-dir")
            .arg(dir.path())
            .env("NOOM_SERVER_HTTP", "127.0.0.1:0")
            .output()
            .expect("noom runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a node of this cluster as the real binary, in a process of its
    /// own (one that a test can SIGKILL), named `name`.
    pub async fn spawn_binary(&self, name: &str) -> BinaryNode {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let child = self
            .binary_as(name)
            .args(["--http", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .env("NOOM_LIMITS_EVENTS_PER_SEC", "1000000")
            .env("NOOM_LIMITS_EVENTS_BURST", "1000000")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("noom binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let node = BinaryNode {
            child,
            base,
            _dir: dir,
        };
        node.wait_healthy().await;
        node
    }
}

/// A node running as the real binary.
pub struct BinaryNode {
    pub child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl BinaryNode {
    async fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base)).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the node at {} did not become healthy", self.base);
    }

    /// SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BinaryNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Redis server of one test's own (Debian's redis-server, no persistence),
/// which the test may stop and start again on the same port.
pub struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let mut redis = OwnRedis {
            port: free_port(),
            dir: tempfile::TempDir::new().expect("temp dir"),
            child: None,
        };
        redis.up();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again), empty, and waits until it answers.
    pub fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL server of one test's own (Debian's, in a temporary
/// directory, as the `postgres` user when the test runs as root), which the
/// test may stop hard and start again.
pub struct OwnPostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let as_postgres = euid() == 0;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
        }
        let pg = OwnPostgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-A",
                "trust",
                "-U",
                "noom",
            ],
        );
        pg.up();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd.args(args).output().expect("PostgreSQL tool runs");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://noom@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn up(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Stops it at once, as a crash would (`-m immediate`).
    pub fn down(&self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = cmd
            .args([
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// This process's user id (the owner of `/proc/self`).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
}

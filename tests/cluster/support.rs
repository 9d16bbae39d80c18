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

    /// Starts a node of this cluster as the real binary, in a process of its
    /// own (one that a test can SIGKILL), named `name`.
    pub async fn spawn_binary(&self, name: &str) -> BinaryNode {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let hash = noom::password::hash("cluster admin").expect("hash");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_noom"))
            .args(["--http", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .env("NOOM_TURN_LISTEN", "127.0.0.1:0")
            .env("NOOM_SFU_LISTEN", "127.0.0.1:0")
            .env("NOOM_LIMITS_EVENTS_PER_SEC", "1000000")
            .env("NOOM_LIMITS_EVENTS_BURST", "1000000")
            .env("NOOM_CLUSTER_REDIS_URL", &self.redis)
            .env("NOOM_CLUSTER_NAME", self.name.replace('-', "_"))
            .env("NOOM_CLUSTER_NODE_ID", name)
            .env("NOOM_STORE_BACKEND", "postgres")
            .env("NOOM_STORE_POSTGRES_URL", &self.pg)
            .env(
                "NOOM_STORE_POSTGRES_SCHEMA",
                format!("c_{}", self.name.replace('-', "_")),
            )
            .env("NOOM_STORE_POSTGRES_POOL", "4")
            .env("NOOM_TURN_SECRET", "a shared secret for the test cluster")
            .env("NOOM_ADMIN_PASSWORD_HASH", hash)
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

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
}

//! `noom check` for several nodes: Redis reachable and recent enough, and
//! which nodes of the cluster are running now.

use std::time::Duration;

use super::Report;
use crate::cluster::BusError;
use crate::config::Config;

/// How long `noom check` waits for Redis.
const REDIS_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn check_cluster(config: &Config, r: &mut Report) {
    let cluster = &config.cluster;
    if cluster.redis_url.is_empty() {
        r.ok("cluster", "this node runs alone (no cluster.redis_url)");
        return;
    }
    let address = crate::cluster::bus::redis_address(&cluster.redis_url);
    let bus =
        match tokio::time::timeout(REDIS_WAIT, crate::cluster::bus::connect(&cluster.redis_url))
            .await
        {
            Ok(Ok(bus)) => bus,
            Ok(Err(e @ BusError::TooOld { .. })) => {
                r.fail(
                "cluster",
                e.to_string(),
                "upgrade Redis to 7 or later (Debian 12 and later: apt-get install redis-server)",
            );
                return;
            }
            Ok(Err(e)) => {
                r.fail(
                    "cluster",
                    e.to_string(),
                    "start Redis, or check cluster.redis_url (host, port, password, database)",
                );
                return;
            }
            Err(_) => {
                r.fail(
                "cluster",
                format!("Redis at {address} did not answer within {} s", REDIS_WAIT.as_secs()),
                "check that Redis runs and that this host may reach it (firewall, bind address)",
            );
                return;
            }
        };
    match crate::cluster::roster::live_nodes(&bus, &cluster.name).await {
        Ok(nodes) => {
            let list = if nodes.is_empty() {
                "none running now".to_string()
            } else {
                format!("running now: {}", nodes.join(", "))
            };
            r.ok(
                "cluster",
                format!(
                    "Redis {} at {address}; cluster `{}`, {list}",
                    bus.version, cluster.name
                ),
            );
            if !cluster.node_id.is_empty() && nodes.contains(&cluster.node_id) {
                r.warn(
                    "cluster",
                    format!("a node named `{}` is running already", cluster.node_id),
                    "unless that node is this one, give each node its own cluster.node_id (or leave it empty)",
                );
            }
        }
        Err(e) => r.fail(
            "cluster",
            format!("Redis at {address}: {e}"),
            "check that the Redis user may read keys (ACL)",
        ),
    }
}

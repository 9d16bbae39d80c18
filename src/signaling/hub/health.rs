//! What `/healthz` says of this node, and what it tells the other nodes of
//! itself (the admin page of any node lists every node's health).

use serde_json::{Value, json};

use super::Hub;

impl Hub {
    /// This node's health: whether it is up, and the details `/healthz`
    /// shows (store, relay, media server, certificate, cluster).
    pub async fn health(&self, cert: Option<&crate::tls::CertStore>) -> (bool, Value) {
        let store = self.store.health();
        // A relay whose self-test has not finished yet is not reported as failing.
        let (relay_ok, relay) = match &self.relay {
            None => match &self.relay_error {
                Some(e) => (false, json!({ "status": "failing", "detail": e })),
                None => (true, json!({ "status": "disabled" })),
            },
            Some(r) => match r.last_self_test() {
                None => (true, json!({ "status": "starting" })),
                Some(t) if t.ok => (true, json!({ "status": "ok" })),
                Some(t) => (false, json!({ "status": "failing", "detail": t.detail })),
            },
        };
        // The media server: its loop must answer, not only have started.
        let (sfu_ok, sfu) = match &self.sfu {
            Some(s) => match s.stats().await {
                Ok(stats) => (
                    true,
                    json!({ "status": "ok", "sessions": stats.participants }),
                ),
                Err(e) => (
                    false,
                    json!({ "status": "failing", "detail": e.to_string() }),
                ),
            },
            None => match &self.sfu_error {
                Some(e) => (false, json!({ "status": "failing", "detail": e })),
                None => (true, json!({ "status": "disabled" })),
            },
        };
        // An expired certificate fails every visitor; one about to expire is a warning.
        let (tls_ok, tls) = match &cert {
            None => (true, json!({ "status": "off" })),
            Some(cert) => {
                let left = cert.expires_in_secs();
                let status = match left {
                    Some(s) if s <= 0 => "expired",
                    Some(s) if s < crate::tls::EXPIRY_WARN_SECS => "expiring",
                    _ => "ok",
                };
                (
                    status != "expired",
                    json!({
                        "status": status,
                        "self_signed": cert.is_self_signed(),
                        "days_left": left.map(|s| s / 86_400),
                        "fingerprint": cert.fingerprint(),
                    }),
                )
            }
        };
        // Several nodes: Redis must answer, or this node serves its visitors
        // apart from the others'.
        let roster = &self.roster;
        let (cluster_ok, cluster) = match roster.redis_address() {
            None => (true, json!({ "status": "off" })),
            Some(redis) => {
                let others = self.other_nodes();
                let healthy = roster.healthy();
                let mut c = json!({
                    "status": if healthy { "ok" } else { "failing" },
                    "redis": redis,
                    "nodes": others.len() + 1,
                });
                if !healthy {
                    c["detail"] = json!(format!(
                        "Redis at {redis} does not answer: this node's visitors do not see the other nodes'"
                    ));
                }
                (healthy, c)
            }
        };
        let up = store.ok() && relay_ok && sfu_ok && tls_ok && cluster_ok;
        let mut body = json!({
            "status": if up { "ok" } else { "degraded" },
            "version": crate::VERSION,
            "node": self.config.cluster.node_id,
            "store": store.status,
            "relay": relay,
            "sfu": sfu,
            "tls": tls,
            "cluster": cluster,
        });
        if !store.ok() {
            body["store_detail"] = json!(store.detail);
        }
        (up, body)
    }
}

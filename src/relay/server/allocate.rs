//! Allocate: checking quotas and rates, binding a relay port, and starting
//! the allocation's peer-to-client task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use stun::attributes::*;
use stun::error_code::*;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use turn::proto::PROTO_UDP;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::super::allocation::{Allocation, ClientKey, Sink};
use super::{Server, relay_peers, udp_socket};

impl Server {
    pub(super) fn allocate(
        self: &Arc<Self>,
        m: &mut Message,
        client: ClientKey,
        sink: &Sink,
    ) -> Option<Vec<u8>> {
        let auth = match self.authenticate(m, client) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        if let Some(existing) = self.table.get(&client) {
            // A retransmission of the request that made it (its response was
            // lost or outrun): the same success again, as RFC 8656 asks.
            if let Some(reply) = existing.allocate_reply(&m.transaction_id.0) {
                return Some(reply);
            }
            return self.failure(
                m,
                Some(&auth),
                CODE_ALLOC_MISMATCH,
                "allocation already exists",
            );
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(m).is_err() {
            return self.failure(
                m,
                Some(&auth),
                CODE_BAD_REQUEST,
                "REQUESTED-TRANSPORT missing",
            );
        }
        if transport.protocol != PROTO_UDP {
            return self.failure(
                m,
                Some(&auth),
                CODE_UNSUPPORTED_TRANS_PROTO,
                "only UDP relaying",
            );
        }
        if m.contains(ATTR_RESERVATION_TOKEN) {
            return self.failure(
                m,
                Some(&auth),
                CODE_INSUFFICIENT_CAPACITY,
                "port reservations are not offered",
            );
        }
        // EVEN-PORT is honoured; its R bit (reserve the next port too) is not,
        // which RFC 8656 allows: no RESERVATION-TOKEN comes back.
        let even = m.contains(ATTR_EVEN_PORT);
        if self.table.len() >= self.settings.max_allocations {
            self.stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            return self.failure(
                m,
                Some(&auth),
                CODE_INSUFFICIENT_CAPACITY,
                "relay at capacity",
            );
        }
        if self.table.count_user(&auth.user) >= self.settings.max_allocations_per_user {
            self.stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            return self.failure(
                m,
                Some(&auth),
                CODE_ALLOC_QUOTA_REACHED,
                "allocation quota reached",
            );
        }
        // Per source address too: credentials are cheap to come by (every new
        // session gets some), an address is not.
        let ip = client.addr.ip();
        if self.table.count_ip(ip) >= self.settings.max_allocations_per_ip {
            self.stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %client.addr, "allocation quota of this address reached");
            return self.failure(
                m,
                Some(&auth),
                CODE_ALLOC_QUOTA_REACHED,
                "allocation quota of this address reached",
            );
        }
        if !self.allocation_rate.take(&ip, Instant::now()) {
            self.stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            return self.failure(
                m,
                Some(&auth),
                CODE_INSUFFICIENT_CAPACITY,
                "too many new allocations from this address; retry shortly",
            );
        }
        let socket = match self.bind_relay_socket(even) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "no relay port available");
                return self.failure(
                    m,
                    Some(&auth),
                    CODE_INSUFFICIENT_CAPACITY,
                    "no relay port available",
                );
            }
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let relayed = SocketAddr::new(self.settings.public_ip, port);
        let lifetime = self.lifetime(m);
        let alloc = Arc::new(Allocation::new(
            client,
            auth.user.clone(),
            relayed,
            socket,
            sink.clone(),
            lifetime,
            self.settings.bandwidth_bytes_per_sec,
        ));
        let reply = self.success(
            m,
            &auth,
            vec![
                Box::new(RelayedAddress {
                    ip: relayed.ip(),
                    port: relayed.port(),
                }),
                Box::new(XorMappedAddress {
                    ip: client.addr.ip(),
                    port: client.addr.port(),
                }),
                Box::new(Lifetime(lifetime)),
            ],
        );
        if let Some(reply) = &reply {
            alloc.remember_allocate(m.transaction_id.0, reply.clone());
        }
        self.table.insert(alloc.clone());
        self.stats.allocations_total.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay_peers(self.clone(), alloc));
        tracing::debug!(client = %client.addr, %relayed, user = %auth.user, "allocation created");
        reply
    }

    /// A UDP socket on a free port of the relay range, with large buffers.
    fn bind_relay_socket(&self, even: bool) -> std::io::Result<UdpSocket> {
        use rand::Rng;
        let (min, max) = (self.settings.port_min, self.settings.port_max);
        let span = u32::from(max - min) + 1;
        let start = rand::rng().random_range(0..span);
        let attempts = span.min(64);
        let mut last_err = std::io::Error::other("relay port range exhausted");
        for i in 0..attempts {
            let mut port = min as u32 + (start + i * 7919) % span;
            if even && port % 2 == 1 {
                port = if port < max as u32 {
                    port + 1
                } else {
                    port - 1
                };
            }
            let addr = SocketAddr::new(self.settings.relay_bind_ip, port as u16);
            match udp_socket(addr) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }
}

//! Allocations: a client's relayed address, its permissions and channels.
//!
//! The table is keyed by the client's transport address (UDP source, or TCP
//! connection). The data path reads it under a shared lock and never awaits:
//! every send is non-blocking (`net::send_now`), so one slow peer cannot stall
//! the receive loop that serves everyone.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// RFC 8656: permissions last 5 minutes, channel bindings 10.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Identifies a client: its transport and address as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// How to reach a client.
#[derive(Clone)]
pub enum Sink {
    Udp(Arc<UdpSocket>),
    /// Frames for the TCP or TLS connection's writer task (already framed).
    Tcp(mpsc::Sender<Vec<u8>>),
}

impl Sink {
    /// Sends without waiting; a full buffer drops the packet (UDP semantics).
    pub fn send(&self, to: SocketAddr, frame: Vec<u8>) -> bool {
        match self {
            Sink::Udp(sock) => crate::net::send_now(sock, &frame, to).is_ok(),
            Sink::Tcp(tx) => tx.try_send(frame).is_ok(),
        }
    }
}

#[derive(Default)]
struct Bindings {
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
    by_peer: HashMap<SocketAddr, u16>,
}

/// Token bucket on bytes, both directions together.
struct Bandwidth {
    rate: f64,
    tokens: f64,
    last: Instant,
}

pub struct Allocation {
    pub client: ClientKey,
    /// The user id of the REST credentials that made it.
    pub user: String,
    pub relayed: SocketAddr,
    pub socket: Arc<UdpSocket>,
    pub sink: Sink,
    pub created: Instant,
    expires: Mutex<Instant>,
    bindings: RwLock<Bindings>,
    bandwidth: Option<Mutex<Bandwidth>>,
    pub bytes_to_peers: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub stop: CancellationToken,
    /// Transaction id and response of the Allocate that made it, for retransmissions.
    allocate: Mutex<Option<([u8; 12], Vec<u8>)>>,
}

impl Allocation {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: ClientKey,
        user: String,
        relayed: SocketAddr,
        socket: Arc<UdpSocket>,
        sink: Sink,
        lifetime: Duration,
        bandwidth_bytes_per_sec: u64,
    ) -> Self {
        let now = Instant::now();
        Self {
            client,
            user,
            relayed,
            socket,
            sink,
            created: now,
            expires: Mutex::new(now + lifetime),
            bindings: RwLock::new(Bindings::default()),
            bandwidth: (bandwidth_bytes_per_sec > 0).then(|| {
                // One second of burst.
                Mutex::new(Bandwidth {
                    rate: bandwidth_bytes_per_sec as f64,
                    tokens: bandwidth_bytes_per_sec as f64,
                    last: now,
                })
            }),
            bytes_to_peers: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
            stop: CancellationToken::new(),
            allocate: Mutex::new(None),
        }
    }

    pub fn remember_allocate(&self, transaction: [u8; 12], reply: Vec<u8>) {
        *self.allocate.lock() = Some((transaction, reply));
    }

    /// The response to resend when `transaction` is the Allocate that made this.
    pub fn allocate_reply(&self, transaction: &[u8; 12]) -> Option<Vec<u8>> {
        match &*self.allocate.lock() {
            Some((id, reply)) if id == transaction => Some(reply.clone()),
            _ => None,
        }
    }

    pub fn refresh(&self, lifetime: Duration) {
        *self.expires.lock() = Instant::now() + lifetime;
    }

    pub fn expired(&self, now: Instant) -> bool {
        *self.expires.lock() <= now
    }

    pub fn permit(&self, ip: IpAddr) {
        self.bindings
            .write()
            .permissions
            .insert(ip, Instant::now() + PERMISSION_LIFETIME);
    }

    pub fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.bindings
            .read()
            .permissions
            .get(&ip)
            .is_some_and(|until| *until > now)
    }

    /// Binds `number` to `peer` (or refreshes the binding). Fails when either is
    /// already bound to something else (RFC 8656 section 12.2).
    pub fn bind_channel(&self, number: u16, peer: SocketAddr) -> bool {
        let mut b = self.bindings.write();
        let now = Instant::now();
        match (b.channels.get(&number), b.by_peer.get(&peer)) {
            (Some((bound, _)), _) if *bound != peer => return false,
            (_, Some(n)) if *n != number => return false,
            _ => {}
        }
        b.channels.insert(number, (peer, now + CHANNEL_LIFETIME));
        b.by_peer.insert(peer, number);
        b.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        true
    }

    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.bindings
            .read()
            .channels
            .get(&number)
            .filter(|(_, until)| *until > now)
            .map(|(peer, _)| *peer)
    }

    pub fn channel_of(&self, peer: SocketAddr) -> Option<u16> {
        self.bindings.read().by_peer.get(&peer).copied()
    }

    /// Drops expired permissions and channels.
    pub fn sweep(&self, now: Instant) {
        let mut b = self.bindings.write();
        b.permissions.retain(|_, until| *until > now);
        let expired: Vec<(u16, SocketAddr)> = b
            .channels
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(n, (p, _))| (*n, *p))
            .collect();
        for (n, p) in expired {
            b.channels.remove(&n);
            b.by_peer.remove(&p);
        }
    }

    /// Charges `bytes` to the bandwidth quota; false when over it.
    pub fn charge(&self, bytes: usize) -> bool {
        let Some(bw) = &self.bandwidth else {
            return true;
        };
        let mut bw = bw.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bw.last).as_secs_f64();
        bw.last = now;
        bw.tokens = (bw.tokens + elapsed * bw.rate).min(bw.rate);
        if bw.tokens >= bytes as f64 {
            bw.tokens -= bytes as f64;
            true
        } else {
            self.packets_dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// What the admin page shows of an allocation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllocationInfo {
    pub user: String,
    pub transport: &'static str,
    pub client: String,
    pub relayed: String,
    pub bytes_to_peers: u64,
    pub bytes_to_client: u64,
    pub age_secs: u64,
    pub permissions: usize,
    pub channels: usize,
}

#[derive(Default)]
pub struct Table {
    by_client: RwLock<HashMap<ClientKey, Arc<Allocation>>>,
}

impl Table {
    pub fn get(&self, key: &ClientKey) -> Option<Arc<Allocation>> {
        self.by_client.read().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_client.read().len()
    }

    pub fn count_user(&self, user: &str) -> usize {
        self.by_client
            .read()
            .values()
            .filter(|a| a.user == user)
            .count()
    }

    /// Allocations open now from the client address `ip` (any port, any transport).
    pub fn count_ip(&self, ip: IpAddr) -> usize {
        self.by_client
            .read()
            .values()
            .filter(|a| a.client.addr.ip() == ip)
            .count()
    }

    pub fn insert(&self, alloc: Arc<Allocation>) {
        self.by_client.write().insert(alloc.client, alloc);
    }

    pub fn remove(&self, key: &ClientKey) -> Option<Arc<Allocation>> {
        let removed = self.by_client.write().remove(key);
        if let Some(a) = &removed {
            a.stop.cancel();
        }
        removed
    }

    /// Removes every allocation of a TCP connection that closed.
    pub fn remove_client(&self, key: &ClientKey) {
        self.remove(key);
    }

    /// Removes expired allocations and bindings; returns how many allocations went.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<ClientKey> = {
            let table = self.by_client.read();
            for a in table.values() {
                a.sweep(now);
            }
            table
                .values()
                .filter(|a| a.expired(now))
                .map(|a| a.client)
                .collect()
        };
        for key in &expired {
            self.remove(key);
        }
        expired.len()
    }

    /// Removes every allocation of `user`.
    pub fn remove_user(&self, user: &str) {
        let keys: Vec<ClientKey> = self
            .by_client
            .read()
            .values()
            .filter(|a| a.user == user)
            .map(|a| a.client)
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    pub fn clear(&self) {
        let all: Vec<ClientKey> = self.by_client.read().keys().copied().collect();
        for key in all {
            self.remove(&key);
        }
    }

    pub fn infos(&self) -> Vec<AllocationInfo> {
        let now = Instant::now();
        self.by_client
            .read()
            .values()
            .map(|a| {
                let b = a.bindings.read();
                AllocationInfo {
                    user: a.user.clone(),
                    transport: a.client.transport.as_str(),
                    client: a.client.addr.to_string(),
                    relayed: a.relayed.to_string(),
                    bytes_to_peers: a.bytes_to_peers.load(Ordering::Relaxed),
                    bytes_to_client: a.bytes_to_client.load(Ordering::Relaxed),
                    age_secs: now.saturating_duration_since(a.created).as_secs(),
                    permissions: b.permissions.len(),
                    channels: b.channels.len(),
                }
            })
            .collect()
    }
}

//! The STUN/TURN server loop: our own, on the `stun` crate's message codec and
//! the `turn` crate's attribute types (see `docs/relay.md` for why).
//!
//! `handle` takes one packet (UDP datagram or TCP frame) from a client and
//! returns the reply, if any. The data path (ChannelData, Send indications,
//! and the per-allocation tasks that carry peer traffic back) never awaits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use turn::proto::channum::{MAX_CHANNEL_NUMBER, MIN_CHANNEL_NUMBER};
use turn::proto::lifetime::Lifetime;

use super::allocation::{Allocation, ClientKey, Sink, Table};
use super::auth::{Credentials, unix_now};
use super::policy::PeerPolicy;
use crate::limit::{Buckets, Counts, Held};

mod allocate;
mod data;

pub use data::is_channel_data;
use data::relay_peers;

const SOFTWARE: &str = concat!("noom ", env!("CARGO_PKG_VERSION"));
/// Seconds' worth of unauthenticated requests one source may send at once
/// (many clients behind one NAT joining together).
const LIMITER_BURST_SECS: f64 = 3.0;
/// Seconds' worth of new allocations one source address may make at once
/// (a household behind one NAT joining a call together).
const ALLOCATION_BURST_SECS: f64 = 5.0;
/// Most sources tracked for rate limiting at once.
const LIMITER_SOURCES_MAX: usize = 65_536;

/// Counters exported in `/metrics`.
#[derive(Default)]
pub struct RelayStats {
    pub allocations_total: AtomicU64,
    pub packets_relayed: AtomicU64,
    pub bytes_relayed: AtomicU64,
    pub auth_failures: AtomicU64,
    pub forbidden_peers: AtomicU64,
    pub quota_refusals: AtomicU64,
    pub unauthenticated_dropped: AtomicU64,
    pub binding_requests: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// Settings the server loop needs, resolved from the configuration.
pub struct Settings {
    pub public_ip: IpAddr,
    pub relay_bind_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub max_lifetime: Duration,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    /// Allocations open at once from one client IP address.
    pub max_allocations_per_ip: usize,
    /// New allocations per second from one client IP address.
    pub allocations_per_ip_per_sec: f64,
    /// How long a TCP/TLS connection may stay without an allocation.
    pub tcp_idle: Duration,
    pub bandwidth_bytes_per_sec: u64,
    pub unauthenticated_per_sec: f64,
}

pub struct Server {
    pub settings: Settings,
    pub creds: Credentials,
    pub policy: PeerPolicy,
    pub table: Table,
    pub stats: RelayStats,
    /// Unauthenticated requests per source address.
    limiter: Buckets<IpAddr>,
    /// New allocations per source address.
    allocation_rate: Buckets<IpAddr>,
    /// TCP and TLS connections open per source address (each allocation over
    /// TCP needs one, so as many as allocations are allowed).
    streams: Arc<Counts<IpAddr>>,
}

/// A request that passed authentication.
struct Authed {
    user: String,
    key: MessageIntegrity,
}

fn build(txid: TransactionId, typ: MessageType, setters: Vec<Box<dyn Setter>>) -> Vec<u8> {
    let mut all: Vec<Box<dyn Setter>> = vec![
        Box::new(Message {
            transaction_id: txid,
            ..Default::default()
        }),
        Box::new(typ),
        Box::new(TextAttribute::new(ATTR_SOFTWARE, SOFTWARE.into())),
    ];
    all.extend(setters);
    let mut m = Message::new();
    match m.build(&all) {
        Ok(()) => m.raw,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a STUN reply");
            Vec::new()
        }
    }
}

fn error_attr(code: ErrorCode, reason: &str) -> Box<dyn Setter> {
    Box::new(ErrorCodeAttribute {
        code,
        reason: reason.as_bytes().to_vec(),
    })
}

/// Decodes every XOR-PEER-ADDRESS of `m` (CreatePermission may carry several).
fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for attr in m
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
    {
        let mut single = Message::new();
        single.transaction_id = m.transaction_id;
        single.add(ATTR_XOR_PEER_ADDRESS, &attr.value);
        let mut addr = XorMappedAddress::default();
        addr.get_from_as(&single, ATTR_XOR_PEER_ADDRESS).ok()?;
        out.push(SocketAddr::new(addr.ip, addr.port));
    }
    Some(out)
}

impl Server {
    pub fn new(settings: Settings, creds: Credentials, policy: PeerPolicy) -> Self {
        Self {
            creds,
            policy,
            table: Table::default(),
            stats: RelayStats::default(),
            limiter: Buckets::new(
                settings.unauthenticated_per_sec,
                settings.unauthenticated_per_sec * LIMITER_BURST_SECS,
                LIMITER_SOURCES_MAX,
            ),
            allocation_rate: Buckets::new(
                settings.allocations_per_ip_per_sec,
                settings.allocations_per_ip_per_sec * ALLOCATION_BURST_SECS,
                LIMITER_SOURCES_MAX,
            ),
            streams: Counts::new(settings.max_allocations_per_ip),
            settings,
        }
    }

    /// Handles one packet from `client`; returns the reply to send back.
    pub fn handle(
        self: &Arc<Self>,
        packet: &[u8],
        client: ClientKey,
        sink: &Sink,
    ) -> Option<Vec<u8>> {
        if is_channel_data(packet) {
            self.channel_data(packet, client);
            return None;
        }
        if !is_message(packet) {
            return None;
        }
        let mut m = Message::new();
        // The codec is third-party: a panic on hostile input must not take the
        // receive loop (and every other client) down with it.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.raw = packet.to_vec();
            m.decode().is_ok()
        }));
        if !matches!(decoded, Ok(true)) {
            return None;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.dispatch(&mut m, client, sink)
        }));
        outcome.unwrap_or_else(|_| {
            tracing::warn!(client = %client.addr, "a STUN message made the codec panic; dropped");
            None
        })
    }

    fn dispatch(
        self: &Arc<Self>,
        m: &mut Message,
        client: ClientKey,
        sink: &Sink,
    ) -> Option<Vec<u8>> {
        let class = m.typ.class;
        let method = m.typ.method;
        if class == CLASS_INDICATION {
            if method == METHOD_SEND {
                self.send_indication(m, client);
            }
            return None;
        }
        if class != CLASS_REQUEST {
            return None;
        }
        match method {
            METHOD_BINDING => {
                // Answering a Binding costs no more than refusing it; the
                // unauthenticated limiter still bounds how fast one source is served.
                if !self.admit_unauthenticated(client.addr.ip()) {
                    return None;
                }
                self.stats.binding_requests.fetch_add(1, Ordering::Relaxed);
                Some(build(
                    m.transaction_id,
                    BINDING_SUCCESS,
                    vec![
                        Box::new(XorMappedAddress {
                            ip: client.addr.ip(),
                            port: client.addr.port(),
                        }),
                        Box::new(FINGERPRINT),
                    ],
                ))
            }
            METHOD_ALLOCATE => self.allocate(m, client, sink),
            METHOD_REFRESH => self.refresh(m, client),
            METHOD_CREATE_PERMISSION => self.create_permission(m, client),
            METHOD_CHANNEL_BIND => self.channel_bind(m, client),
            _ => Some(build(
                m.transaction_id,
                MessageType::new(method, CLASS_ERROR_RESPONSE),
                vec![error_attr(CODE_BAD_REQUEST, "unsupported method")],
            )),
        }
    }

    /// Counts a new TCP/TLS connection from `from`; `None` (the caller closes
    /// it) when its address has as many open as it may have allocations.
    pub fn admit_stream(&self, from: SocketAddr) -> Option<Held<IpAddr>> {
        let held = self.streams.take(crate::net::canonical(from.ip()));
        if held.is_none() {
            self.stats.quota_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, "TURN connection refused: too many open from this address");
        }
        held
    }

    /// Token bucket per source address for requests that are not (yet)
    /// authenticated; the table of sources is bounded.
    fn admit_unauthenticated(&self, ip: IpAddr) -> bool {
        let admitted = self.limiter.take(&ip, Instant::now());
        if !admitted {
            self.stats
                .unauthenticated_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Forgets limiter entries that are full again (nothing to remember).
    pub fn sweep_limiter(&self) {
        let now = Instant::now();
        self.limiter.sweep(now);
        self.allocation_rate.sweep(now);
    }

    fn challenge(&self, m: &Message, client: ClientKey, code: ErrorCode) -> Option<Vec<u8>> {
        Some(build(
            m.transaction_id,
            MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE),
            vec![
                error_attr(
                    code,
                    if code == CODE_STALE_NONCE {
                        "Stale Nonce"
                    } else {
                        "Unauthorized"
                    },
                ),
                Box::new(TextAttribute::new(
                    ATTR_NONCE,
                    self.creds.nonce(client.addr.ip(), unix_now()),
                )),
                Box::new(TextAttribute::new(ATTR_REALM, self.creds.realm.clone())),
            ],
        ))
    }

    /// Long-term credential check (RFC 8489 section 9.2). `Err` holds the reply.
    fn refuse(&self, m: &Message, client: ClientKey, code: ErrorCode) -> Option<Vec<u8>> {
        self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
        if self.admit_unauthenticated(client.addr.ip()) {
            self.challenge(m, client, code)
        } else {
            None
        }
    }

    fn authenticate(&self, m: &mut Message, client: ClientKey) -> Result<Authed, Option<Vec<u8>>> {
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            // The normal first round trip of every client: not a failure.
            return Err(if self.admit_unauthenticated(client.addr.ip()) {
                self.challenge(m, client, CODE_UNAUTHORIZED)
            } else {
                None
            });
        }
        let (Ok(nonce), Ok(realm), Ok(username)) = (
            TextAttribute::get_from_as(m, ATTR_NONCE),
            TextAttribute::get_from_as(m, ATTR_REALM),
            TextAttribute::get_from_as(m, ATTR_USERNAME),
        ) else {
            self.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(Some(build(
                m.transaction_id,
                MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE),
                vec![error_attr(
                    CODE_BAD_REQUEST,
                    "missing NONCE, REALM or USERNAME",
                )],
            )));
        };
        let now = unix_now();
        if !self.creds.nonce_fresh(&nonce.text, client.addr.ip(), now) {
            return Err(self.refuse(m, client, CODE_STALE_NONCE));
        }
        if realm.text != self.creds.realm {
            return Err(self.refuse(m, client, CODE_UNAUTHORIZED));
        }
        let Ok((password, user)) = self.creds.check_username(&username.text, now) else {
            return Err(self.refuse(m, client, CODE_UNAUTHORIZED));
        };
        let key = MessageIntegrity::new_long_term_integrity(
            username.text.clone(),
            realm.text.clone(),
            password,
        );
        if key.check(m).is_err() {
            return Err(self.refuse(m, client, CODE_UNAUTHORIZED));
        }
        Ok(Authed {
            user: user.to_string(),
            key,
        })
    }

    fn success(
        &self,
        m: &Message,
        auth: &Authed,
        mut setters: Vec<Box<dyn Setter>>,
    ) -> Option<Vec<u8>> {
        setters.push(Box::new(auth.key.clone()));
        setters.push(Box::new(FINGERPRINT));
        Some(build(
            m.transaction_id,
            MessageType::new(m.typ.method, CLASS_SUCCESS_RESPONSE),
            setters,
        ))
    }

    fn failure(
        &self,
        m: &Message,
        auth: Option<&Authed>,
        code: ErrorCode,
        reason: &str,
    ) -> Option<Vec<u8>> {
        let mut setters = vec![error_attr(code, reason)];
        if let Some(auth) = auth {
            setters.push(Box::new(auth.key.clone()));
        }
        Some(build(
            m.transaction_id,
            MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE),
            setters,
        ))
    }

    /// The allocation of `client`, if it was made with the same credentials.
    fn owned(
        &self,
        m: &Message,
        client: ClientKey,
        auth: &Authed,
    ) -> Result<Arc<Allocation>, Option<Vec<u8>>> {
        match self.table.get(&client) {
            None => Err(self.failure(m, Some(auth), CODE_ALLOC_MISMATCH, "no allocation")),
            Some(a) if a.user != auth.user => Err(self.failure(
                m,
                Some(auth),
                CODE_WRONG_CREDENTIALS,
                "allocation belongs to another user",
            )),
            Some(a) => Ok(a),
        }
    }

    /// Authenticates a request on an existing allocation and finds it.
    fn authed_allocation(
        &self,
        m: &mut Message,
        client: ClientKey,
    ) -> Result<(Authed, Arc<Allocation>), Option<Vec<u8>>> {
        let auth = self.authenticate(m, client)?;
        let alloc = self.owned(m, client, &auth)?;
        Ok((auth, alloc))
    }

    fn lifetime(&self, m: &Message) -> Duration {
        let mut requested = Lifetime::default();
        match requested.get_from(m) {
            Ok(()) => requested.0.min(self.settings.max_lifetime),
            Err(_) => self.settings.max_lifetime.min(Duration::from_secs(600)),
        }
    }

    fn refresh(&self, m: &mut Message, client: ClientKey) -> Option<Vec<u8>> {
        let (auth, alloc) = match self.authed_allocation(m, client) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let lifetime = self.lifetime(m);
        if lifetime.is_zero() {
            self.table.remove(&client);
        } else {
            alloc.refresh(lifetime);
        }
        self.success(m, &auth, vec![Box::new(Lifetime(lifetime))])
    }

    fn create_permission(&self, m: &mut Message, client: ClientKey) -> Option<Vec<u8>> {
        let (auth, alloc) = match self.authed_allocation(m, client) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let peers = match peer_addresses(m) {
            Some(p) if !p.is_empty() => p,
            _ => {
                return self.failure(
                    m,
                    Some(&auth),
                    CODE_BAD_REQUEST,
                    "XOR-PEER-ADDRESS missing or malformed",
                );
            }
        };
        if let Some(refused) = peers.iter().find(|p| !self.policy.permits(**p)) {
            self.stats.forbidden_peers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %client.addr, peer = %refused, "peer refused by policy");
            return self.failure(m, Some(&auth), CODE_FORBIDDEN, "peer address not allowed");
        }
        for p in peers {
            alloc.permit(p.ip());
        }
        self.success(m, &auth, vec![])
    }

    fn channel_bind(&self, m: &mut Message, client: ClientKey) -> Option<Vec<u8>> {
        let (auth, alloc) = match self.authed_allocation(m, client) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        let mut number = turn::proto::channum::ChannelNumber::default();
        let peer = peer_addresses(m).and_then(|p| p.first().copied());
        let (true, Some(peer)) = (number.get_from(m).is_ok(), peer) else {
            return self.failure(
                m,
                Some(&auth),
                CODE_BAD_REQUEST,
                "CHANNEL-NUMBER or XOR-PEER-ADDRESS missing",
            );
        };
        if !(MIN_CHANNEL_NUMBER..=MAX_CHANNEL_NUMBER).contains(&number.0) {
            return self.failure(
                m,
                Some(&auth),
                CODE_BAD_REQUEST,
                "channel number out of range",
            );
        }
        if !self.policy.permits(peer) {
            self.stats.forbidden_peers.fetch_add(1, Ordering::Relaxed);
            return self.failure(m, Some(&auth), CODE_FORBIDDEN, "peer address not allowed");
        }
        if !alloc.bind_channel(number.0, peer) {
            return self.failure(
                m,
                Some(&auth),
                CODE_BAD_REQUEST,
                "channel or peer already bound",
            );
        }
        self.success(m, &auth, vec![])
    }
}

/// A non-blocking UDP socket with buffers sized for relaying bursts.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(1 << 20);
    let _ = socket.set_send_buffer_size(1 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

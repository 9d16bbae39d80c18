//! The data path: client to peer (ChannelData, Send indications) and peer to
//! client (one task per allocation), with framing. Nothing here awaits on a
//! client's behalf: a packet that cannot go now is dropped and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use stun::agent::TransactionId;
use stun::message::{CLASS_INDICATION, Getter, METHOD_DATA, Message, MessageType};
use turn::proto::data::Data;

use super::super::allocation::{Allocation, ClientKey, Sink, Transport};
use super::{Server, build, peer_addresses};

/// ChannelData framing; over TCP the frame is padded to a multiple of 4.
pub fn channel_frame(number: u16, payload: &[u8], transport: Transport) -> Vec<u8> {
    let pad = match transport {
        Transport::Tcp | Transport::Tls => (4 - payload.len() % 4) % 4,
        Transport::Udp => 0,
    };
    let mut frame = Vec::with_capacity(4 + payload.len() + pad);
    frame.extend_from_slice(&number.to_be_bytes());
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.resize(frame.len() + pad, 0);
    frame
}

pub fn is_channel_data(b: &[u8]) -> bool {
    b.len() >= 4 && (b[0] & 0xC0) == 0x40
}

impl Server {
    pub(super) fn send_indication(&self, m: &Message, client: ClientKey) {
        let Some(alloc) = self.table.get(&client) else {
            return;
        };
        let mut data = Data::default();
        let (Some(peer), true) = (
            peer_addresses(m).and_then(|p| p.first().copied()),
            data.get_from(m).is_ok(),
        ) else {
            return;
        };
        // Permissions are per IP; the policy may still refuse this port
        // (the server's own address outside the relay ports).
        if alloc.permitted(peer.ip(), Instant::now()) && self.policy.permits(peer) {
            self.to_peer(&alloc, &data.0, peer);
        }
    }

    pub(super) fn channel_data(&self, packet: &[u8], client: ClientKey) {
        let number = u16::from_be_bytes([packet[0], packet[1]]);
        let len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
        let Some(payload) = packet.get(4..4 + len) else {
            return;
        };
        let Some(alloc) = self.table.get(&client) else {
            return;
        };
        if let Some(peer) = alloc.channel_peer(number, Instant::now()) {
            self.to_peer(&alloc, payload, peer);
        }
    }

    fn to_peer(&self, alloc: &Allocation, payload: &[u8], peer: SocketAddr) {
        if !alloc.charge(payload.len()) {
            return;
        }
        if crate::net::send_now(&alloc.socket, payload, peer).is_ok() {
            alloc
                .bytes_to_peers
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            self.stats.packets_relayed.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_relayed
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
        } else {
            alloc.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Packets handled per wake-up before yielding to other tasks.
const BURST: usize = 64;

/// Carries traffic from peers to the client, for one allocation. Each packet
/// is read 4 bytes into the buffer, so a ChannelData frame is built in place
/// (no copy, no allocation) and sent straight to a UDP client; after each
/// wake-up the socket is drained without waiting.
pub(super) async fn relay_peers(server: Arc<Server>, alloc: Arc<Allocation>) {
    let mut buf = vec![0u8; 4 + 65_536];
    loop {
        let first = tokio::select! {
            r = alloc.socket.recv_from(&mut buf[4..]) => r,
            _ = alloc.stop.cancelled() => break,
        };
        let mut next = first.ok();
        let mut handled = 0;
        while let Some((n, peer)) = next {
            forward_to_client(&server, &alloc, &mut buf, n, peer);
            handled += 1;
            next = if handled < BURST {
                alloc.socket.try_recv_from(&mut buf[4..]).ok()
            } else {
                None
            };
        }
    }
}

fn forward_to_client(
    server: &Server,
    alloc: &Allocation,
    buf: &mut [u8],
    n: usize,
    peer: SocketAddr,
) {
    if !alloc.permitted(peer.ip(), Instant::now()) || !alloc.charge(n) {
        return;
    }
    let sent = match alloc.channel_of(peer) {
        Some(number) => {
            buf[0..2].copy_from_slice(&number.to_be_bytes());
            buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            match &alloc.sink {
                Sink::Udp(sock) => {
                    crate::net::send_now(sock, &buf[..4 + n], alloc.client.addr).is_ok()
                }
                Sink::Tcp(_) => alloc.sink.send(
                    alloc.client.addr,
                    channel_frame(number, &buf[4..4 + n], alloc.client.transport),
                ),
            }
        }
        None => {
            let mut txid = TransactionId::default();
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut txid.0);
            let indication = build(
                txid,
                MessageType::new(METHOD_DATA, CLASS_INDICATION),
                vec![
                    Box::new(turn::proto::peeraddr::PeerAddress {
                        ip: peer.ip(),
                        port: peer.port(),
                    }),
                    Box::new(Data(buf[4..4 + n].to_vec())),
                ],
            );
            alloc.sink.send(alloc.client.addr, indication)
        }
    };
    if sent {
        alloc.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
        server.stats.packets_relayed.fetch_add(1, Ordering::Relaxed);
        server
            .stats
            .bytes_relayed
            .fetch_add(n as u64, Ordering::Relaxed);
    } else {
        alloc.packets_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

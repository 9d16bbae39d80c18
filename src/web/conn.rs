//! What every accepted HTTP(S) connection is held to, below HTTP and TLS.
//!
//! - [`Gate`]: at most `server.connections_per_ip` connections at once from
//!   one source address (trusted reverse proxies are exempt: many clients
//!   share their address). A household behind one NAT never comes near the
//!   default; one visitor opening thousands of sockets does.
//! - [`Guarded`]: the connection's socket, with a bounded outgoing buffer.
//!   A write never waits for the client: what the kernel does not take at
//!   once is kept (in bytes, at most `limits.outgoing_max_kib`) and sent by a
//!   task of the connection's own. So the layers above (HTTP, TLS, WebSocket,
//!   the Socket.IO queue) never pile packets up behind a client that does not
//!   read: the unsent data of one connection is bounded in bytes here. A
//!   connection is closed as a slow consumer when its unsent data would pass
//!   that bound, or when it has waited `limits.slow_consumer_secs` on a
//!   client that took less than [`SLOW_CONSUMER_MIN_RATE`] bytes a second of
//!   it. Its reads and writes then fail, the Socket.IO connection on it ends,
//!   and everything queued for it is freed.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limit::{Counts, Held};
use crate::metrics::Metrics;

/// Below this drain rate (bytes per second), a client that lets data wait
/// for the whole grace period is a slow consumer. About 16 kbit/s: slower
/// than any link a call or a chat can use.
pub const SLOW_CONSUMER_MIN_RATE: u64 = 2048;
/// Largest piece the connection's writer hands to the kernel at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// The limits of [`Gate`] and [`Guarded`].
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections at once from one source address.
    pub per_ip: usize,
    /// Sources the limit does not apply to (trusted reverse proxies).
    pub exempt: Vec<IpNet>,
    /// How long outgoing data may wait on a client that drains it slowly.
    pub slow_consumer: Duration,
    /// Most unsent bytes one connection may hold.
    pub outgoing_max: usize,
}

/// Counts open connections per source address.
pub struct Gate {
    limits: ConnLimits,
    open: Arc<Counts<IpAddr>>,
    metrics: Arc<Metrics>,
}

/// One admitted connection; the count goes down when it is dropped
/// (`None` for exempt sources).
pub struct Permit {
    _held: Option<Held<IpAddr>>,
}

impl Gate {
    pub fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Gate> {
        Arc::new(Gate {
            open: Counts::new(limits.per_ip),
            limits,
            metrics,
        })
    }

    /// Admits one more connection from `ip`, or `None` when it has as many
    /// open as it may.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let ip = crate::net::canonical(ip);
        if self.limits.exempt.iter().any(|n| n.contains(&ip)) {
            return Some(Permit { _held: None });
        }
        match self.open.take(ip) {
            Some(held) => Some(Permit { _held: Some(held) }),
            None => {
                Metrics::inc(&self.metrics.connections_refused);
                tracing::debug!(%ip, "refusing a connection: too many open from this address");
                None
            }
        }
    }

    /// Wraps an admitted connection's socket and starts its writer.
    pub fn guard(self: &Arc<Self>, tcp: TcpStream, permit: Permit) -> Guarded {
        let shared = Arc::new(Shared {
            tcp,
            out: Mutex::new(Out::default()),
            wake_writer: Notify::new(),
            closed: AtomicBool::new(false),
            reader: Mutex::new(None),
            outgoing_max: self.limits.outgoing_max,
            metrics: self.metrics.clone(),
            _permit: permit,
        });
        tokio::spawn(write_out(shared.clone(), self.limits.slow_consumer));
        Guarded { shared }
    }
}

/// Data written but not yet taken by the kernel.
#[derive(Default)]
struct Out {
    unsent: VecDeque<u8>,
    /// The upper layer is done writing: send what is left, then shut down.
    shutdown: bool,
    /// The [`Guarded`] end is gone.
    dropped: bool,
}

struct Shared {
    tcp: TcpStream,
    out: Mutex<Out>,
    wake_writer: Notify,
    /// Set once the connection was found to be a slow consumer.
    closed: AtomicBool,
    /// The task waiting to read, woken when the connection is closed.
    reader: Mutex<Option<Waker>>,
    outgoing_max: usize,
    metrics: Arc<Metrics>,
    /// Held until both ends are done: the connection counts until then.
    _permit: Permit,
}

impl Shared {
    /// Closes the connection as a slow consumer.
    fn close_slow(&self, why: &str) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        Metrics::inc(&self.metrics.slow_consumer_disconnects);
        tracing::info!(peer = ?self.tcp.peer_addr().ok(), "closing a connection whose client does not read what it is sent: {why}");
        if let Some(reader) = self.reader.lock().take() {
            reader.wake();
        }
        self.wake_writer.notify_one();
    }
}

fn slow_consumer_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client does not read what it is sent",
    )
}

/// A connection's socket (see the module documentation).
pub struct Guarded {
    shared: Arc<Shared>,
}

impl Guarded {
    /// The socket underneath (addresses, peeking).
    pub fn tcp(&self) -> &TcpStream {
        &self.shared.tcp
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.shared.out.lock().dropped = true;
        self.shared.wake_writer.notify_one();
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.shared;
        loop {
            if shared.closed.load(Ordering::SeqCst) {
                return Poll::Ready(Err(slow_consumer_error()));
            }
            match shared.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut reader = shared.reader.lock();
                    if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *reader = Some(cx.waker().clone());
                    }
                    drop(reader);
                    match shared.tcp.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(slow_consumer_error()));
        }
        let mut out = shared.out.lock();
        let mut rest = buf;
        if out.unsent.is_empty() {
            // The usual case: the kernel takes it all, no copy, no hand-over.
            match shared.tcp.try_write(buf) {
                Ok(n) => rest = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if !rest.is_empty() {
            if out.unsent.len() + rest.len() > shared.outgoing_max {
                drop(out);
                shared.close_slow("its unsent data passed limits.outgoing_max_kib");
                return Poll::Ready(Err(slow_consumer_error()));
            }
            out.unsent.extend(rest);
            drop(out);
            shared.wake_writer.notify_one();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything written is the writer task's to send.
        if self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(slow_consumer_error()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.out.lock().shutdown = true;
        self.shared.wake_writer.notify_one();
        Poll::Ready(Ok(()))
    }
}

/// The connection's writer: sends what the kernel did not take at once,
/// watching that the client takes it fast enough; shuts the socket's
/// sending side down once the upper layer is done and everything is sent.
async fn write_out(shared: Arc<Shared>, grace: Duration) {
    // Grows only for a connection that backs up: idle ones hold no buffer.
    let mut chunk = Vec::new();
    // Start of the current waiting window, and the bytes sent since.
    let mut window: Option<(Instant, u64)> = None;
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        let (finish, done) = {
            let mut out = shared.out.lock();
            chunk.clear();
            let n = out.unsent.len().min(WRITE_CHUNK);
            chunk.extend(out.unsent.drain(..n));
            (out.shutdown, out.dropped)
        };
        if chunk.is_empty() {
            window = None;
            if finish || done {
                break;
            }
            shared.wake_writer.notified().await;
            continue;
        }
        let mut sent = 0;
        while sent < chunk.len() {
            let (since, drained) = *window.get_or_insert((Instant::now(), 0));
            let deadline = since + grace;
            tokio::select! {
                ready = shared.tcp.writable() => {
                    if ready.is_err() {
                        shared.closed.store(true, Ordering::SeqCst);
                        break;
                    }
                    match shared.tcp.try_write(&chunk[sent..]) {
                        Ok(n) => {
                            sent += n;
                            window = Some((since, drained + n as u64));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            shared.closed.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if drained >= SLOW_CONSUMER_MIN_RATE * grace.as_secs().max(1) {
                        // Slow but moving: a new window starts.
                        window = Some((Instant::now(), 0));
                    } else {
                        shared.close_slow("its outgoing data waited limits.slow_consumer_secs");
                        break;
                    }
                }
                // Woken by a write (more data: carry on) or by a close.
                _ = shared.wake_writer.notified() => {
                    if shared.closed.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        // Everything the kernel had to take is out: the window ends.
        if shared.out.lock().unsent.is_empty() {
            window = None;
        }
    }
    let finish = shared.out.lock().shutdown;
    if finish || shared.closed.load(Ordering::SeqCst) {
        let sock = socket2::SockRef::from(&shared.tcp);
        let how = if shared.closed.load(Ordering::SeqCst) {
            std::net::Shutdown::Both
        } else {
            std::net::Shutdown::Write
        };
        let _ = sock.shutdown(how);
    }
}

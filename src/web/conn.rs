//! What every accepted HTTP(S) connection is held to, below HTTP and TLS.
//!
//! - [`Gate`]: at most `server.connections_per_ip` connections at once from
//!   one source address (trusted reverse proxies are exempt: many clients
//!   share their address). A household behind one NAT never comes near the
//!   default; one visitor opening thousands of sockets does.
//! - [`Guarded`]: the connection's socket, which notices a client that does
//!   not read what it is sent. A connection whose outgoing data has waited
//!   on the client for `limits.slow_consumer_secs` while the client took less
//!   than [`SLOW_CONSUMER_MIN_RATE`] bytes a second of it is closed: its
//!   writes fail, so the Socket.IO connection on it ends and the packets queued
//!   for it are freed. Without this, a WebSocket client that never reads (and
//!   keeps the TCP connection open) would pin its whole outgoing queue forever.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// Below this drain rate (bytes per second), a client that lets data wait
/// for the whole grace period is a slow consumer. About 16 kbit/s: slower
/// than any link a call or a chat can use.
pub const SLOW_CONSUMER_MIN_RATE: u64 = 2048;

/// The limits of [`Gate`] and [`Guarded`].
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections at once from one source address.
    pub per_ip: usize,
    /// Sources the limit does not apply to (trusted reverse proxies).
    pub exempt: Vec<IpNet>,
    /// How long outgoing data may wait on a client that drains it slowly.
    pub slow_consumer: Duration,
}

/// Counts open connections per source address.
pub struct Gate {
    limits: ConnLimits,
    open: Mutex<HashMap<IpAddr, usize>>,
    metrics: Arc<Metrics>,
}

/// One admitted connection; the count goes down when it is dropped.
pub struct Permit {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Gate {
    pub fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            open: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Admits one more connection from `ip`, or `None` when it has as many
    /// open as it may.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let ip = canonical(ip);
        if self.limits.exempt.iter().any(|n| n.contains(&ip)) {
            return Some(Permit {
                gate: self.clone(),
                ip: None,
            });
        }
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limits.per_ip {
            drop(open);
            Metrics::inc(&self.metrics.connections_refused);
            tracing::debug!(%ip, "refusing a connection: too many open from this address");
            return None;
        }
        *n += 1;
        Some(Permit {
            gate: self.clone(),
            ip: Some(ip),
        })
    }

    /// Wraps an admitted connection's socket.
    pub fn guard<Io>(self: &Arc<Self>, io: Io, permit: Permit) -> Guarded<Io> {
        Guarded {
            io,
            _permit: permit,
            grace: self.limits.slow_consumer,
            metrics: self.metrics.clone(),
            waiting: None,
            written: 0,
            closed: false,
            reader: None,
        }
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.lock().get(&canonical(ip)).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut open = self.gate.open.lock();
            if let Some(n) = open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

/// IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Outgoing data waiting on the client since a moment, and how much of it
/// the client has taken since.
struct Waiting {
    window_start: Instant,
    written_at_start: u64,
    timer: Pin<Box<Sleep>>,
}

/// A connection's socket that closes itself on a slow consumer (see the
/// module documentation).
pub struct Guarded<Io> {
    io: Io,
    _permit: Permit,
    grace: Duration,
    metrics: Arc<Metrics>,
    /// Set while the last write did not take everything offered.
    waiting: Option<Waiting>,
    /// Bytes written so far.
    written: u64,
    /// Set once the connection was found to be a slow consumer.
    closed: bool,
    /// The task waiting to read, woken when the connection is closed.
    reader: Option<Waker>,
}

impl<Io> Guarded<Io> {
    fn slow_consumer_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client does not read what it is sent",
        )
    }

    /// Notes that a write did not take everything; `Err` when the client has
    /// been draining too slowly for the whole grace period.
    fn note_waiting(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let now = Instant::now();
        let waiting = self.waiting.get_or_insert_with(|| Waiting {
            window_start: now,
            written_at_start: self.written,
            timer: Box::pin(tokio::time::sleep_until(now + self.grace)),
        });
        while waiting.timer.as_mut().poll(cx).is_ready() {
            let drained = self.written - waiting.written_at_start;
            let elapsed = now.saturating_duration_since(waiting.window_start);
            if drained >= SLOW_CONSUMER_MIN_RATE * elapsed.as_secs().max(1) {
                // Slow but moving: a new window starts.
                waiting.window_start = now;
                waiting.written_at_start = self.written;
                waiting.timer.as_mut().reset(now + self.grace);
                continue;
            }
            self.closed = true;
            Metrics::inc(&self.metrics.slow_consumer_disconnects);
            tracing::info!(
                drained,
                secs = elapsed.as_secs(),
                "closing a connection whose client does not read what it is sent"
            );
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
            return Err(Self::slow_consumer_error());
        }
        Ok(())
    }

    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        offered: usize,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                self.written += n as u64;
                if n >= offered {
                    self.waiting = None;
                } else if let Err(e) = self.note_waiting(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.note_waiting(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Err(Self::slow_consumer_error()));
        }
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_pending() {
            this.reader = Some(cx.waker().clone());
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Err(Self::slow_consumer_error()));
        }
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, buf.len(), polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Err(Self::slow_consumer_error()));
        }
        let offered = bufs.iter().map(|b| b.len()).sum();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, offered, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closed {
            return Poll::Ready(Err(Self::slow_consumer_error()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Guarded<tokio::net::TcpStream> {
    /// The socket underneath (addresses, options).
    pub fn tcp(&self) -> &tokio::net::TcpStream {
        &self.io
    }
}

//! The selective forwarding unit: calls too large for a mesh send their
//! media once, to the server, which forwards it to the other participants.
//!
//! One UDP port carries every participant (ICE-lite, DTLS-SRTP), demultiplexed
//! by str0m (`docs/sfu.md` says why str0m). The media loop runs on a thread
//! and runtime of its own, like the relay, so chat load cannot delay media
//! and media cannot delay chat; signaling talks to it over channels
//! ([`Sfu`] is the handle) and hears back through [`SfuEvent`]s. The server
//! never decodes media: it forwards what a participant publishes to the
//! others of the same call.

mod engine;
mod estimate;
mod layers;
mod participant;
mod speakers;
mod stale;

pub use participant::Report;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, oneshot};

/// Longest a signaling request waits for the media loop.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Kernel buffer asked for the media socket, each way.
const SOCKET_BUFFER: usize = 4 << 20;

/// Where the SFU listens and what it tells browsers.
#[derive(Debug, Clone)]
pub struct SfuSettings {
    /// The UDP address to bind (port 0: any free port).
    pub listen: SocketAddr,
    /// The address put in the ICE candidate: the bound port on this IP.
    pub public_ip: IpAddr,
    /// Participants at once, over every call.
    pub max_participants: usize,
    /// Audio streams a call forwards once it has more publishers: its
    /// loudest, plus anyone who spoke in the last seconds.
    pub audio_streams: usize,
}

/// Why the SFU refused something.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("cannot listen on {addr} (udp): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the media server cannot start its thread: {0}")]
    Thread(std::io::Error),
    #[error("the session description was refused: {0}")]
    Sdp(String),
    #[error("no media session `{0}`")]
    NoSession(String),
    #[error("the media server is full ({0} participants)")]
    Full(usize),
    #[error("the media server did not answer in time")]
    Timeout,
    #[error("the media server has stopped")]
    Stopped,
}

/// What the media loop tells signaling.
#[derive(Debug)]
pub enum SfuEvent {
    /// The server offers `participant` a new session description (tracks of
    /// others were added or removed); the answer goes to [`Sfu::answer`].
    Offer {
        participant: String,
        offer: SdpOffer,
    },
    /// The session of `participant` ended (left, timed out, or failed).
    Closed { participant: String },
    /// Who speaks in `call` now, loudest first (empty: nobody).
    Speakers {
        call: String,
        participants: Vec<String>,
    },
}

/// The server's answer to a join, and what it sends from the start.
#[derive(Debug)]
pub struct Joined {
    pub answer: SdpAnswer,
    /// `(mid, publisher label)`: the receive m-lines of the offer that carry
    /// a publisher's track from the start (the answer cannot label them:
    /// their stream ids are the ones the browser's offer left empty).
    pub slots: Vec<(String, String)>,
}

/// What signaling asks of the media loop.
pub(crate) enum Command {
    Join {
        call: String,
        participant: String,
        label: String,
        offer: SdpOffer,
        /// The mid its page shares its screen on.
        screen: Option<String>,
        reply: oneshot::Sender<Result<Joined, SfuError>>,
    },
    Offer {
        participant: String,
        offer: SdpOffer,
        reply: oneshot::Sender<Result<SdpAnswer, SfuError>>,
    },
    Answer {
        participant: String,
        answer: SdpAnswer,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// The tile heights a participant's page shows, per publisher label.
    View {
        participant: String,
        views: Vec<(String, u32)>,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// `from`'s page reconnected as `to`: the same session, a new key
    /// and label.
    Rekey {
        from: String,
        to: String,
        label: String,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Leave {
        participant: String,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    Report {
        reply: oneshot::Sender<Vec<Report>>,
    },
}

/// Counters of the media loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub participants: u64,
    /// Media frames forwarded (one per subscriber).
    pub forwarded: u64,
    /// Datagrams no session accepted (junk, or late packets of a closed session).
    pub unmatched: u64,
    /// Keyframe requests of subscribers passed on to publishers.
    pub keyframe_requests: u64,
    /// Server offers sent to renegotiate a session (tracks came or went).
    pub offers: u64,
    /// Bytes of media forwarded.
    pub forwarded_bytes: u64,
    /// Tracks of others received, over every session (now).
    pub subscriptions: u64,
    /// Simulcast layer switches made for subscribers.
    pub layer_switches: u64,
    /// Audio frames not forwarded: not among a large call's loudest.
    pub audio_held: u64,
    /// Retransmission requests (NACK) from subscribers.
    pub nacks: u64,
}

/// Handle to the running SFU; cheap to share.
pub struct Sfu {
    addr: SocketAddr,
    /// The loop (and its thread) ends when the last handle, so this
    /// sender, is dropped: a drop never waits for it.
    commands: mpsc::UnboundedSender<Command>,
}

impl Sfu {
    /// Binds the UDP port and starts the media loop on its own thread.
    /// Events come out of the returned receiver.
    pub fn start(
        settings: SfuSettings,
    ) -> Result<(Arc<Sfu>, mpsc::UnboundedReceiver<SfuEvent>), SfuError> {
        let socket =
            std::net::UdpSocket::bind(settings.listen).map_err(|source| SfuError::Bind {
                addr: settings.listen,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| SfuError::Bind {
            addr: settings.listen,
            source,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| SfuError::Bind {
                addr: settings.listen,
                source,
            })?;
        // Bursts (a keyframe fanned out to every subscriber) must not
        // overflow the kernel's buffers. Best effort: capped by
        // net.core.rmem_max / wmem_max.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let addr = SocketAddr::new(settings.public_ip, bound.port());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SfuError::Thread)?;
        std::thread::Builder::new()
            .name("noom-sfu".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::UdpSocket::from_std(socket) {
                        Ok(socket) => {
                            engine::Engine::new(socket, addr, &settings, event_tx)
                                .run(command_rx)
                                .await
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the media server cannot use its socket")
                        }
                    }
                })
            })
            .map_err(SfuError::Thread)?;
        tracing::info!(%addr, "media server (SFU) listening");
        Ok((Arc::new(Sfu { addr, commands }), events))
    }

    /// The address browsers send media to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .map_err(|_| SfuError::Stopped)?;
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SfuError::Stopped),
            Err(_) => Err(SfuError::Timeout),
        }
    }

    /// Starts the media session of `participant` in `call` from the
    /// browser's offer; returns the server's answer. A participant that
    /// already has a session gets a new one (the old one ends). `label` is
    /// the stream id the others see on its tracks (who they come from).
    /// `screen` is the mid of the offer's video m-line that carries a shared
    /// screen: the others see it as a track of its own, with the stream id
    /// `label` + `.screen`, once it carries media.
    pub async fn join(
        &self,
        call: &str,
        participant: &str,
        label: &str,
        offer: SdpOffer,
        screen: Option<&str>,
    ) -> Result<Joined, SfuError> {
        let (call, participant, label) =
            (call.to_string(), participant.to_string(), label.to_string());
        let screen = screen.map(str::to_string);
        self.ask(|reply| Command::Join {
            call,
            participant,
            label,
            offer,
            screen,
            reply,
        })
        .await
    }

    /// A new offer from the browser within its session (it added or removed
    /// a track); returns the server's answer.
    pub async fn offer(&self, participant: &str, offer: SdpOffer) -> Result<SdpAnswer, SfuError> {
        let participant = participant.to_string();
        self.ask(|reply| Command::Offer {
            participant,
            offer,
            reply,
        })
        .await
    }

    /// The browser's answer to an [`SfuEvent::Offer`].
    pub async fn answer(&self, participant: &str, answer: SdpAnswer) -> Result<(), SfuError> {
        let participant = participant.to_string();
        self.ask(|reply| Command::Answer {
            participant,
            answer,
            reply,
        })
        .await
    }

    /// The page of `participant` shows each publisher (by label) at most
    /// this tall, in device pixels (0: not shown); the SFU picks the
    /// simulcast layers it sends from that.
    pub async fn view(&self, participant: &str, views: Vec<(String, u32)>) -> Result<(), SfuError> {
        let participant = participant.to_string();
        self.ask(|reply| Command::View {
            participant,
            views,
            reply,
        })
        .await
    }

    /// Every session as the admin room view shows it.
    pub async fn report(&self) -> Result<Vec<Report>, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Report { reply: tx })
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }

    /// The page of `from` reconnected and keeps its session: it is known as
    /// `to` from now on, and the others see its tracks come from `label`.
    pub async fn rekey(&self, from: &str, to: &str, label: &str) -> Result<(), SfuError> {
        let (from, to, label) = (from.to_string(), to.to_string(), label.to_string());
        self.ask(|reply| Command::Rekey {
            from,
            to,
            label,
            reply,
        })
        .await
    }

    /// Ends the session of `participant`, if it has one.
    pub fn leave(&self, participant: &str) {
        let _ = self.commands.send(Command::Leave {
            participant: participant.to_string(),
        });
    }

    /// The loop's counters.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats { reply: tx })
            .map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)
    }
}

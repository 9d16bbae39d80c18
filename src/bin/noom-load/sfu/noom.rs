//! Signaling against Noom: each participant is one Socket.IO connection
//! (`enter_room`, `join_call`, then `media_join` with its offer), answers
//! the server's `media_offer` events with `media_answer` for as long as the
//! run lasts, and asks for its layer of every publisher it sees with
//! `media_view` (an error ack is counted, not fatal: the request is newer
//! than this tool's first runs, and without it the server forwards the mid
//! layer anyway).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use noom::client::{ACK_TIMEOUT, Client, ClientError, Event};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::media::Layer;
use super::peer::{self, PeerHandle, PeerLog};
use super::received::Window;
use crate::{CONNECT_TIMEOUT, Res};

/// What one participant's signaling saw.
#[derive(Debug, Default, Clone)]
pub struct SignalLog {
    pub offers_answered: u64,
    pub views_ok: u64,
    pub views_refused: u64,
    /// Still unacknowledged when the run ended.
    pub views_unanswered: u64,
    /// The first refusal's error code.
    pub view_error: Option<String>,
    pub media_closed: u64,
    pub error: Option<String>,
}

pub struct NoomParticipant {
    pub peer: PeerHandle,
    pub peer_task: tokio::task::JoinHandle<PeerLog>,
    pub signal_task: tokio::task::JoinHandle<SignalLog>,
}

fn ok_or_refused(ack: &Value, what: &str) -> Res<()> {
    if ack.get("ok") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let code = ack
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("malformed_ack");
    Err(format!("{what} refused: {code}").into())
}

/// Connects participant `index`, joins the call of `room` and starts its
/// media session.
pub async fn join(
    url: &str,
    room: &str,
    index: u32,
    layer: Layer,
    window: Arc<Window>,
    stop: CancellationToken,
) -> Res<NoomParticipant> {
    let client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(url, None))
        .await
        .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
    ok_or_refused(
        &client
            .request("enter_room", &[json!(room), json!({ "limit": 1 })])
            .await?,
        "enter_room",
    )?;
    ok_or_refused(
        &client.request("join_call", &[json!(room)]).await?,
        "join_call",
    )?;
    let (peer, peer_task) = peer::spawn(
        std::net::Ipv4Addr::LOCALHOST.into(),
        index,
        window,
        stop.clone(),
    )
    .await?;
    let offer = peer.offer(&format!("load-{index}")).await?;
    let ack = client
        .request(
            "media_join",
            &[json!(room), json!({ "type": "offer", "sdp": offer.sdp })],
        )
        .await?;
    ok_or_refused(&ack, "media_join")?;
    let answer = ack
        .pointer("/answer/sdp")
        .and_then(Value::as_str)
        .ok_or("media_join: no answer in the ack")?;
    peer.accept_answer(answer).await?;
    let signal_task = tokio::spawn(signal(client, room.to_string(), peer.clone(), layer, stop));
    Ok(NoomParticipant {
        peer,
        peer_task,
        signal_task,
    })
}

/// Answers the server's offers and asks for the layer, until `stop`.
async fn signal(
    mut client: Client,
    room: String,
    peer: PeerHandle,
    layer: Layer,
    stop: CancellationToken,
) -> SignalLog {
    let mut log = SignalLog::default();
    let mut viewed: BTreeSet<String> = BTreeSet::new();
    // `media_view` acks, awaited beside the events (a server without the
    // request never acks it: that must not hold up the offers).
    let mut views = FuturesUnordered::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => {
                log.views_unanswered += views.len() as u64;
                break;
            }
            Some(ack) = views.next(), if !views.is_empty() => {
                record_view(&mut log, ack);
                continue;
            }
            event = client.next_event() => match event {
                Some(e) => e,
                None => {
                    log.error.get_or_insert("the Socket.IO connection closed".into());
                    break;
                }
            },
        };
        match event.name.as_str() {
            "media_offer" => {
                match answer(&client, &room, &peer, &event, &mut viewed, layer).await {
                    Ok(view) => {
                        log.offers_answered += 1;
                        if let Some(view) = view {
                            views.push(view);
                        }
                    }
                    Err(e) => {
                        log.error.get_or_insert(e.to_string());
                    }
                }
            }
            "media_closed" => log.media_closed += 1,
            _ => {}
        }
    }
    client.close();
    log
}

type ViewAck = Result<Value, String>;

fn record_view(log: &mut SignalLog, ack: ViewAck) {
    match ack {
        Ok(ack) if ack.get("ok") == Some(&Value::Bool(true)) => log.views_ok += 1,
        Ok(ack) => {
            log.views_refused += 1;
            let code = ack
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("malformed_ack");
            log.view_error.get_or_insert(code.to_string());
        }
        Err(e) => {
            log.views_refused += 1;
            log.view_error.get_or_insert(e);
        }
    }
}

/// Answers one `media_offer`; when it brings publishers not viewed yet,
/// sends `media_view` for all and returns the wait for its ack.
async fn answer(
    client: &Client,
    room: &str,
    peer: &PeerHandle,
    event: &Event,
    viewed: &mut BTreeSet<String>,
    layer: Layer,
) -> Res<Option<impl Future<Output = ViewAck> + use<>>> {
    let sdp = event
        .args
        .get(1)
        .and_then(|d| d.get("sdp"))
        .and_then(Value::as_str)
        .ok_or("media_offer without an sdp")?;
    let answer = peer.accept_offer(sdp).await?;
    ok_or_refused(
        &client
            .request(
                "media_answer",
                &[json!(room), json!({ "type": "answer", "sdp": answer })],
            )
            .await?,
        "media_answer",
    )?;
    // Every stream id the server offers (msid) is a publisher to view.
    let streams: BTreeSet<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "-")
        .map(str::to_string)
        .collect();
    if streams.is_subset(viewed) {
        return Ok(None);
    }
    *viewed = streams;
    let wanted: Vec<Value> = viewed
        .iter()
        .map(|from| json!({ "from": from, "width": layer.width, "height": layer.height }))
        .collect();
    let rx = client.send_with_ack("media_view", &[json!(room), Value::Array(wanted)])?;
    Ok(Some(async move {
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(args)) => Ok(args.into_iter().next().unwrap_or(Value::Null)),
            Ok(Err(_)) => Err("connection closed".to_string()),
            Err(_) => Err(format!("no ack within {ACK_TIMEOUT:?}")),
        }
    }))
}

//! Simulcast through the SFU with synthetic clients: a publisher sends three
//! layers (rids q, h, f, with VP8 key frame headers saying 180, 360 and 720
//! lines); a subscriber gets the middle one by default, and the small one,
//! after a keyframe of it that the SFU asks the publisher for, once its page
//! says the tile is small. On a lossy link the subscriber asks for lost
//! packets again (NACK) and the SFU resends them (RTX). A shared screen is
//! a track of its own, offered once it carries media.

use std::time::Duration;

use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};

use crate::peer::{Peer, answer_offer, join, pump_all, start};

const RIDS: [&str; 3] = ["q", "h", "f"];
const HEIGHTS: [u16; 3] = [180, 360, 720];

/// A VP8-shaped frame of `layer`: a key frame header with the layer's size,
/// or an inter frame; byte 10 says the layer, bytes 11.. the frame number.
fn frame(layer: usize, n: u64, key: bool) -> Vec<u8> {
    let mut f = vec![0u8; 400];
    if key {
        f[..3].copy_from_slice(&[0x10, 0x02, 0x00]);
        f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        f[6..8].copy_from_slice(&(HEIGHTS[layer] * 16 / 9).to_le_bytes());
        f[8..10].copy_from_slice(&HEIGHTS[layer].to_le_bytes());
    } else {
        f[0] = 0x11;
    }
    f[10] = layer as u8;
    f[11..19].copy_from_slice(&n.to_le_bytes());
    f
}

/// Offers one sendonly video m-line in three simulcast layers and joins.
async fn publish(sfu: &noom::sfu::Sfu, peer: &mut Peer) -> Mid {
    let mut api = peer.rtc.sdp_api();
    let mut simulcast = Simulcast::new();
    for rid in RIDS {
        simulcast.add_send_layer(SimulcastLayer::new(rid));
    }
    let mid = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("pub".into()),
        Some("pub-video".into()),
        Some(simulcast),
    );
    let (offer, pending) = api.apply().unwrap();
    let answer = sfu
        .join("room", "pub", "pub", offer, None)
        .await
        .expect("joined")
        .answer;
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    mid
}

/// The SFU and its events (kept: a test may read either).
type Call = (
    std::sync::Arc<noom::sfu::Sfu>,
    tokio::sync::mpsc::UnboundedReceiver<noom::sfu::SfuEvent>,
);

/// A publisher of three layers and a subscriber in one call, connected,
/// the subscriber's offer for the publisher's track answered.
async fn simulcast_call() -> (Call, Peer, Peer, Mid) {
    let (sfu, mut events) = start();
    let mut publisher = Peer::new().await;
    let mut sub = Peer::new().await;
    let video = publish(&sfu, &mut publisher).await;
    join(&sfu, "room", "sub", &mut sub, Direction::RecvOnly).await;
    pump_all(&mut [&mut publisher, &mut sub], Duration::from_millis(500)).await;
    assert!(publisher.connected && sub.connected, "ICE and DTLS up");
    answer_offer(&sfu, &mut events, "sub", &mut [&mut publisher, &mut sub], 1).await;
    ((sfu, events), publisher, sub, video)
}

/// The publisher's next frame on every layer: a key frame every 90 frames,
/// and on every layer the SFU asked one of since the last frame.
fn send_frame(publisher: &mut Peer, mid: Mid, n: u64) {
    let asked: Vec<Option<Rid>> = publisher.keyframe_requests.drain(..).collect();
    let writer = publisher.rtc.writer(mid).expect("a video writer");
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .expect("vp8 negotiated");
    for (layer, rid) in RIDS.iter().enumerate() {
        let key = n.is_multiple_of(90)
            || asked
                .iter()
                .any(|r| *r == Some(Rid::from(*rid)) || r.is_none());
        let Some(writer) = publisher.rtc.writer(mid) else {
            return;
        };
        writer
            .rid(Rid::from(*rid))
            .write(
                pt,
                std::time::Instant::now(),
                MediaTime::new(n * 3000, Frequency::NINETY_KHZ),
                frame(layer, n, key),
            )
            .unwrap();
    }
}

/// `count` frames from number `n` at 30 a second, both peers pumped
/// meanwhile; returns the next frame number.
async fn send_frames(publisher: &mut Peer, sub: &mut Peer, mid: Mid, n: u64, count: u64) -> u64 {
    for i in n..n + count {
        send_frame(publisher, mid, i);
        pump_all(&mut [publisher, sub], Duration::from_millis(33)).await;
    }
    n + count
}

/// The layers of the last `count` frames the subscriber received.
fn last_layers(sub: &Peer, count: usize) -> Vec<u8> {
    let video: Vec<u8> = sub
        .received
        .iter()
        .filter(|(_, d)| d.len() == 400)
        .map(|(_, d)| d[10])
        .collect();
    video[video.len().saturating_sub(count)..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_gets_the_layer_its_tile_needs_and_switches_on_a_keyframe() {
    let ((sfu, _events), mut publisher, mut sub, video) = simulcast_call().await;

    let mut n = 0u64;
    n = send_frames(&mut publisher, &mut sub, video, n, 60).await;
    // Before its page says anything: the middle layer, and only that.
    let got = last_layers(&sub, 20);
    assert!(
        got.len() == 20 && got.iter().all(|l| *l == 1),
        "layers received: {got:?}"
    );

    // Its tile is 100 lines high: the quarter layer (180 lines) fills it.
    let asked_before = sfu.stats().await.unwrap().keyframe_requests;
    // A page naming participants that do not exist changes nothing (and
    // the sizes kept per subscriber stay bounded).
    for round in 0..20 {
        let made_up = (0..100)
            .map(|i| (format!("nobody-{round}-{i}"), 720))
            .collect();
        sfu.view("sub", made_up).await.expect("view taken");
    }
    sfu.view("sub", vec![("pub".into(), 100)])
        .await
        .expect("view taken");
    n = send_frames(&mut publisher, &mut sub, video, n, 60).await;
    let got = last_layers(&sub, 20);
    assert!(got.iter().all(|l| *l == 0), "layers received: {got:?}");
    let stats = sfu.stats().await.unwrap();
    assert!(stats.layer_switches >= 1, "{stats:?}");
    assert!(
        stats.keyframe_requests > asked_before,
        "a keyframe of the new layer was asked for: {stats:?}"
    );

    // A tile of 1080 lines: the top layer, the largest there is.
    sfu.view("sub", vec![("pub".into(), 1080)])
        .await
        .expect("view taken");
    send_frames(&mut publisher, &mut sub, video, n, 60).await;
    let got = last_layers(&sub, 20);
    assert!(got.iter().all(|l| *l == 2), "layers received: {got:?}");
    // The frames come in order across the switches (the picture a switch
    // happens at may come twice: its old layer's copy first, then the new
    // layer's key frame of it).
    let numbers: Vec<u64> = sub
        .received
        .iter()
        .filter(|(_, d)| d.len() == 400)
        .map(|(_, d)| u64::from_le_bytes(d[11..19].try_into().unwrap()))
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] >= w[0]),
        "frame numbers rise: {numbers:?}"
    );
    assert!(
        numbers.len() >= 150,
        "{} of 180 frames arrived",
        numbers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_link_is_down_gets_no_video_and_back_starts_on_a_keyframe() {
    let ((_sfu, _events), mut publisher, mut sub, video) = simulcast_call().await;
    let mut n = send_frames(&mut publisher, &mut sub, video, 0, 45).await;
    assert!(last_layers(&sub, 10).len() == 10, "video flows");

    // The subscriber's link goes down for 3.5 s while the publisher goes on.
    let mut arrived = Vec::new();
    for _ in 0..7 {
        for i in n..n + 15 {
            send_frame(&mut publisher, video, i);
            pump_all(&mut [&mut publisher], Duration::from_millis(33)).await;
        }
        n += 15;
        arrived.push(sub.away(Duration::from_millis(20)).await);
    }
    // The SFU stops sending it video once it has been silent 1.5 s (what
    // it wrote meanwhile would be asked for again when it is back).
    let late: usize = arrived[4..].iter().sum();
    assert_eq!(
        late, 0,
        "video packets per half second while away: {arrived:?}"
    );

    // Back: what was written before the SFU stopped may come again (the
    // subscriber asks for what it missed), nothing of the 2 s after, and
    // the first frame of those sent after its return is a keyframe.
    let before = sub.received.len();
    let (down_at, back_at) = (45, n);
    send_frames(&mut publisher, &mut sub, video, n, 30).await;
    let after: Vec<(u64, bool)> = sub.received[before..]
        .iter()
        .filter(|(_, d)| d.len() == 400)
        .map(|(_, d)| {
            let number = u64::from_le_bytes(d[11..19].try_into().unwrap());
            (number, d[3..6] == [0x9d, 0x01, 0x2a])
        })
        .collect();
    assert!(
        after
            .iter()
            .all(|&(number, _)| number < down_at + 60 || number >= back_at),
        "frames of the time the SFU held video back: {after:?}"
    );
    let fresh = after
        .iter()
        .find(|&&(number, _)| number >= back_at)
        .expect("video again after the return");
    assert!(fresh.1, "a keyframe first: {after:?} (back at {back_at})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_lost_on_the_way_to_a_subscriber_are_resent() {
    let ((sfu, _events), mut publisher, mut sub, video) = simulcast_call().await;
    // One RTP packet in ten never reaches the subscriber.
    sub.drop_every = 10;
    for n in 0..150 {
        send_frame(&mut publisher, video, n);
        pump_all(&mut [&mut publisher, &mut sub], Duration::from_millis(33)).await;
    }
    pump_all(&mut [&mut publisher, &mut sub], Duration::from_millis(500)).await;
    let numbers: std::collections::BTreeSet<u64> = sub
        .received
        .iter()
        .filter(|(_, d)| d.len() == 400)
        .map(|(_, d)| u64::from_le_bytes(d[11..19].try_into().unwrap()))
        .collect();
    let first = *numbers.first().expect("frames arrived");
    let missing: Vec<u64> = (first..150).filter(|n| !numbers.contains(n)).collect();
    // Without retransmission a tenth would be missing.
    assert!(
        missing.len() <= 3,
        "frames missing after {first}: {missing:?}"
    );
    let stats = sfu.stats().await.unwrap();
    assert!(stats.nacks > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_is_offered_once_it_carries_media_as_a_stream_of_its_own() {
    let (sfu, mut events) = start();
    let (mut publisher, mut sub) = (Peer::new().await, Peer::new().await);
    // A page's session: a camera m-line and one for a screen, named at the join.
    let mut api = publisher.rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let screen = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = sfu
        .join("room", "pub", "pub", offer, Some(&screen.to_string()))
        .await
        .expect("joined")
        .answer;
    publisher
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    join(&sfu, "room", "sub", &mut sub, Direction::RecvOnly).await;

    // While nothing is shared, the subscriber is offered the camera only.
    let first = answer_offer(&sfu, &mut events, "sub", &mut [&mut publisher, &mut sub], 1).await;
    assert_eq!(first.matches("m=video").count(), 1, "{first}");
    assert!(
        first.contains("a=msid:pub ") && !first.contains(".screen"),
        "{first}"
    );

    // The first frame of the screen brings its track, as stream `pub.screen`.
    let pt = publisher
        .rtc
        .writer(screen)
        .expect("a writer for the screen")
        .payload_params()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .expect("vp8 negotiated");
    let write = |publisher: &mut Peer, n: u64| {
        let key = n == 0 || !publisher.keyframe_requests.is_empty();
        publisher.keyframe_requests.clear();
        publisher
            .rtc
            .writer(screen)
            .expect("a writer for the screen")
            .write(
                pt,
                std::time::Instant::now(),
                MediaTime::new(n * 6000, Frequency::NINETY_KHZ),
                frame(2, n, key),
            )
            .unwrap();
    };
    write(&mut publisher, 0);
    let second = answer_offer(&sfu, &mut events, "sub", &mut [&mut publisher, &mut sub], 1).await;
    assert_eq!(second.matches("m=video").count(), 2, "{second}");
    assert!(second.contains("a=msid:pub.screen "), "{second}");

    // Then its frames reach the subscriber, starting from a key frame the
    // server asked the publisher for.
    for n in 1..40 {
        write(&mut publisher, n);
        pump_all(&mut [&mut publisher, &mut sub], Duration::from_millis(33)).await;
    }
    let frames: Vec<&Vec<u8>> = sub
        .received
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d.len() == 400)
        .collect();
    assert!(frames.len() >= 20, "{} screen frames arrived", frames.len());
    assert!(
        frames[0][0] & 1 == 0,
        "the first screen frame is a key frame"
    );
}

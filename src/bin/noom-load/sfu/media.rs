//! The synthetic media a participant publishes: what a browser's simulcast
//! VP8 camera and Opus microphone put on the wire, in sizes and rates, with
//! a tag in every frame so a receiver knows who sent it, which layer it is,
//! its number and when it left.
//!
//! The server under test never decodes media, but it does read the VP8
//! headers: str0m depacketises frames, Janus finds keyframes (and their
//! resolution) before it switches a subscriber to a layer. So every frame
//! starts with a real VP8 frame tag, and a keyframe with the keyframe start
//! code and the layer's dimensions.

use std::time::Duration;

/// One simulcast layer.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub rid: &'static str,
    pub bits_per_sec: u32,
    pub width: u16,
    pub height: u16,
}

/// The three layers, lowest first (index = layer number in tags).
pub const LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        bits_per_sec: 150_000,
        width: 320,
        height: 180,
    },
    Layer {
        rid: "h",
        bits_per_sec: 500_000,
        width: 640,
        height: 360,
    },
    Layer {
        rid: "f",
        bits_per_sec: 1_500_000,
        width: 1280,
        height: 720,
    },
];

pub const FPS: u32 = 30;
pub const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / FPS as u64);
/// Opus at 20 ms a packet.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// A keyframe on every layer this often, besides those asked for (PLI/FIR).
pub const KEYFRAME_EVERY_FRAMES: u64 = 3 * FPS as u64;
/// A keyframe is this many times the size of an ordinary frame.
const KEYFRAME_FACTOR: usize = 3;

/// The layer number of a rid, if it is one of ours.
pub fn layer_of_rid(rid: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.rid == rid)
}

/// Bytes of an ordinary frame of `layer`, so that 30 of them a second make
/// its bitrate (keyframes are bigger, they are rare).
fn frame_bytes(layer: usize) -> usize {
    (LAYERS[layer].bits_per_sec / 8 / FPS) as usize
}

/// What a tag says about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// `None` for audio.
    pub layer: Option<u8>,
    pub publisher: u32,
    pub counter: u32,
    /// When it was written, µs since the run's origin.
    pub sent_us: u64,
}

const VIDEO_MAGIC: [u8; 2] = *b"NV";
const AUDIO_MAGIC: [u8; 2] = *b"NA";
const TAG_LEN: usize = 2 + 1 + 4 + 4 + 8;

fn put_tag(out: &mut Vec<u8>, magic: [u8; 2], tag: &Tag) {
    out.extend_from_slice(&magic);
    out.push(tag.layer.unwrap_or(0xff));
    out.extend_from_slice(&tag.publisher.to_be_bytes());
    out.extend_from_slice(&tag.counter.to_be_bytes());
    out.extend_from_slice(&tag.sent_us.to_be_bytes());
}

fn read_tag(bytes: &[u8], magic: [u8; 2]) -> Option<Tag> {
    let b = bytes.get(..TAG_LEN)?;
    if b[..2] != magic {
        return None;
    }
    Some(Tag {
        layer: (b[2] != 0xff).then_some(b[2]),
        publisher: u32::from_be_bytes(b[3..7].try_into().ok()?),
        counter: u32::from_be_bytes(b[7..11].try_into().ok()?),
        sent_us: u64::from_be_bytes(b[11..19].try_into().ok()?),
    })
}

/// A VP8 frame of `tag.layer` (RFC 6386 9.1: the 3-byte frame tag, and for a
/// keyframe the start code and dimensions), then the tag, then filler.
pub fn video_frame(tag: &Tag, keyframe: bool) -> Vec<u8> {
    let layer = usize::from(tag.layer.unwrap_or(0));
    let size = frame_bytes(layer) * if keyframe { KEYFRAME_FACTOR } else { 1 };
    let mut out = Vec::with_capacity(size.max(TAG_LEN + 10));
    // Frame tag: bit 0 = not a keyframe, version 0, show_frame, first
    // partition size (19 bits) = 64.
    let first_part: u32 = 64;
    let bits = u32::from(!keyframe) | (1 << 4) | (first_part << 5);
    out.extend_from_slice(&bits.to_le_bytes()[..3]);
    if keyframe {
        let l = LAYERS[layer];
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&l.width.to_le_bytes());
        out.extend_from_slice(&l.height.to_le_bytes());
    }
    put_tag(&mut out, VIDEO_MAGIC, tag);
    // Filler that varies with the counter (no run of one byte a packetiser
    // or a compressing path could take advantage of).
    let seed = tag.counter as u8;
    while out.len() < size {
        out.push(seed.wrapping_add(out.len() as u8));
    }
    out
}

/// Reads the tag of a VP8 frame as [`video_frame`] wrote it.
pub fn read_video(frame: &[u8]) -> Option<(Tag, bool)> {
    let keyframe = frame.first()? & 1 == 0;
    let at = if keyframe { 10 } else { 3 };
    Some((read_tag(frame.get(at..)?, VIDEO_MAGIC)?, keyframe))
}

/// An Opus packet of 60-100 bytes (varying like a real encoder's).
pub fn audio_packet(tag: &Tag) -> Vec<u8> {
    let size = 60 + (tag.counter as usize * 7) % 41;
    let mut out = Vec::with_capacity(size);
    put_tag(&mut out, AUDIO_MAGIC, tag);
    while out.len() < size {
        out.push(out.len() as u8 ^ 0x5a);
    }
    out
}

pub fn read_audio(packet: &[u8]) -> Option<Tag> {
    read_tag(packet, AUDIO_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_survive_a_round_trip() {
        let tag = Tag {
            layer: Some(2),
            publisher: 7,
            counter: 99,
            sent_us: 123_456_789,
        };
        let key = video_frame(&tag, true);
        assert_eq!(key.len(), 1_500_000 / 8 / 30 * 3);
        assert_eq!(read_video(&key), Some((tag, true)));
        let delta = video_frame(&tag, false);
        assert_eq!(read_video(&delta), Some((tag, false)));
        let audio = Tag { layer: None, ..tag };
        let packet = audio_packet(&audio);
        assert!((60..=100).contains(&packet.len()));
        assert_eq!(read_audio(&packet), Some(audio));
        assert_eq!(read_audio(&key), None);
    }
}

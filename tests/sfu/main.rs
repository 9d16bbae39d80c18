//! The media server (SFU): on its own, driven by synthetic WebRTC clients
//! (str0m) over loopback (`engine`), and through the Socket.IO contract of a
//! running app (`signaling`).

#[path = "../common/mod.rs"]
mod common;

mod engine;
mod layers;
mod peer;
mod signaling;

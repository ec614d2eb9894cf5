//! A server engine fed arbitrary client bytes (in arbitrary chunks), answering accept
//! lookups with "no existing session". Seeds: what real Ceph clients sent (`*-c2s.bin`).
//!
//! Selector (first byte): bit 0 picks the client policy (stateless / stateful server),
//! bit 1 the server's identity (mon.0, or osd.0 so that the `rados` captures, whose connect
//! carries the OSD protocol version and an auth-none authorizer, get past the connect),
//! bits 2-7 the input chunk size (0 means 1 byte).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use msgr::entity::{EntityName, EntityType};
use msgr::proto::{Config, Connection, Event, Policy};
use msgr::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let (me, addr) = if sel & 2 == 0 {
        (EntityName::new(EntityType::MON, 0), "v1:127.0.0.1:6789/0")
    } else {
        (EntityName::new(EntityType::OSD, 0), "v1:127.0.0.1:6800/0")
    };
    let mut cfg = Config::new(me, addr.parse().unwrap());
    cfg.policies = cfg
        .policies
        .with(EntityType::CLIENT, if sel & 1 == 0 { Policy::stateless_server(0) } else { Policy::stateful_server(0) })
        .with(EntityType::MON, Policy::lossless_peer_reuse(0));
    let mut c = Connection::accept(Arc::new(cfg), Instant::ZERO, "127.0.0.1:40000".parse().unwrap(), 3);
    let mut now = Instant::from_nanos(1);
    let chunk = usize::from(sel >> 2).max(1);
    let mut rx = BytesMut::new();
    for piece in body.chunks(chunk) {
        rx.extend_from_slice(piece);
        if c.handle_input(now, &mut rx).is_err() {
            return;
        }
        while c.poll_transmit(now).is_some() {}
        while let Some(ev) = c.poll_event() {
            if let Event::AcceptRequest = ev {
                let _ = c.resolve_accept(now, None);
            }
        }
        now = now + Duration::from_millis(1);
        if c.handle_timeout(now).is_err() {
            return;
        }
    }
});

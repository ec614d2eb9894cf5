//! A client engine fed arbitrary server bytes (in arbitrary chunks), with a fixed clock
//! and seed. Seeds: what real Ceph monitors sent (`*-s2c.bin`).
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::proto::{Config, Connection, Event, Policy};
use msgr::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let mut cfg = Config::new(EntityName::new(EntityType::CLIENT, -1), EntityAddr::none());
    cfg.policies.default = if sel & 1 == 0 { Policy::lossy_client(0) } else { Policy::lossless_client(0) };
    // The captures' monitor listened on 127.0.0.1 with nonce 0; accept any claimed address
    // by dialing whatever the input's hello names (bytes 9..145), so inputs get past it.
    let peer = body.get(9..145).and_then(|b| EntityAddr::from_legacy(b).ok()).unwrap_or_else(EntityAddr::none);
    let mut c = Connection::connect(Arc::new(cfg), Instant::ZERO, peer, EntityType::MON, 7);
    let mut now = Instant::from_nanos(1);
    let _ = c.poll_event();
    c.handle_connected(now);
    let chunk = usize::from(sel >> 1).max(1);
    let mut rx = BytesMut::new();
    for piece in body.chunks(chunk) {
        rx.extend_from_slice(piece);
        if c.handle_input(now, &mut rx).is_err() {
            rx.clear();
        }
        while c.poll_transmit(now).is_some() {}
        while let Some(ev) = c.poll_event() {
            if let Event::Dial = ev {
                c.handle_connected(now);
            }
        }
        now = now + Duration::from_millis(1);
        let _ = c.handle_timeout(now);
    }
});

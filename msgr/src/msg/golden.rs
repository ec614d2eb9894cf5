//! Test-only: the messages inside the msgr v1 byte streams captured from a real Ceph
//! Pacific 16.2.15 `ceph-mon` and `ceph` CLI (`msgr/tests/data/v1-*-{c2s,s2c}.bin`, one file
//! per TCP direction, made by `tests/data/extract-streams.sh`).
//!
//! Also the `v1-osd-*` streams between `rados` and a real `ceph-osd` in `src/msg/testdata/`
//! (see its README).
//!
//! This is a deliberately small, independent walker (not the crate's `wire` module) so the
//! typed-message tests do not depend on the connection code. Layout (docs §2.2, §2.6):
//! - client to server: banner (9), legacy addr (136), `ceph_msg_connect` (33) plus
//!   `authorizer_len` bytes, then the le64 in_seq answering the server's `TAG_SEQ`;
//! - server to client: banner (9), two legacy addrs (272), `ceph_msg_connect_reply` (26)
//!   plus `authorizer_len` bytes, plus le64 when the tag is `SEQ` (13);
//! - then stream items: tag 7 = 53-byte header, front, middle, data, 21-byte footer (the
//!   captured sessions negotiated `MSG_AUTH`); tags 8/14/15 carry 8 bytes; tag 9 none.

use bytes::Bytes;

use super::{Message, MessageHeader, MsgType};
use crate::entity::{EntityName, EntityType};

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads a capture: `v1-osd-*` from `src/msg/testdata/` (see its README), the others from
/// `tests/data/`.
pub(crate) fn load(name: &str) -> Bytes {
    let dir = if name.starts_with("v1-osd-") {
        "src/msg/testdata"
    } else {
        "tests/data"
    };
    let path = format!("{}/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading golden capture {path}: {e}")),
    )
}

/// Every message in the capture `name` (`...-c2s.bin` or `...-s2c.bin`), in stream order.
/// Segments are slices of the file's bytes.
pub(crate) fn messages(name: &str) -> Vec<Message> {
    let b = load(name);
    let mut p = 9;
    if name.ends_with("-c2s.bin") {
        let connect = p + 136;
        p = connect + 33 + le32(&b, connect + 28) + 8;
    } else {
        let reply = p + 272;
        p = reply + 26 + le32(&b, reply + 21);
        if b[reply] == 13 {
            p += 8;
        }
    }
    let mut out = Vec::new();
    while p < b.len() {
        let tag = b[p];
        p += 1;
        match tag {
            7 => {
                let h = &b[p..p + 53];
                let header = MessageHeader {
                    seq: le64(h, 0),
                    tid: le64(h, 8),
                    ty: MsgType(le16(h, 16)),
                    priority: le16(h, 18),
                    version: le16(h, 20),
                    compat_version: le16(h, 45),
                    data_off: le16(h, 34),
                    src: EntityName::new(EntityType(h[36]), le64(h, 37) as i64),
                };
                let (fl, ml, dl) = (le32(h, 22), le32(h, 26), le32(h, 30));
                p += 53;
                let front = b.slice(p..p + fl);
                let middle = b.slice(p + fl..p + fl + ml);
                let data = b.slice(p + fl + ml..p + fl + ml + dl);
                p += fl + ml + dl + 21;
                out.push(Message::new(header, front, middle, data));
            }
            8 | 14 | 15 => p += 8,
            9 => {}
            t => panic!("{name}: unexpected tag {t} at offset {}", p - 1),
        }
    }
    assert_eq!(p, b.len(), "{name}: stream ends inside an item");
    out
}

/// The messages of type `ty` in capture `name`.
pub(crate) fn of_type(name: &str, ty: MsgType) -> Vec<Message> {
    messages(name)
        .into_iter()
        .filter(|m| m.header.ty == ty)
        .collect()
}

/// Every capture file, with its direction in the name.
pub(crate) const CAPTURES: &[&str] = &[
    "v1-ping-0-c2s.bin",
    "v1-ping-0-s2c.bin",
    "v1-status-0-c2s.bin",
    "v1-status-0-s2c.bin",
    "v1-status-1-c2s.bin",
    "v1-status-1-s2c.bin",
    "v1-status-2-c2s.bin",
    "v1-status-2-s2c.bin",
    "v1-status-3-c2s.bin",
    "v1-status-3-s2c.bin",
];

#[test]
fn walker_sees_the_documented_conversation() {
    let c2s: Vec<u16> = messages("v1-ping-0-c2s.bin")
        .iter()
        .map(|m| m.header.ty.0)
        .collect();
    assert_eq!(c2s, [17, 2]);
    let s2c: Vec<u16> = messages("v1-ping-0-s2c.bin")
        .iter()
        .map(|m| m.header.ty.0)
        .collect();
    assert_eq!(s2c, [18, 4, 2]);
    for name in CAPTURES {
        assert!(!messages(name).is_empty(), "{name}");
    }
}

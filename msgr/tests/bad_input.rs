//! Hostile bytes against a server engine: each gives a typed fault with a named cause, the
//! connection is dropped (the peer sees EOF), and nothing panics, hangs or allocates on the
//! peer's say-so. The scripted peer speaks through the simulator's raw transport.

mod sim;

use std::time::Duration;

use msgr::crc::ceph_crc32c;
use msgr::entity::EntityType;
use msgr::features;
use msgr::msg::{MessageHeader, MsgType};
use msgr::proto::Policy;
use msgr::wire::banner::{BANNER, SERVER_HELLO_LEN};
use msgr::wire::{ConnectReplyRepr, ConnectRepr, HeaderRepr};
use sim::{addr, Note, RawId, Sim};

/// A server node and a scripted client that has completed the handshake (unless `open`
/// is false, in which case it has only read the server hello).
fn setup(open: bool) -> (Sim, usize, RawId) {
    let mut sim = Sim::new(99);
    let mut cfg = Sim::config(EntityType::OSD, 0, 6800);
    cfg.policies.default = Policy::stateful_server(0);
    let s = sim.node(cfg);
    let r = sim.raw_connect(s, 50000);
    sim.run_for(Duration::from_millis(1));
    sim.raw_take(r, SERVER_HELLO_LEN);
    if open {
        let mut b = BANNER.to_vec();
        b.extend_from_slice(&addr(50000, 5).to_legacy());
        let c = ConnectRepr {
            features: features::PACIFIC_ALL,
            host_type: EntityType::CLIENT,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 24,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        };
        b.extend_from_slice(&c.emit());
        sim.raw_send(r, &b);
        sim.run_for(Duration::from_millis(1));
        sim.raw_take(r, ConnectReplyRepr::LEN + 8);
        sim.raw_send(r, &0u64.to_le_bytes());
        sim.run_for(Duration::from_millis(1));
        assert_eq!(sim.count(|n| matches!(n, Note::Accepted(..))), 1);
    }
    (sim, s, r)
}

/// Sends `bytes`, and checks the server faulted with `label` and closed the socket.
#[track_caller]
fn expect_fault(sim: &mut Sim, s: usize, r: RawId, bytes: &[u8], label: &str) {
    sim.raw_send(r, bytes);
    sim.run_for(Duration::from_millis(5));
    assert!(
        sim.faults(s).contains(&label),
        "fault {label:?} expected, got {:?}",
        sim.faults(s)
    );
    assert!(sim.raw(r).eof, "the server dropped the connection");
}

fn msg_frame(front: &[u8], data: &[u8], corrupt_crc: bool) -> Vec<u8> {
    msg_frame_seq(1, front, data, corrupt_crc)
}

fn msg_frame_seq(seq: u64, front: &[u8], data: &[u8], corrupt_crc: bool) -> Vec<u8> {
    let mut h = MessageHeader::new(MsgType::PING, 1, 1);
    h.seq = seq;
    let repr = HeaderRepr {
        header: h,
        front_len: front.len() as u32,
        middle_len: 0,
        data_len: data.len() as u32,
    };
    let mut b = vec![7u8];
    b.extend_from_slice(&repr.emit(true));
    b.extend_from_slice(front);
    b.extend_from_slice(data);
    let mut fcrc = ceph_crc32c(0, front);
    if corrupt_crc {
        fcrc ^= 1;
    }
    b.extend_from_slice(&fcrc.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&ceph_crc32c(0, data).to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.push(1);
    b
}

#[test]
fn wrong_banner() {
    let (mut sim, s, r) = setup(false);
    let mut b = b"ceph v026".to_vec();
    b.extend_from_slice(&[0; 136]);
    expect_fault(&mut sim, s, r, &b, "bad_banner");
}

#[test]
fn http_instead_of_ceph_is_refused_at_the_banner() {
    let (mut sim, s, r) = setup(false);
    // Nine bytes are enough to know: no need to wait for the 145 a hello would take.
    expect_fault(&mut sim, s, r, b"GET / HTTP/1.1\r\n", "bad_banner");
}

#[test]
fn garbage_address_family() {
    let (mut sim, s, r) = setup(false);
    let mut b = BANNER.to_vec();
    let mut a = [0u8; 136];
    a[8] = 0x77; // family 0x7700
    b.extend_from_slice(&a);
    expect_fault(&mut sim, s, r, &b, "decode");
}

#[test]
fn oversized_authorizer() {
    let (mut sim, s, r) = setup(false);
    let mut b = BANNER.to_vec();
    b.extend_from_slice(&addr(50000, 5).to_legacy());
    let c = ConnectRepr {
        features: features::PACIFIC_ALL,
        host_type: EntityType::CLIENT,
        global_seq: 1,
        connect_seq: 0,
        protocol_version: 24,
        authorizer_protocol: 2,
        authorizer_len: u32::MAX,
        flags: 0,
    };
    b.extend_from_slice(&c.emit());
    expect_fault(&mut sim, s, r, &b, "too_large");
}

#[test]
fn unknown_tag_after_the_handshake() {
    let (mut sim, s, r) = setup(true);
    expect_fault(&mut sim, s, r, &[0xee, 1, 2, 3], "unknown_tag");
}

#[test]
fn trailing_garbage_after_a_good_message() {
    let (mut sim, s, r) = setup(true);
    let mut b = msg_frame(b"hello", b"", false);
    b.extend_from_slice(b"\x00garbage");
    expect_fault(&mut sim, s, r, &b, "unknown_tag");
    assert_eq!(
        sim.nodes[s].inbox.len(),
        1,
        "the good message before the garbage was delivered"
    );
}

#[test]
fn bad_header_crc() {
    let (mut sim, s, r) = setup(true);
    let mut b = msg_frame(b"x", b"", false);
    b[10] ^= 0x40; // inside the header, after the crc was computed
    expect_fault(&mut sim, s, r, &b, "bad_crc");
}

#[test]
fn bad_front_crc() {
    let (mut sim, s, r) = setup(true);
    expect_fault(&mut sim, s, r, &msg_frame(b"abc", b"def", true), "bad_crc");
    assert!(sim.nodes[s].inbox.is_empty());
}

#[test]
fn data_length_beyond_the_limit_is_refused_before_buffering() {
    let (mut sim, s, r) = setup(true);
    let mut h = MessageHeader::new(MsgType::PING, 1, 1);
    h.seq = 1;
    let repr = HeaderRepr {
        header: h,
        front_len: 0,
        middle_len: 0,
        data_len: u32::MAX,
    };
    let mut b = vec![7u8];
    b.extend_from_slice(&repr.emit(true));
    expect_fault(&mut sim, s, r, &b, "too_large");
}

#[test]
fn front_length_beyond_the_limit() {
    let (mut sim, s, r) = setup(true);
    let mut h = MessageHeader::new(MsgType::PING, 1, 1);
    h.seq = 1;
    let repr = HeaderRepr {
        header: h,
        front_len: 65 << 20,
        middle_len: 0,
        data_len: 0,
    };
    let mut b = vec![7u8];
    b.extend_from_slice(&repr.emit(true));
    expect_fault(&mut sim, s, r, &b, "too_large");
}

#[test]
fn aborted_message_footer() {
    let (mut sim, s, r) = setup(true);
    let mut b = msg_frame(b"abc", b"", false);
    let n = b.len();
    b[n - 1] = 0; // COMPLETE cleared
    expect_fault(&mut sim, s, r, &b, "decode");
}

#[test]
fn truncated_stream_just_waits_then_eof_is_a_fault() {
    let (mut sim, s, r) = setup(true);
    let b = msg_frame(b"abcdef", b"", false);
    sim.raw_send(r, &b[..b.len() - 3]);
    sim.run_for(Duration::from_millis(5));
    assert!(
        sim.faults(s).is_empty(),
        "a partial message is not an error"
    );
    sim.raw_close(r);
    sim.run_for(Duration::from_millis(5));
    assert_eq!(sim.faults(s), vec!["eof"]);
}

#[test]
fn unknown_message_types_are_delivered_raw() {
    let (mut sim, s, r) = setup(true);
    let mut b = msg_frame(b"opaque", b"payload", false);
    // Type 0x7777: rewrite the header's type and its crc.
    b[17..19].copy_from_slice(&0x7777u16.to_le_bytes());
    let crc = ceph_crc32c(0, &b[1..50]);
    b[50..54].copy_from_slice(&crc.to_le_bytes());
    sim.raw_send(r, &b);
    sim.run_for(Duration::from_millis(5));
    assert!(sim.faults(s).is_empty());
    let m = &sim.nodes[s].inbox[0].1;
    assert_eq!(
        (m.ty().0, &m.front[..], &m.data[..]),
        (0x7777, &b"opaque"[..], &b"payload"[..])
    );
}

#[test]
fn sequence_numbers_at_the_top_of_the_range() {
    let (mut sim, s, r) = setup(true);
    // A skip to u64::MAX is logged ("missed message?") and accepted, as Ceph does; anything
    // after it is old and dropped. No arithmetic on the peer's numbers may overflow.
    let mut b = msg_frame_seq(u64::MAX, b"top", b"", false);
    b.extend_from_slice(&msg_frame_seq(5, b"old", b"", false));
    b.extend_from_slice(&msg_frame_seq(u64::MAX, b"dup", b"", false));
    sim.raw_send(r, &b);
    sim.run_for(Duration::from_millis(5));
    assert!(sim.faults(s).is_empty());
    let got: Vec<_> = sim.nodes[s]
        .inbox
        .iter()
        .map(|(_, m)| m.front.clone())
        .collect();
    assert_eq!(got, vec![bytes::Bytes::from_static(b"top")]);
}

//! Our own traffic through Wireshark's Ceph dissector (tshark 4.0, heuristic v1 dissection
//! by banner). Our frames must decode without a malformed mark or an error; warnings are
//! allowed only where the dissector gives the same warning to the bytes real Ceph sends.
//! Wireshark 4.0 predates Pacific's MonMap encoding and marks the *monitor's* MonMap as
//! malformed (docs §8): that frame is the monitor's, not ours, and is held to the baseline.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use msgr::blocking::BlockingConn;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::msg::{MPing, MsgType, TypedMessage};
use msgr::proto::{Config, Event, Policy};
use support::capture::{Capture, DissectedFrame, Pcap, Severity};
use support::mon::MonFixture;
use support::monclient::MonSession;

fn needs(what: &str, check: fn() -> Result<(), String>) -> bool {
    support::skip::require(&support::skip::test_name(), what, check)
}

/// Warning texts the dissector gives real Ceph traffic, by PDU name (numbers blanked).
fn baseline_warnings() -> BTreeSet<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut set = BTreeSet::new();
    for f in ["v1-ping.pcap", "v1-status.pcap"] {
        let frames = Pcap::open(dir.join(f))
            .ceph_frames()
            .expect("dissect baseline");
        for fr in frames {
            for w in fr.expert.iter().filter(|e| e.severity == Severity::Warning) {
                for p in &fr.pdus {
                    set.insert((p.clone(), blank_digits(&w.message)));
                }
            }
        }
    }
    set
}

/// Replaces each run of digits by `#`, so "13 unused bytes" matches "6 unused bytes".
fn blank_digits(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// Checks the frames one side sent: recognized as Ceph, never malformed, no errors, and no
/// warning that real Ceph's bytes of the same PDU do not also get.
fn assert_clean(frames: &[DissectedFrame], who: &str) {
    let baseline = baseline_warnings();
    for f in frames {
        assert!(
            !f.malformed,
            "{who}: frame {} malformed: {} {:?}",
            f.number, f.info, f.expert
        );
        for e in &f.expert {
            assert!(
                e.severity != Severity::Error,
                "{who}: frame {} error: {}",
                f.number,
                e.message
            );
            if e.severity == Severity::Warning {
                let known = f
                    .pdus
                    .iter()
                    .any(|p| baseline.contains(&(p.clone(), blank_digits(&e.message))));
                assert!(
                    known,
                    "{who}: frame {} ({}) warning not seen on real Ceph: {}",
                    f.number, f.info, e.message
                );
            }
        }
    }
}

fn tags_of(frames: &[DissectedFrame]) -> BTreeSet<u8> {
    frames
        .iter()
        .flat_map(|f| f.ceph_tags.iter().copied())
        .collect()
}

fn pdus_of(frames: &[DissectedFrame]) -> BTreeSet<String> {
    frames.iter().flat_map(|f| f.pdus.iter().cloned()).collect()
}

#[test]
fn our_client_to_a_real_monitor() {
    if !needs("ceph-mon", MonFixture::check) || !needs("packet capture", Capture::check) {
        return;
    }
    let mon = MonFixture::start().expect("ceph-mon");
    let port = mon.v1_addr().port();
    let cap = Capture::start(port).expect("capture");
    let mut s = MonSession::connect(mon.v1_addr()).unwrap();
    s.ping().unwrap();
    s.keepalive().unwrap();
    s.authenticate("admin").unwrap();
    s.subscribe_monmap().unwrap();
    s.get_version("osdmap", 1, 2).unwrap();
    s.conn.close();
    let pcap = cap.stop().expect("stop capture");
    let frames = pcap.ceph_frames().expect("dissect");
    let ours: Vec<_> = frames
        .iter()
        .filter(|f| f.dst_port == Some(port))
        .cloned()
        .collect();
    let theirs: Vec<_> = frames
        .iter()
        .filter(|f| f.src_port == Some(port))
        .cloned()
        .collect();
    let sent = pdus_of(&ours);
    for want in ["Connect", "Ping", "KEEPALIVE2", "Auth", "Mon Subscribe"] {
        assert!(sent.contains(want), "dissector saw our {want}: {sent:?}");
    }
    assert_clean(&ours, "our client");
    // The monitor's frames: everything but its MonMap (Wireshark 4.0's known gap) is clean.
    let not_monmap: Vec<_> = theirs
        .iter()
        .filter(|f| !f.info.contains("Mon Map"))
        .cloned()
        .collect();
    assert_clean(&not_monmap, "monitor");
    let got = pdus_of(&theirs);
    for want in ["Connect Reply", "Ping", "Auth Reply", "KEEPALIVE2"] {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "dissector saw the mon's {want}: {got:?}"
        );
    }
    // The dissector names KEEPALIVE2_ACK "KEEPALIVE2" too; its tag tells them apart.
    assert!(
        tags_of(&ours).contains(&14) && tags_of(&theirs).contains(&15),
        "keepalive2 and its ack"
    );
}

/// Our client and our server: handshake replies, MPing both ways, keepalives and ACKs
/// (the session is lossless, so both sides ack) are all ours here.
#[test]
fn our_client_and_our_server() {
    if !needs("packet capture", Capture::check) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cap = Capture::start(port).expect("capture");
    let server = thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut cfg = Config::new(
            EntityName::new(EntityType::OSD, 0),
            EntityAddr::v1(([127, 0, 0, 1], port).into(), 4242),
        );
        cfg.policies.default = Policy::stateful_server(0);
        let mut conn = BlockingConn::accept(cfg, sock, Duration::from_secs(10)).unwrap();
        let mut served = 0;
        while served < 3 {
            match conn.next_event(Duration::from_secs(10)).unwrap() {
                Event::Message(r) if r.msg.ty() == MsgType::PING => {
                    let f = conn.connection().features();
                    conn.send(MPing::with_payload(format!("pong {served}")).to_message(f))
                        .unwrap();
                    served += 1;
                }
                _ => {}
            }
        }
        conn.keepalive().unwrap();
        // Let the acks and the keepalive exchange finish before closing.
        let _ = conn.next_event(Duration::from_millis(300));
        conn.close();
    });
    let mut cfg = Config::new(
        EntityName::new(EntityType::CLIENT, 7),
        EntityAddr {
            nonce: 99,
            ..EntityAddr::none()
        },
    );
    cfg.policies.default = Policy::lossless_client(0);
    let target = EntityAddr::v1(([127, 0, 0, 1], port).into(), 4242);
    let mut c =
        BlockingConn::connect(cfg, target, EntityType::OSD, Duration::from_secs(10)).unwrap();
    for i in 0..3 {
        let f = c.connection().features();
        let mut m = MPing::new().to_message(f);
        m.data = Bytes::from(vec![i as u8; 100]);
        c.send(m).unwrap();
        c.recv_type(MsgType::PING, Duration::from_secs(10)).unwrap();
    }
    c.keepalive().unwrap();
    let _ = c.next_event(Duration::from_millis(500));
    server.join().unwrap();
    c.close();
    let pcap = cap.stop().expect("stop capture");
    let frames = pcap.ceph_frames().expect("dissect");
    assert_clean(&frames, "our messenger");
    let seen = pdus_of(&frames);
    for want in [
        "Connect",
        "Connect Reply",
        "Sequence Number",
        "Ping",
        "KEEPALIVE2",
        "ACK",
    ] {
        assert!(
            seen.iter().any(|p| p == want),
            "dissector saw {want}: {seen:?}"
        );
    }
    let tags = tags_of(&frames);
    for (tag, name) in [
        (7, "MSG"),
        (8, "ACK"),
        (13, "SEQ"),
        (14, "KEEPALIVE2"),
        (15, "KEEPALIVE2_ACK"),
    ] {
        assert!(
            tags.contains(&tag),
            "dissector decoded a {name} tag: {tags:?}"
        );
    }
}

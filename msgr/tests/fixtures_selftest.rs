//! Self-tests of the interop fixtures in `tests/support`: a real `ceph-mon` (v1+v2 and
//! v1-only, also several at once), the skip convention, tshark's dissector and malformed
//! detection over real Pacific captures, and a live capture on `lo`.
//!
//! Tests that need an external program skip (printing `SKIPPED ...`) when it is missing, and
//! fail instead under `MSGR_REQUIRE_INTEROP=1`. Run with `--nocapture` to see timings.
#![allow(clippy::disallowed_methods)] // timings of real processes read the clock

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::capture::{self, Capture, Pcap, Severity};
use support::mon::{self, MonFixture};
use support::{process_alive, skip};

/// Reads exactly `n` bytes with a bounded timeout.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Checks a 136-byte legacy `entity_addr_t` (docs §2.3): type 0, big-endian AF_INET at 8..10,
/// big-endian port at 10..12, IPv4 at 12..16, zero padding; returns the nonce.
fn check_legacy_addr(a: &[u8], ip: Ipv4Addr, port: u16) -> u32 {
    assert_eq!(a.len(), 136);
    assert_eq!(a[0..4], [0, 0, 0, 0], "type field (written as 0)");
    assert_eq!(a[8..10], [0x00, 0x02], "ss_family AF_INET, big-endian");
    assert_eq!(u16::from_be_bytes([a[10], a[11]]), port, "port, big-endian");
    assert_eq!(a[12..16], ip.octets(), "IPv4 address");
    assert!(
        a[16..].iter().all(|&b| b == 0),
        "sockaddr_storage padding is zero"
    );
    u32::from_le_bytes([a[4], a[5], a[6], a[7]])
}

/// Where the real-Ceph captures are: this crate's tests/data, else the shared data directory.
fn real_ceph_pcap(name: &str) -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from("/work/shared/data/ceph-pacific").join(name)
    }
}

#[test]
fn mon_fixture_v1_and_v2() {
    if !skip::require("mon_fixture_v1_and_v2", "ceph-mon", MonFixture::check) {
        return;
    }
    let mon = MonFixture::start().expect("start ceph-mon");
    eprintln!(
        "ceph-mon (v2+v1) ready in {:?} at {}",
        mon.startup_time(),
        mon.mon_host()
    );
    let v1 = mon.v1_addr();
    let v2 = mon.v2_addr().expect("v2 address");
    assert_ne!(v1.port(), v2.port());
    assert_eq!(mon.name(), "a");
    assert_eq!(mon.mon_host(), format!("[v2:{v2},v1:{v1}]"));
    assert_eq!(mon::parse_uuid(mon.fsid_str()).unwrap(), mon.fsid());
    assert_eq!(mon.fsid()[6] >> 4, 4, "uuid version 4");

    // The server's half of the v1 banner exchange (docs §2.2): banner, its own legacy address,
    // the address it sees for us.
    let mut s = TcpStream::connect_timeout(&v1, Duration::from_secs(5)).unwrap();
    let hello = read_n(&mut s, 9 + 136 + 136);
    assert_eq!(&hello[..9], b"ceph v027");
    let nonce = check_legacy_addr(&hello[9..145], Ipv4Addr::LOCALHOST, v1.port());
    assert_eq!(nonce, 0, "mons use nonce 0");
    let me = s.local_addr().unwrap();
    check_legacy_addr(&hello[145..281], Ipv4Addr::LOCALHOST, me.port());
    drop(s);

    // The v2 port answers with the msgr2 banner.
    assert_eq!(mon::read_banner(v2, 8).unwrap(), mon::BANNER_V2);

    // The admin socket works without the ceph CLI, and the mon knows our fsid and addresses.
    let status = mon.mon_status().unwrap();
    let compact: String = status.split_whitespace().collect();
    assert!(status.contains(mon.fsid_str()), "{status}");
    assert!(compact.contains(r#""state":"leader""#), "{status}");
    assert!(
        compact.contains(&format!(r#""type":"v2","addr":"{v2}","nonce":0"#)),
        "{status}"
    );
    assert!(
        compact.contains(&format!(r#""type":"v1","addr":"{v1}","nonce":0"#)),
        "{status}"
    );

    let pid = mon.pid().expect("mon pid");
    let dir = mon.dir().to_path_buf();
    assert!(process_alive(pid));
    assert!(dir.join("ceph.conf").is_file());
    let t = Instant::now();
    drop(mon);
    eprintln!("ceph-mon stopped in {:?}", t.elapsed());
    assert!(
        !process_alive(pid),
        "ceph-mon pid {pid} still alive after drop"
    );
    if !support::keep_tmp() {
        assert!(!dir.exists(), "{} not removed", dir.display());
    }
    assert!(
        TcpStream::connect_timeout(&v1, Duration::from_secs(1)).is_err(),
        "v1 port still open"
    );
}

#[test]
fn mon_fixture_v1_only() {
    if !skip::require("mon_fixture_v1_only", "ceph-mon", MonFixture::check) {
        return;
    }
    let mon = MonFixture::builder()
        .v2(false)
        .start()
        .expect("start v1-only ceph-mon");
    eprintln!(
        "ceph-mon (v1 only) ready in {:?} at {}",
        mon.startup_time(),
        mon.mon_host()
    );
    assert_eq!(mon.v2_addr(), None);
    assert_eq!(mon.mon_host(), format!("[v1:{}]", mon.v1_addr()));
    let hello = mon::read_banner(mon.v1_addr(), 9 + 136).unwrap();
    assert_eq!(&hello[..9], b"ceph v027");
    check_legacy_addr(&hello[9..], Ipv4Addr::LOCALHOST, mon.v1_addr().port());
    // No v2 address anywhere in what the mon publishes.
    let status = mon.mon_status().unwrap();
    let compact: String = status.split_whitespace().collect();
    assert!(
        compact.contains(&format!(r#""type":"v1","addr":"{}""#, mon.v1_addr())),
        "{status}"
    );
    assert!(
        !compact.contains(r#""type":"v2""#),
        "v1-only mon advertises a v2 address: {status}"
    );
    mon.stop().expect("orderly stop");
}

#[test]
fn mon_fixtures_in_parallel() {
    if !skip::require("mon_fixtures_in_parallel", "ceph-mon", MonFixture::check) {
        return;
    }
    let mons: Vec<MonFixture> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                s.spawn(move || {
                    MonFixture::builder()
                        .v2(i % 2 == 0)
                        .start()
                        .expect("start ceph-mon")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut dirs: Vec<_> = mons.iter().map(|m| m.dir().to_path_buf()).collect();
    let mut ports: Vec<_> = mons.iter().map(|m| m.v1_addr().port()).collect();
    dirs.sort();
    dirs.dedup();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        (dirs.len(), ports.len()),
        (3, 3),
        "fixtures must not share dirs or ports"
    );
    for m in &mons {
        assert_eq!(mon::read_banner(m.v1_addr(), 9).unwrap(), mon::BANNER_V1);
    }
    assert_ne!(mons[0].fsid(), mons[1].fsid());
    // Dropping the Vec stops all three.
}

#[test]
fn skip_convention() {
    let missing = || skip::programs(&["msgr-no-such-program-xyzzy"]);
    assert!(missing()
        .unwrap_err()
        .contains("msgr-no-such-program-xyzzy"));
    assert!(skip::require("skip_convention", "sh", || skip::programs(
        &["sh"]
    )));
    assert!(skip::which("sh").is_some_and(|p| p.is_absolute()));
    assert!(skip::which("msgr-no-such-program-xyzzy").is_none());
    assert!(skip::effective_uid().is_some());
    if skip::interop_required() {
        // Under MSGR_REQUIRE_INTEROP=1 a missing dependency must fail the test.
        let r = std::panic::catch_unwind(|| {
            skip::require("skip_convention", "a missing program", missing)
        });
        assert!(
            r.is_err(),
            "require() must panic under MSGR_REQUIRE_INTEROP=1"
        );
    } else {
        assert!(!skip::require(
            "skip_convention",
            "a missing program (expected)",
            missing
        ));
    }
}

#[test]
fn dissector_on_real_ceph_pcaps() {
    let ping = real_ceph_pcap("v1-ping.pcap");
    let status = real_ceph_pcap("v1-status.pcap");
    if !skip::require("dissector_on_real_ceph_pcaps", "tshark", || {
        skip::programs(&["tshark"])
    }) || !skip::require("dissector_on_real_ceph_pcaps", "real-Ceph pcaps", || {
        skip::file(&ping).and_then(|()| skip::file(&status))
    }) {
        return;
    }
    let t = Instant::now();
    let ping = Pcap::open(ping);
    let frames = ping.ceph_frames().unwrap();
    eprintln!(
        "tshark dissected {} in {:?}",
        ping.path().display(),
        t.elapsed()
    );
    let names = capture::pdus(&frames);
    for want in [
        "Connect",
        "Connect Reply",
        "Sequence Number",
        "KEEPALIVE2",
        "Auth",
        "Ping",
        "Auth Reply",
        "Mon Map",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no {want:?} PDU in {names:?}"
        );
    }
    assert!(frames.iter().all(|f| f.is_ceph()));
    // The client's frame with KEEPALIVE2, MAuth and MPing: tags 14, 7, 7; types 17, 2.
    let f = frames
        .iter()
        .find(|f| f.has_pdu("Auth") && f.has_pdu("Ping"))
        .unwrap();
    assert_eq!(f.ceph_tags, [0x0e, 0x07, 0x07]);
    assert_eq!(f.ceph_msg_types, [17, 2]);
    assert!(!f.is_bad());

    // Malformed detection, both ways: the MonMap frame (Wireshark 4.0 knows MonMap only up to
    // v3) is flagged, the MPing reply is not (a warning about its undecoded JSON only).
    let bad = ping.malformed_frames().unwrap();
    assert!(!bad.is_empty());
    for f in &bad {
        assert!(f.malformed && f.is_bad() && f.has_pdu("Mon Map"), "{f:?}");
        assert!(
            f.expert.iter().any(|e| e.severity == Severity::Error),
            "{f:?}"
        );
        assert!(f.info.contains("[Malformed Packet]"), "{f:?}");
    }
    let mon_port = frames
        .iter()
        .find(|f| f.has_pdu("Connect Reply"))
        .unwrap()
        .src_port;
    let pong = frames
        .iter()
        .find(|f| f.has_pdu("Ping") && f.src_port == mon_port)
        .unwrap();
    assert!(
        pong.expert.iter().all(|e| e.severity < Severity::Error),
        "{pong:?}"
    );
    assert!(!pong.malformed && !pong.is_bad(), "{pong:?}");
    assert!(!bad.iter().any(|b| b.number == pong.number));
    assert!(frames
        .iter()
        .filter(|f| f.has_pdu("Connect"))
        .all(|f| !f.is_bad()));
    // Agreement between the display filter and the parsed fields.
    let flagged: Vec<u64> = frames
        .iter()
        .filter(|f| f.is_bad())
        .map(|f| f.number)
        .collect();
    assert_eq!(flagged, bad.iter().map(|f| f.number).collect::<Vec<_>>());

    // The longer capture: every malformed frame carries a MonMap; commands are clean.
    let status = Pcap::open(status);
    let frames = status.ceph_frames().unwrap();
    let bad = status.malformed_frames().unwrap();
    assert!(bad.len() >= 2);
    assert!(bad.iter().all(|f| f.has_pdu("Mon Map")), "{bad:?}");
    let commands: Vec<_> = frames.iter().filter(|f| f.has_pdu("Mon Command")).collect();
    assert!(!commands.is_empty());
    assert!(commands.iter().all(|f| !f.is_bad()));

    // A bad display filter is an error that says so.
    let e = ping.dissect("this is not a filter ((").unwrap_err();
    assert!(e.contains("tshark"), "{e}");
}

#[test]
fn capture_on_loopback() {
    // The macro form of the skip convention (test name from the test thread).
    skip_unless!("packet capture", Capture::check);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = Instant::now();
    let cap = Capture::start(port).expect("start capture");
    eprintln!(
        "capture on lo ({}) running after {:?}",
        cap.filter(),
        t.elapsed()
    );

    // A tiny exchange: the server sends the v1 banner, the client reads it and hangs up.
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"ceph v027").unwrap();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut rest); // until the client closes
    });
    let mut c = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(read_n(&mut c, 9), b"ceph v027");
    let client_port = c.local_addr().unwrap().port();
    drop(c);
    server.join().unwrap();
    // Unrelated loopback traffic on another port must not be captured.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    drop(TcpStream::connect(other.local_addr().unwrap()).unwrap());

    let t = Instant::now();
    let pcap = cap.stop().expect("stop capture");
    eprintln!("capture stopped in {:?}", t.elapsed());
    let frames = pcap.dissect("").unwrap();
    assert!(
        frames.len() >= 6,
        "expected handshake, data and teardown, got {frames:#?}"
    );
    assert!(
        frames
            .iter()
            .all(|f| f.src_port == Some(port) || f.dst_port == Some(port)),
        "{frames:#?}"
    );
    assert!(frames
        .iter()
        .any(|f| f.syn && f.src_port == Some(client_port) && f.dst_port == Some(port)));
    let data: Vec<_> = frames.iter().filter(|f| !f.payload.is_empty()).collect();
    assert_eq!(data.len(), 1, "{frames:#?}");
    assert_eq!(data[0].payload, b"ceph v027");
    assert_eq!(data[0].src_port, Some(port));
    assert!(frames.iter().any(|f| f.fin));
    assert!(pcap.malformed_frames().unwrap().is_empty());
}

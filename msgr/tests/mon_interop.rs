//! Our v1 engine against a real Ceph Pacific monitor (Debian's ceph-mon 16.2.15), started
//! by each test on loopback with auth none (docs/ceph-msgr-wire.md §8). Skipped by name
//! when ceph-mon is missing, and a failure in CI (`MSGR_REQUIRE_INTEROP=1`).

mod support;

use msgr::entity::AddrType;
use msgr::features;
use msgr::msg::Fsid;
use support::mon::MonFixture;
use support::monclient::MonSession;

fn start(v2: bool) -> Option<MonFixture> {
    if !support::skip::require(&support::skip::test_name(), "ceph-mon", MonFixture::check) {
        return None;
    }
    Some(
        MonFixture::builder()
            .v2(v2)
            .start()
            .unwrap_or_else(|e| panic!("starting ceph-mon: {e}")),
    )
}

/// Handshake (banner, addresses, connect, SEQ) and an MPing whose reply carries the
/// monitor's health JSON.
#[test]
fn handshake_and_ping() {
    let Some(mon) = start(true) else { return };
    let mut s = MonSession::connect(mon.v1_addr()).unwrap();
    let c = s.conn.connection();
    assert_eq!(
        c.features(),
        features::PACIFIC_ALL,
        "a Pacific mon accepts all of Pacific's features"
    );
    assert!(
        c.policy().lossy,
        "the mon tells clients their session is lossy"
    );
    assert_eq!(c.connect_seq(), 1);
    // We learned our address from the monitor (we started blank).
    assert_eq!(
        c.my_addr().addr.map(|a| a.ip().to_string()),
        Some("127.0.0.1".to_string())
    );
    let (_rtt, json) = s.ping().unwrap();
    assert!(
        json.contains("\"health\""),
        "health JSON in the MPing reply: {json:.200}"
    );
    assert!(json.contains(mon.fsid_str()), "the JSON names our cluster");
    // Several pings in a row, each answered.
    for _ in 0..3 {
        s.ping().unwrap();
    }
    let st = s.conn.connection().stats();
    assert_eq!((st.msgs_out, st.msgs_in), (4, 4));
}

/// MAuth with auth none → MAuthReply (a global id) and the MMonMap the mon pushes, whose
/// fsid and addresses are the ones the test configured.
#[test]
fn auth_none_and_monmap() {
    let Some(mon) = start(true) else { return };
    let mut s = MonSession::connect(mon.v1_addr()).unwrap();
    let (reply, map) = s.authenticate("admin").unwrap();
    assert_eq!(reply.protocol, 1, "CEPH_AUTH_NONE");
    assert!(reply.global_id > 0);
    assert_eq!(map.fsid, Fsid(mon.fsid()));
    assert_eq!(map.fsid.to_string(), mon.fsid_str());
    assert_eq!(map.epoch, 1);
    let mons: Vec<_> = map.monitors().collect();
    assert_eq!(mons.len(), 1);
    assert_eq!(mons[0].name, "a");
    let addrs = &mons[0].public_addrs.0;
    let v2 = addrs
        .iter()
        .find(|a| a.ty == AddrType::MSGR2)
        .expect("a v2 address");
    let v1 = addrs
        .iter()
        .find(|a| a.ty == AddrType::LEGACY)
        .expect("a v1 address");
    assert_eq!(v1.addr, Some(mon.v1_addr()));
    assert_eq!(v2.addr, mon.v2_addr());
    assert_eq!(mons[0].public_addrs.legacy_addr(), Some(*v1));
}

/// Subscribe to the monmap, query its version (the reply echoes our tid and handle), and
/// a KEEPALIVE2 round trip.
#[test]
fn subscribe_version_and_keepalive() {
    let Some(mon) = start(true) else { return };
    let mut s = MonSession::connect(mon.v1_addr()).unwrap();
    s.authenticate("admin").unwrap();
    let map = s.subscribe_monmap().unwrap();
    assert_eq!(map.fsid.to_string(), mon.fsid_str());
    let (tid, v) = s.get_version("monmap", 42, 7).unwrap();
    assert_eq!((tid, v.handle), (7, 42));
    assert_eq!((v.version, v.oldest_version), (1, 1));
    let (_, osd) = s.get_version("osdmap", 43, 8).unwrap();
    assert!(osd.version >= 1);
    s.keepalive().unwrap();
    assert!(s.conn.connection().last_keepalive_ack().is_some());
}

/// A monitor with msgr2 disabled hands out a v1-only monmap.
#[test]
fn v1_only_monitor() {
    let Some(mon) = start(false) else { return };
    assert!(mon.v2_addr().is_none());
    let mut s = MonSession::connect(mon.v1_addr()).unwrap();
    let (_, map) = s.authenticate("admin").unwrap();
    let addrs = &map.monitors().next().unwrap().public_addrs.0;
    assert_eq!(addrs.len(), 1);
    assert_eq!(
        (addrs[0].ty, addrs[0].addr),
        (AddrType::LEGACY, Some(mon.v1_addr()))
    );
}

/// A monitor's ordinary lossy session survives neither a fault nor our restart: a second
/// session from the same process is simply a new anonymous one (stateless_server).
#[test]
fn two_sessions_are_independent() {
    let Some(mon) = start(true) else { return };
    let mut a = MonSession::connect(mon.v1_addr()).unwrap();
    let mut b = MonSession::connect(mon.v1_addr()).unwrap();
    let (ra, _) = a.authenticate("admin").unwrap();
    let (rb, _) = b.authenticate("admin").unwrap();
    assert_ne!(ra.global_id, rb.global_id);
    a.ping().unwrap();
    b.ping().unwrap();
}

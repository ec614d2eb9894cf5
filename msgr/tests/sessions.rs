//! Sessions between two real engines in the deterministic simulator: delivery, replay
//! after faults, races, resets, standby, keepalive, timers, backoff and throttles
//! (the v1 scenarios of Ceph's messenger tests, docs §7, plus the races of §2.8).

mod sim;

use std::time::Duration;

use bytes::Bytes;
use msgr::entity::EntityType;
use msgr::proto::{Phase, Policy, RecvThrottles, Throttle};
use sim::{tagged, ConnId, NodeId, Note, Sim};

const OSD: EntityType = EntityType::OSD;
const CLIENT: EntityType = EntityType::CLIENT;

fn node(sim: &mut Sim, ty: EntityType, num: i64, port: u16, policy: Policy) -> NodeId {
    let mut cfg = Sim::config(ty, num, port);
    cfg.policies.default = policy;
    sim.node(cfg)
}

/// A client (lossless unless said) and a server node.
fn pair(seed: u64, client: Policy, server: Policy) -> (Sim, NodeId, NodeId) {
    let mut sim = Sim::new(seed);
    let c = node(&mut sim, CLIENT, 1, 40000, client);
    let s = node(&mut sim, OSD, 0, 6800, server);
    (sim, c, s)
}

fn open_conns(sim: &Sim, n: NodeId) -> Vec<ConnId> {
    sim.conns(n)
        .into_iter()
        .filter(|&c| sim.conn(n, c).is_open())
        .collect()
}

fn server_conn(sim: &Sim, s: NodeId) -> ConnId {
    let open = open_conns(sim, s);
    assert_eq!(open.len(), 1, "one session on the server: {:?}", sim.notes);
    open[0]
}

#[test]
fn messages_flow_both_ways_in_order() {
    let (mut sim, c, s) = pair(1, Policy::lossy_client(0), Policy::stateless_server(0));
    let conn = sim.connect(c, s, OSD);
    for i in 0..20 {
        sim.send(c, conn, tagged(i, Bytes::new()));
    }
    sim.drive_until(10_000, |sim| sim.nodes[s].inbox.len() == 20);
    assert_eq!(sim.inbox_tags(s), (0..20).collect::<Vec<_>>());
    let sc = server_conn(&sim, s);
    for i in 100..110 {
        sim.send(s, sc, tagged(i, Bytes::new()));
    }
    sim.drive_until(10_000, |sim| sim.nodes[c].inbox.len() == 10);
    assert_eq!(sim.inbox_tags(c), (100..110).collect::<Vec<_>>());
    assert!(sim.notes.contains(&Note::Connected(c, conn)));
    assert!(sim.notes.contains(&Note::Accepted(s, sc)));
    // The source in each header is the sender's name.
    assert_eq!(sim.nodes[s].inbox[0].1.header.src, sim.nodes[c].cfg.name);
}

#[test]
fn any_split_of_the_stream_decodes_the_same() {
    let (mut sim, c, s) = pair(2, Policy::lossless_client(0), Policy::stateful_server(0));
    sim.chunking = true;
    let conn = sim.connect(c, s, OSD);
    let mut sent = Vec::new();
    for i in 0..40u64 {
        let len = (i * 997 % 5000) as usize;
        let data = Bytes::from(
            (0..len)
                .map(|j| (j as u64 * 31 + i) as u8)
                .collect::<Vec<_>>(),
        );
        sent.push(data.clone());
        sim.send(c, conn, tagged(i, data));
    }
    sim.drive_until(1_000_000, |sim| sim.nodes[s].inbox.len() == 40);
    for (i, (_, m)) in sim.nodes[s].inbox.iter().enumerate() {
        assert_eq!(sim::tag_of(m), i as u64);
        assert_eq!(m.data, sent[i]);
    }
}

#[test]
fn large_front_and_data_round_trip() {
    let (mut sim, c, s) = pair(3, Policy::lossless_peer(0), Policy::stateful_server(0));
    sim.chunking = true;
    let conn = sim.connect(c, s, OSD);
    let front: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let data: Vec<u8> = (0..(4 << 20)).map(|i: u32| (i % 253) as u8).collect();
    let mut m = tagged(7, Bytes::from(data.clone()));
    let mut f = m.front.to_vec();
    f.extend_from_slice(&front);
    m.front = Bytes::from(f);
    sim.send(c, conn, m);
    sim.drive_until(10_000_000, |sim| !sim.nodes[s].inbox.is_empty());
    let got = &sim.nodes[s].inbox[0].1;
    assert_eq!(&got.front[8..], &front[..]);
    assert_eq!(&got.data[..], &data[..]);
}

/// Ceph's reconnect scenario: a lossless session survives socket failures with no lost,
/// duplicated or reordered message, in both directions.
#[test]
fn lossless_session_replays_after_cuts_exactly_once() {
    let (mut sim, c, s) = pair(4, Policy::lossless_client(0), Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.drive_until(10_000, |sim| {
        sim.conn(c, conn).is_open() && open_conns(sim, s).len() == 1
    });
    let sc = server_conn(&sim, s);
    let mut next = 0u64;
    for round in 0..30 {
        sim.drive_until(100_000, |sim| sim.conn(c, conn).is_open());
        for _ in 0..7 {
            sim.send(
                c,
                conn,
                tagged(next, Bytes::from(vec![next as u8; (next % 300) as usize])),
            );
            if sim.has_conn(s, sc) {
                sim.send(s, sc, tagged(10_000 + next, Bytes::new()));
            }
            next += 1;
        }
        // Let part of it through, then break the socket mid-stream.
        sim.run_for(Duration::from_micros(60 + (round * 37) % 100));
        sim.cut(c, conn);
    }
    sim.run_for(Duration::from_secs(30));
    assert_eq!(
        sim.inbox_tags(s),
        (0..next).collect::<Vec<_>>(),
        "client → server"
    );
    assert_eq!(
        sim.inbox_tags(c),
        (10_000..10_000 + next).collect::<Vec<_>>(),
        "server → client"
    );
    assert!(sim.conn(c, conn).is_open());
    assert_eq!(
        sim.conn(c, conn).unacked(),
        0,
        "everything acked in the end"
    );
    assert_eq!(sim.conn(s, sc).unacked(), 0);
    assert!(
        sim.count(|n| matches!(n, Note::Connected(..))) >= 30,
        "it really reconnected"
    );
    assert!(sim.count(|n| matches!(n, Note::Reset(..) | Note::RemoteReset(..))) == 0);
}

/// Both ends dial each other at once (ConnectionRaceTest): the table picks one socket
/// (lower address wins, the other gets WAIT or loses its socket) and both end with one
/// session carrying everything exactly once.
#[test]
fn connection_race_ends_with_one_session() {
    let mut waits = 0;
    for seed in 0..20 {
        let mut sim = Sim::new(seed);
        sim.chunking = seed % 2 == 1;
        let a = node(&mut sim, OSD, 1, 6801, Policy::lossless_peer_reuse(0));
        let b = node(&mut sim, OSD, 2, 6802, Policy::lossless_peer_reuse(0));
        let ab = sim.connect(a, b, OSD);
        let ba = sim.connect(b, a, OSD);
        for i in 0..5 {
            sim.send(a, ab, tagged(i, Bytes::new()));
            sim.send(b, ba, tagged(100 + i, Bytes::new()));
        }
        sim.run_for(Duration::from_secs(40));
        assert_eq!(
            sim.inbox_tags(b),
            (0..5).collect::<Vec<_>>(),
            "seed {seed}: {:#?}",
            sim.notes
        );
        assert_eq!(
            sim.inbox_tags(a),
            (100..105).collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(
            open_conns(&sim, a).len(),
            1,
            "seed {seed}: {:#?}",
            sim.notes
        );
        assert_eq!(open_conns(&sim, b).len(), 1, "seed {seed}");
        // The session each side knows the peer by is the open one.
        let ra = sim.nodes[a].registry[&sim.addr_of(b)];
        let rb = sim.nodes[b].registry[&sim.addr_of(a)];
        assert!(
            sim.conn(a, ra).is_open() && sim.conn(b, rb).is_open(),
            "seed {seed}"
        );
        assert!(
            sim.count(|n| matches!(n, Note::Outcome(_, _, msgr::proto::AcceptOutcome::Adopted)))
                >= 1,
            "seed {seed}: a replace happened"
        );
        waits += sim.count(|n| {
            matches!(
                n,
                Note::Outcome(
                    _,
                    _,
                    msgr::proto::AcceptOutcome::Replied(msgr::wire::Tag::Wait)
                )
            )
        });
    }
    assert!(waits > 0, "some seeds resolve the race with WAIT");
}

/// The peer restarts (new process, same address, cseq 0): row 12 replaces the session;
/// with resetcheck the old one is reported as a remote reset.
#[test]
fn peer_restart_is_detected_as_remote_reset() {
    let mut sim = Sim::new(5);
    let a = node(&mut sim, OSD, 1, 6801, Policy::lossless_peer_reuse(0));
    let b = node(&mut sim, OSD, 2, 6802, Policy::lossless_peer_reuse(0));
    let ab = sim.connect(a, b, OSD);
    sim.send(a, ab, tagged(1, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.nodes[b].inbox.len() == 1);
    // "Restart" a: its node goes away and a fresh one takes its address.
    sim.set_listening(a, false);
    sim.mark_down(a, ab);
    let a2 = node(&mut sim, OSD, 1, 6801, Policy::lossless_peer_reuse(0));
    let ab2 = sim.connect(a2, b, OSD);
    sim.send(a2, ab2, tagged(2, Bytes::new()));
    sim.run_for(Duration::from_secs(20));
    assert_eq!(sim.inbox_tags(b), vec![1, 2]);
    assert_eq!(
        sim.count(|n| matches!(n, Note::RemoteReset(x, _) if *x == b)),
        1
    );
    assert_eq!(open_conns(&sim, b).len(), 1);
}

/// The server restarts and forgets the session: the client's reconnect (cseq > 0) gets
/// RESETSESSION (row 18), the client resets and opens a fresh session.
#[test]
fn server_restart_makes_the_client_reset_its_session() {
    let (mut sim, c, s) = pair(6, Policy::lossless_client(0), Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.send(c, conn, tagged(1, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.nodes[s].inbox.len() == 1);
    sim.set_listening(s, false);
    let sc = server_conn(&sim, s);
    sim.mark_down(s, sc);
    let s2 = node(&mut sim, OSD, 0, 6800, Policy::stateful_server(0));
    sim.run_for(Duration::from_secs(1));
    sim.send(c, conn, tagged(2, Bytes::new()));
    sim.run_for(Duration::from_secs(20));
    assert!(
        sim.notes
            .iter()
            .any(|n| matches!(n, Note::RemoteReset(x, _) if *x == c)),
        "{:#?}",
        sim.notes
    );
    assert!(sim.conn(c, conn).is_open());
    assert_eq!(sim.conn(c, conn).connect_seq(), 1, "a new session");
    let _ = s2;
}

#[test]
fn lossy_sessions_reset_on_fault() {
    let (mut sim, c, s) = pair(7, Policy::lossy_client(0), Policy::stateless_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.drive_until(10_000, |sim| {
        sim.conn(c, conn).is_open() && open_conns(sim, s).len() == 1
    });
    let sc = server_conn(&sim, s);
    sim.cut(c, conn);
    assert!(sim.conn(c, conn).is_closed());
    assert!(sim.notes.contains(&Note::Reset(c, conn)));
    assert!(sim.notes.contains(&Note::Reset(s, sc)));
    // A lossy connection refuses further sends; the caller makes a new one.
    let now = sim.now;
    assert!(sim
        .conn_mut(c, conn)
        .send_message(now, tagged(1, Bytes::new()))
        .is_err());
    let again = sim.connect(c, s, OSD);
    assert_ne!(again, conn);
    sim.send(c, again, tagged(2, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.inbox_tags(s) == vec![2]);
}

#[test]
fn idle_lossless_peer_parks_in_standby_until_it_has_something_to_send() {
    let (mut sim, c, s) = pair(8, Policy::lossless_peer(0), Policy::lossless_peer(0));
    let conn = sim.connect(c, s, OSD);
    sim.send(c, conn, tagged(1, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.nodes[s].inbox.len() == 1);
    sim.run_for(Duration::from_millis(10)); // acks flow
    sim.cut(c, conn);
    assert_eq!(sim.conn(c, conn).phase(), Phase::Standby);
    let dials = sim.dials.len();
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.dials.len(), dials, "standby does not redial by itself");
    sim.send(c, conn, tagged(2, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.nodes[s].inbox.len() == 2);
    assert_eq!(sim.inbox_tags(s), vec![1, 2]);
}

#[test]
fn server_policy_never_dials_back() {
    let (mut sim, c, s) = pair(9, Policy::lossless_client(0), Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.send(c, conn, tagged(1, Bytes::new()));
    sim.drive_until(10_000, |sim| sim.nodes[s].inbox.len() == 1);
    let sc = server_conn(&sim, s);
    sim.send(s, sc, tagged(50, Bytes::new()));
    sim.blackhole(s, sc);
    sim.cut(s, sc);
    // The server parks (messages kept); the client reconnects and gets them.
    assert_eq!(sim.conn(s, sc).phase(), Phase::Standby);
    assert_eq!(sim.dials.iter().filter(|d| d.1 == s).count(), 0);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.inbox_tags(c), vec![50]);
}

#[test]
fn keepalive2_is_echoed() {
    let (mut sim, c, s) = pair(10, Policy::lossy_client(0), Policy::stateless_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.drive_until(10_000, |sim| sim.conn(c, conn).is_open());
    let sent_at = sim.now;
    sim.keepalive(c, conn);
    sim.drive_until(10_000, |sim| {
        sim.notes.contains(&Note::KeepaliveAck(c, conn))
    });
    assert_eq!(sim.conn(c, conn).last_keepalive_ack(), Some(sent_at));
    let sc = server_conn(&sim, s);
    assert!(sim.conn(s, sc).last_keepalive().is_some());
}

#[test]
fn periodic_keepalive_when_configured() {
    let mut sim = Sim::new(11);
    let mut cfg = Sim::config(CLIENT, 1, 40000);
    cfg.options.keepalive_interval = Some(Duration::from_secs(1));
    cfg.policies.default = Policy::lossy_client(0);
    let c = sim.node(cfg);
    let s = node(&mut sim, OSD, 0, 6800, Policy::stateless_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.run_for(Duration::from_millis(5500));
    assert_eq!(sim.count(|n| *n == Note::KeepaliveAck(c, conn)), 5);
}

/// Idle timeout under 100% loss: the session notices within `idle_timeout` and recovers
/// on a new socket with nothing lost.
#[test]
fn idle_timeout_under_total_loss() {
    let mut sim = Sim::new(12);
    let mut cfg = Sim::config(CLIENT, 1, 40000);
    cfg.options.idle_timeout = Duration::from_secs(2);
    cfg.policies.default = Policy::lossless_client(0);
    let c = sim.node(cfg);
    let s = node(&mut sim, OSD, 0, 6800, Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.drive_until(10_000, |sim| sim.conn(c, conn).is_open());
    sim.blackhole(c, conn);
    sim.send(c, conn, tagged(1, Bytes::new()));
    let t0 = sim.now;
    sim.drive_until(100_000, |sim| sim.faults(c).contains(&"idle_timeout"));
    let took = sim.now.saturating_duration_since(t0);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
        "{took:?}"
    );
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.inbox_tags(s), vec![1], "redelivered on the new socket");
}

#[test]
fn handshake_that_stalls_times_out() {
    let (mut sim, c, s) = pair(13, Policy::lossless_client(0), Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    sim.send(c, conn, tagged(1, Bytes::new()));
    // Let the dial complete, then lose everything on that socket.
    sim.drive_until(1000, |sim| {
        sim.conn(c, conn).phase() == Phase::Connecting
            && sim.dials.len() == 1
            && sim.count(|n| matches!(n, Note::Dial(..))) == 1
            && sim.now > msgr::time::Instant::from_nanos(1_000_100_000)
    });
    sim.blackhole(c, conn);
    sim.drive_until(100_000, |sim| sim.faults(c).contains(&"ready_timeout"));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.inbox_tags(s), vec![1]);
}

#[test]
fn refused_dials_back_off_exponentially() {
    let mut sim = Sim::new(14);
    let mut cfg = Sim::config(CLIENT, 1, 40000);
    cfg.options.max_backoff = Duration::from_secs(2);
    cfg.policies.default = Policy::lossless_client(0);
    let c = sim.node(cfg);
    let s = node(&mut sim, OSD, 0, 6800, Policy::stateful_server(0));
    sim.set_listening(s, false);
    let conn = sim.connect(c, s, OSD);
    sim.send(c, conn, tagged(1, Bytes::new()));
    sim.run_for(Duration::from_secs(10));
    let times: Vec<_> = sim.dials.iter().map(|d| d.0).collect();
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_millis() as u64)
        .collect();
    // Each gap is the backoff plus the refused dial's round trip (100 µs).
    assert_eq!(
        gaps.iter().take(5).copied().collect::<Vec<_>>(),
        vec![200, 400, 800, 1600, 2000]
    );
    assert!(sim.count(|n| matches!(n, Note::Refused(..))) >= 5);
    // The server comes up: the next attempt connects and delivers.
    sim.set_listening(s, true);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.inbox_tags(s), vec![1]);
}

#[test]
fn half_accepted_connection_with_nothing_to_say_is_dropped() {
    let mut sim = Sim::new(15);
    let s = node(&mut sim, OSD, 0, 6800, Policy::stateful_server(0));
    let r = sim.raw_connect(s, 50000);
    sim.run_for(Duration::from_millis(1));
    sim.raw_send(r, msgr::wire::BANNER);
    sim.raw_close(r);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.count(|n| matches!(n, Note::Reset(x, _) if *x == s)), 1);
    assert!(sim.conns(s).iter().all(|&c| sim.conn(s, c).is_closed()));
}

/// Throttles stop the reader (TCP backpressure) instead of buffering in the engine, and
/// reading resumes when the dispatcher releases budget.
#[test]
fn message_throttle_holds_the_reader() {
    let mut sim = Sim::new(16);
    let c = node(&mut sim, CLIENT, 1, 40000, Policy::lossless_client(0));
    let mut server = Policy::stateful_server(0);
    let msgs = Throttle::new("policy_messages", 3);
    server.throttles = RecvThrottles {
        messages: Some(msgs.clone()),
        bytes: None,
        dispatch: None,
    };
    let mut cfg = Sim::config(OSD, 0, 6800);
    cfg.policies.default = server;
    let s = sim.node(cfg);
    sim.nodes[s].hold_throttle = true;
    let conn = sim.connect(c, s, OSD);
    for i in 0..10 {
        sim.send(c, conn, tagged(i, Bytes::new()));
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.inbox_tags(s),
        vec![0, 1, 2],
        "three in flight, then the reader stops"
    );
    assert_eq!(msgs.current(), 3);
    sim.release_held(s);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.inbox_tags(s).len(), 6);
    sim.nodes[s].hold_throttle = false;
    sim.release_held(s);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.inbox_tags(s), (0..10).collect::<Vec<_>>());
    assert_eq!(msgs.current(), 0);
}

#[test]
fn acks_empty_the_sent_list() {
    let (mut sim, c, s) = pair(17, Policy::lossless_client(0), Policy::stateful_server(0));
    let conn = sim.connect(c, s, OSD);
    for i in 0..50 {
        sim.send(c, conn, tagged(i, Bytes::new()));
    }
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.conn(c, conn).unacked(), 0);
    assert_eq!(sim.conn(c, conn).out_seq(), 50);
    assert_eq!(sim.conn(s, server_conn(&sim, s)).in_seq(), 50);
}

#[test]
fn mark_down_drops_the_queue_and_tells_no_dispatcher() {
    let (mut sim, c, s) = pair(18, Policy::lossless_client(0), Policy::stateful_server(0));
    sim.set_listening(s, false);
    let conn = sim.connect(c, s, OSD);
    for i in 0..3 {
        sim.send(c, conn, tagged(i, Bytes::new()));
    }
    sim.mark_down(c, conn);
    assert!(sim.conn(c, conn).is_closed());
    assert_eq!(sim.conn(c, conn).stats().discarded, 3);
    assert!(!sim.notes.iter().any(|n| matches!(n, Note::Reset(..))));
    let dials = sim.dials.len();
    sim.run_for(Duration::from_secs(30));
    assert_eq!(
        sim.dials.len(),
        dials,
        "a marked-down connection stays down"
    );
}

/// A randomized stress run over several lossless peers: random sends in both directions,
/// random socket cuts (Ceph's `ms_inject_socket_failures`), arbitrary chunking. Every
/// (sender, receiver) stream must arrive complete, in order, without duplicates.
#[test]
fn randomized_stress_with_socket_failures() {
    for seed in 1..=4u64 {
        let mut sim = Sim::new(seed);
        sim.chunking = true;
        let n = 4;
        let nodes: Vec<NodeId> = (0..n)
            .map(|i| {
                node(
                    &mut sim,
                    OSD,
                    i as i64,
                    6800 + i as u16,
                    Policy::lossless_peer(0),
                )
            })
            .collect();
        let mut sent = vec![vec![0u64; n]; n];
        for op in 0..3000u64 {
            let from = sim.rng.below(n as u64) as usize;
            let mut to = sim.rng.below(n as u64 - 1) as usize;
            if to >= from {
                to += 1;
            }
            let conn = sim.connect(nodes[from], nodes[to], OSD);
            let tag = ((from as u64) << 48) | sent[from][to];
            sent[from][to] += 1;
            let len = sim.rng.below(2000) as usize;
            sim.send(
                nodes[from],
                conn,
                tagged(tag, Bytes::from(vec![(tag % 251) as u8; len])),
            );
            if op % 23 == 0 {
                sim.cut(nodes[from], conn);
            }
            let pause = sim.rng.below(200);
            sim.run_for(Duration::from_micros(pause));
        }
        sim.run_for(Duration::from_secs(60));
        let adopted =
            sim.count(|n| matches!(n, Note::Outcome(_, _, msgr::proto::AcceptOutcome::Adopted)));
        let waits = sim
            .notes
            .iter()
            .filter(|n| matches!(n, Note::Fault(_, _, "wait")))
            .count();
        let connects = sim.count(|n| matches!(n, Note::Connected(..)));
        eprintln!(
            "seed {seed}: {connects} connects, {adopted} replaces, {waits} waits, {} notes",
            sim.notes.len()
        );
        assert!(
            connects > 50 && adopted > 10,
            "the run exercised reconnects and replaces"
        );
        for to in 0..n {
            for (from, row) in sent.iter().enumerate() {
                let got: Vec<u64> = sim.nodes[nodes[to]]
                    .inbox
                    .iter()
                    .map(|(_, m)| sim::tag_of(m))
                    .filter(|t| (t >> 48) as usize == from)
                    .map(|t| t & 0xffff_ffff_ffff)
                    .collect();
                assert_eq!(
                    got,
                    (0..row[to]).collect::<Vec<_>>(),
                    "seed {seed}: {from} → {to}"
                );
            }
            for (_, m) in &sim.nodes[nodes[to]].inbox {
                let t = sim::tag_of(m);
                assert!(
                    m.data.iter().all(|&b| b == (t % 251) as u8),
                    "payload intact"
                );
            }
        }
    }
}

//! The messenger's scenario tests over real loopback TCP, on both transports (Ceph's
//! `test_msgr` scenarios, docs/ceph-msgr-wire.md §7, run against `Messenger` itself rather
//! than the bare engine that `sessions.rs` drives in the simulator).
//!
//! Each scenario is a function of the [`TransportKind`], instantiated as `<name>_posix` and
//! `<name>_simple`. Test messages carry (stream, seq, data seed) so that every receiver
//! checks FIFO order and byte equality by itself (see `mtest`). Every wait is bounded, every
//! test has a watchdog, and every messenger is shut down and waited for. Traffic stays on
//! 127.0.0.1.
// A test driver: it reads the clock to bound waits and measure timeouts (clippy.toml bans
// `Instant::now` for the sans-IO core only).
#![allow(clippy::disallowed_methods)]

mod mtest;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::features;
use msgr::messenger::{ConnectionRef, DispatchPanic, Dispatcher, Incoming, TransportKind};
use msgr::msg::{Fsid, MCommand, Message, MessageHeader, MsgType, TypedMessage};
use msgr::proto::{Phase, Policy, RecvThrottles, SendError, Throttle};
use msgr::wire::banner::{ServerHello, SERVER_HELLO_LEN};
use msgr::wire::{ConnectReply, ConnectReplyRepr, ConnectRepr, HeaderRepr, Tag, BANNER};
use mtest::*;

const S: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---------------------------------------------------------------------------------------
// 1. Simple send/receive, loopback, mark_down, send to a server that is gone
// ---------------------------------------------------------------------------------------

/// Ceph's SimpleTest on v1: round trips both ways, a connection to ourselves, mark_down,
/// and a connection to a server that has shut down (refused, per the lossy client policy).
fn simple(kind: TransportKind) {
    let _g = begin("simple", secs(30));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossy_client(0))
        .echo(true)
        .start();

    // Client → server, echoed back.
    let conn = client.connect(&server);
    let mut up = Stream::new(conn.clone());
    for i in 0..20 {
        assert!(up.send(i * 100));
    }
    wait_for("20 echoes at the client", 5 * S, || {
        client.rec.got(up.id | REPLY) == 20
    });
    server.rec.stream(up.id).exactly(20).unwrap();
    client.rec.stream(up.id | REPLY).exactly(20).unwrap();
    assert!(conn.is_connected());
    assert_eq!(conn.peer_type(), Some(EntityType::OSD));
    assert!(conn.is_lossy(), "the server's policy is lossy");
    assert_eq!(client.rec.count(|e| *e == Ev::Connect(conn.id())), 1);
    assert_eq!(client.rec.count(|e| *e == Ev::FastConnect(conn.id())), 1);
    // One dial, counted once (the simple transport used to count each dial twice, and so
    // every first connect as a reconnect).
    assert_eq!((client.perf("dials"), client.perf("reconnects")), (1, 0));
    let accepted = server.rec.accepted();
    assert_eq!(accepted.len(), 1, "{:?}", server.rec.log());
    let sconn = server.rec.conn(accepted[0]).unwrap();
    assert_eq!(sconn.peer_type(), Some(EntityType::CLIENT));
    assert!(server.rec.has(&Ev::FastAccept(sconn.id())));

    // Server → client on the accepted connection, echoed back by the client.
    let mut down = Stream::new(sconn.clone());
    for i in 0..10 {
        assert!(down.send(i * 1000));
    }
    wait_for("10 echoes at the server", 5 * S, || {
        server.rec.got(down.id | REPLY) == 10
    });
    client.rec.stream(down.id).exactly(10).unwrap();
    server.rec.stream(down.id | REPLY).exactly(10).unwrap();

    // Loopback: the server connects to itself. There is no local connection (Ceph's
    // `get_loopback_connection`): it goes over TCP, and works here only because
    // stateless_server sessions are anonymous. Under a policy that registers sessions the
    // accepting side finds its own outgoing session under the same address and treats it
    // as a racing peer (WAIT for lossless policies, a lossy replace that resets the dialing
    // side for lossy ones), so connecting to oneself does not work there.
    let me = server.m.connect_to(server.addr, EntityType::OSD);
    let mut lo = Stream::new(me.clone());
    for _ in 0..5 {
        assert!(lo.send(64));
    }
    wait_for("5 loopback echoes", 5 * S, || {
        server.rec.got(lo.id | REPLY) == 5
    });
    server.rec.stream(lo.id).exactly(5).unwrap();
    server.rec.stream(lo.id | REPLY).exactly(5).unwrap();
    me.mark_down();

    // mark_down: not connected, sends refused, no dispatcher told on our side; the lossy
    // server sees the socket close and resets its session.
    conn.mark_down();
    assert!(!conn.is_connected());
    assert_eq!(conn.phase(), Phase::Closed);
    assert!(conn.send_message(data_msg(up.id, 99, 0)).is_err());
    wait_for("the server resets its session", 5 * S, || {
        server.rec.has(&Ev::Reset(sconn.id()))
    });
    assert_eq!(client.rec.count(|e| *e == Ev::Reset(conn.id())), 0);

    // A new connection works.
    let conn2 = client.connect(&server);
    assert_ne!(conn2, conn);
    let mut s2 = Stream::new(conn2.clone());
    assert!(s2.send(10));
    wait_for("echo on the new connection", 5 * S, || {
        client.rec.got(s2.id | REPLY) == 1
    });

    // The server goes away: the open lossy session resets; a new connection is refused
    // (and keeps retrying with backoff, telling the dispatcher each time).
    shutdown_all(&[&server]);
    wait_for("the client resets its open session", 5 * S, || {
        client.rec.has(&Ev::Reset(conn2.id()))
    });
    assert!(!conn2.is_connected());
    let conn3 = client.connect(&server);
    assert_ne!(conn3, conn2, "a reset session is not reused");
    let mut s3 = Stream::new(conn3.clone());
    assert!(s3.send(10));
    if kind == TransportKind::Dpdk {
        // A userspace stack that stopped answers nothing (a host gone, not a closed port):
        // no RST, so no refusal; each connect times out (the stack's handshake timeout)
        // and the session keeps redialing with backoff.
        let dials = client.perf("dials");
        wait_for("two more dials that fail", 15 * S, || {
            client.perf("dials") >= dials + 2
        });
        assert!(client.perf("faults.connect_failed") >= 1);
    } else {
        wait_for("connection refused, twice", 5 * S, || {
            client.rec.count(|e| *e == Ev::Refused(conn3.id())) >= 2
        });
        assert!(client.perf("faults.refused") >= 2);
    }
    assert!(!conn3.is_connected());
    assert_eq!(client.rec.got(s3.id | REPLY), 0);
    shutdown_all(&[&client]);
    server.rec.assert_clean();
    client.rec.assert_clean();
}

/// Regression (simple transport): a session's events were delivered by whichever thread
/// drained them from the engine — its reader, its writer, or any thread sending on it — so a
/// message drained by one thread could reach the dispatcher after a later one drained by
/// another. Here a server-side thread keeps sending keepalives on the session (each send
/// drains the engine) while the client streams; every message must still arrive in order.
fn delivery_order_under_concurrent_drains(kind: TransportKind) {
    let _g = begin("delivery_order_under_concurrent_drains", secs(30));
    let server = NodeBuilder::server(kind, Policy::stateful_server(0))
        .echo(false)
        .start();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0)).start();
    let c = client.connect(&server);
    let mut s = Stream::new(c.clone());
    assert!(s.send(0));
    wait_for("the session opens", 5 * S, || server.rec.got(s.id) == 1);
    let sconn = server.rec.conn(server.rec.accepted()[0]).unwrap();
    const N: u64 = 20_000;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                sconn.send_keepalive();
                std::thread::yield_now();
            }
        });
        for i in 1..N {
            assert!(s.send((i % 64) as usize));
        }
        wait_for_detail(
            "every message",
            secs(20),
            || server.rec.got(s.id) == N as usize,
            || format!("{} of {N}", server.rec.got(s.id)),
        );
        stop.store(true, Ordering::Relaxed);
    });
    server.rec.assert_clean();
    server.rec.stream(s.id).exactly(N).unwrap();
    shutdown_all(&[&client, &server]);
}

// ---------------------------------------------------------------------------------------
// 2. Many connections
// ---------------------------------------------------------------------------------------

/// 64 client messengers × 5 messages to one server, then one client messenger with lossless
/// sessions to four servers (which answer on the fast path, from their network threads).
fn many_connections(kind: TransportKind) {
    let _g = begin_exclusive("many_connections", secs(60));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0)).start();
    let clients: Vec<Node> = (0..64)
        .map(|i| {
            NodeBuilder::client(kind, Policy::lossy_client(0))
                .workers(1)
                .label(&format!("client{i}"))
                .start()
        })
        .collect();
    let mut streams: Vec<Stream> = clients
        .iter()
        .map(|c| Stream::new(c.connect(&server)))
        .collect();
    for round in 0..5 {
        for s in &mut streams {
            assert!(s.send(round * 4000 + (s.id as usize % 977)));
        }
    }
    wait_for_detail(
        "all 320 echoes",
        secs(20),
        || {
            clients
                .iter()
                .zip(&streams)
                .all(|(c, s)| c.rec.got(s.id | REPLY) == 5)
        },
        || {
            format!(
                "server got {} messages",
                server.rec.msgs.load(Ordering::Relaxed)
            )
        },
    );
    let mut server_conns = std::collections::BTreeSet::new();
    for (c, s) in clients.iter().zip(&streams) {
        let got = server.rec.stream(s.id);
        got.exactly(5).unwrap();
        c.rec.stream(s.id | REPLY).exactly(5).unwrap();
        assert!(
            got.conns.windows(2).all(|w| w[0] == w[1]),
            "one stream, one server connection"
        );
        server_conns.insert(got.conns[0]);
        assert_eq!(c.rec.count(|e| matches!(e, Ev::Connect(_))), 1);
        c.rec.assert_clean();
    }
    assert_eq!(server_conns.len(), 64, "64 distinct sessions on the server");
    assert_eq!(server.rec.accepted().len(), 64);
    assert_eq!(server.perf("sessions_accepted"), 64);
    assert_eq!(server.perf("msgs_in"), 320);
    server.rec.assert_clean();
    let mut all: Vec<&Node> = clients.iter().collect();
    all.push(&server);
    shutdown_all(&all);

    // One client, four servers (lossless sessions, fast-path echo).
    let servers: Vec<Node> = (0..4)
        .map(|i| {
            NodeBuilder::new(kind, EntityType::OSD, i)
                .policy(Policy::stateful_server(0))
                .echo(true)
                .fast(true)
                .start()
        })
        .collect();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0)).start();
    let mut streams: Vec<Stream> = servers
        .iter()
        .map(|s| Stream::new(client.connect(s)))
        .collect();
    for i in 0..50 {
        for s in &mut streams {
            assert!(s.send((i * 331) % 20_000));
        }
    }
    wait_for("200 echoes from four servers", secs(20), || {
        streams.iter().all(|s| client.rec.got(s.id | REPLY) == 50)
    });
    for (srv, s) in servers.iter().zip(&streams) {
        srv.rec.stream(s.id).exactly(50).unwrap();
        client.rec.stream(s.id | REPLY).exactly(50).unwrap();
        assert_eq!(srv.perf("fast_dispatched"), 50, "echoed on the fast path");
        srv.rec.assert_clean();
    }
    let conns = client.m.connections();
    assert_eq!(conns.len(), 4, "{conns:?}");
    assert!(conns.iter().all(|c| c.is_connected()));
    // mark_down by address, then everything.
    client.m.mark_down(&servers[0].addr);
    assert!(!streams[0].conn.is_connected());
    assert!(streams[1..].iter().all(|s| s.conn.is_connected()));
    assert_eq!(client.m.connections().len(), 3);
    client.m.mark_down_all();
    assert!(streams.iter().all(|s| s.conn.phase() == Phase::Closed));
    assert!(client.m.connections().is_empty());
    assert_eq!(
        client.rec.count(|e| matches!(e, Ev::Reset(_))),
        0,
        "mark_down tells nobody"
    );
    client.rec.assert_clean();
    let mut all: Vec<&Node> = servers.iter().collect();
    all.push(&client);
    shutdown_all(&all);
}

/// One messenger standing in for many clients (`connect_as`): each identity is its own
/// session on the server (its own nonce), replies come back on the session that asked, and
/// the registry keeps only the messenger's own session.
fn client_identities(kind: TransportKind) {
    let _g = begin_exclusive("client_identities", secs(60));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossy_client(0)).start();
    let mut conns = vec![client.connect(&server)];
    for i in 1..16u32 {
        conns.push(client.m.connect_as(
            server.addr,
            server.ty,
            EntityName::new(EntityType::CLIENT, 1000 + i64::from(i)),
            7000 + i,
        ));
    }
    let mut streams: Vec<Stream> = conns.into_iter().map(Stream::new).collect();
    for round in 0..5 {
        for s in &mut streams {
            assert!(s.send(round * 1000 + (s.id as usize % 499)));
        }
    }
    wait_for("80 echoes on 16 sessions", secs(20), || {
        streams.iter().all(|s| client.rec.got(s.id | REPLY) == 5)
    });
    let mut server_conns = std::collections::BTreeSet::new();
    for s in &streams {
        let got = server.rec.stream(s.id);
        got.exactly(5).unwrap();
        let back = client.rec.stream(s.id | REPLY);
        back.exactly(5).unwrap();
        assert!(
            back.conns.iter().all(|&c| c == s.conn.id()),
            "replies came back on the session that asked"
        );
        server_conns.insert(got.conns[0]);
    }
    assert_eq!(server_conns.len(), 16, "16 sessions on the server");
    let peers: std::collections::BTreeSet<(String, u32)> = server
        .m
        .connections()
        .iter()
        .filter_map(|c| {
            c.peer_addr()
                .map(|a| (format!("{:?}", c.peer_type()), a.nonce))
        })
        .collect();
    assert_eq!(peers.len(), 16, "16 distinct client nonces: {peers:?}");
    assert_eq!(client.m.connections().len(), 16);
    assert_eq!(
        client.connect(&server).id(),
        streams[0].conn.id(),
        "connect_to finds the messenger's own session only"
    );
    // mark_down by address reaches the registered session alone.
    client.m.mark_down(&server.addr);
    assert!(!streams[0].conn.is_connected());
    assert!(streams[1..].iter().all(|s| s.conn.is_connected()));
    client.rec.assert_clean();
    server.rec.assert_clean();
    shutdown_all(&[&client, &server]);
}

// ---------------------------------------------------------------------------------------
// 3. Lossy vs lossless
// ---------------------------------------------------------------------------------------

/// Ceph's StatelessTest: stateless_server + lossy_client. The server keeps no state across
/// connections; when the server drops the session the lossy client resets (and a new
/// connection works).
fn stateless_lossy(kind: TransportKind) {
    let _g = begin("stateless_lossy", secs(30));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossy_client(0)).start();

    let c1 = client.connect(&server);
    let mut s1 = Stream::new(c1.clone());
    assert!(s1.send(100));
    wait_for("first echo", 5 * S, || client.rec.got(s1.id | REPLY) == 1);
    c1.mark_down();
    assert!(!c1.is_connected());

    // The server loses state: the next connection is a new session there.
    let c2 = client.connect(&server);
    assert_ne!(c1, c2);
    let mut s2 = Stream::new(c2.clone());
    assert!(s2.send(100));
    wait_for("second echo", 5 * S, || client.rec.got(s2.id | REPLY) == 1);
    let acc = server.rec.accepted();
    assert_eq!(acc.len(), 2, "two sessions: {:?}", server.rec.log());
    assert_ne!(acc[0], acc[1]);
    wait_for("the server resets the first session", 5 * S, || {
        server.rec.has(&Ev::Reset(acc[0]))
    });
    assert_eq!(
        server.perf("registered_sessions"),
        0,
        "stateless_server does not register lossy clients"
    );

    // The server drops the session: the lossy client notices (a keepalive write or the
    // EOF) and resets.
    let sc2 = server.rec.conn(acc[1]).unwrap();
    sc2.mark_down();
    assert!(!sc2.is_connected());
    c2.send_keepalive();
    wait_for("the client resets", 5 * S, || {
        client.rec.has(&Ev::Reset(c2.id()))
    });
    assert!(!c2.is_connected());
    assert!(
        c2.send_message(data_msg(s2.id, 1, 0)).is_err(),
        "a reset lossy session stays closed"
    );

    let c3 = client.connect(&server);
    assert_ne!(c3, c2);
    let mut s3 = Stream::new(c3.clone());
    assert!(s3.send(100));
    wait_for("third echo", 5 * S, || client.rec.got(s3.id | REPLY) == 1);
    assert_eq!(client.rec.count(|e| matches!(e, Ev::RemoteReset(_))), 0);
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

/// Ceph's StatefulTest: stateful_server + lossless_client. The server keeps the session
/// when the client goes away (its new connection from scratch is detected as a remote
/// reset); when the server drops the session, the client's reconnect gets RESETSESSION
/// (remote reset on the client) and the session starts over; and socket failures in the
/// middle of traffic lose and duplicate nothing.
fn stateful_lossless(kind: TransportKind) {
    let _g = begin("stateful_lossless", secs(40));
    let server = NodeBuilder::server(kind, Policy::stateful_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0)).start();

    let c1 = client.connect(&server);
    let mut s1 = Stream::new(c1.clone());
    assert!(s1.send(100));
    wait_for("first echo", 5 * S, || client.rec.got(s1.id | REPLY) == 1);
    assert!(!c1.is_lossy());
    let sid = server.rec.accepted()[0];

    // The client starts over (mark_down, new connection): the server keeps its session
    // object, sees the peer's reset, and reuses it.
    c1.mark_down();
    let c2 = client.connect(&server);
    let mut s2 = Stream::new(c2.clone());
    assert!(s2.send(100));
    wait_for("echo after the client's restart", 5 * S, || {
        client.rec.got(s2.id | REPLY) == 1
    });
    wait_for("remote reset on the server", 5 * S, || {
        server.rec.has(&Ev::RemoteReset(sid))
    });
    assert_eq!(
        server.rec.accepted(),
        vec![sid, sid],
        "the server's session object is kept: {:?}",
        server.rec.log()
    );
    assert_eq!(server.rec.stream(s2.id).conns, vec![sid]);
    assert_eq!(client.rec.count(|e| matches!(e, Ev::RemoteReset(_))), 0);

    // The server drops the session: the client reconnects by itself, learns of the reset
    // (RESETSESSION), and the session works again.
    let sc = server.rec.conn(sid).unwrap();
    sc.mark_down();
    assert!(!sc.is_connected());
    wait_for("remote reset on the client", 5 * S, || {
        client.rec.has(&Ev::RemoteReset(c2.id()))
    });
    wait_for("the client reconnected", 5 * S, || {
        client.rec.count(|e| *e == Ev::Connect(c2.id())) >= 2 && c2.is_connected()
    });
    let mut s3 = Stream::new(c2.clone());
    assert!(s3.send(100));
    wait_for("echo on the restarted session", 5 * S, || {
        client.rec.got(s3.id | REPLY) == 1
    });
    let acc = server.rec.accepted();
    assert_eq!(acc.len(), 3);
    assert_ne!(acc[2], sid, "a new session on the server");
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();

    // Socket failures mid-stream (injected on the client): the session survives, nothing
    // is lost or duplicated in either direction.
    let server = NodeBuilder::server(kind, Policy::stateful_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0))
        .inject(40)
        .echo(true)
        .start();
    let c = client.connect(&server);
    let mut up = Stream::new(c.clone());
    assert!(up.send(10));
    wait_for("the session opens", 10 * S, || {
        server.rec.accepted().len() == 1
    });
    let sc = server.rec.conn(server.rec.accepted()[0]).unwrap();
    let mut down = Stream::new(sc.clone());
    for i in 1..400 {
        assert!(up.send(i * 37 % 9000));
        assert!(down.send(i * 53 % 9000));
    }
    wait_for_detail(
        "every message and echo, both ways",
        secs(25),
        || client.rec.got(up.id | REPLY) == 400 && server.rec.got(down.id | REPLY) == 399,
        || {
            format!(
                "up {} / echo {} ; down {} / echo {}",
                server.rec.got(up.id),
                client.rec.got(up.id | REPLY),
                client.rec.got(down.id),
                server.rec.got(down.id | REPLY)
            )
        },
    );
    server.rec.stream(up.id).exactly(400).unwrap();
    client.rec.stream(up.id | REPLY).exactly(400).unwrap();
    client.rec.stream(down.id).exactly(399).unwrap();
    server.rec.stream(down.id | REPLY).exactly(399).unwrap();
    assert!(client.perf("injected_failures") > 0);
    assert!(
        client.rec.count(|e| *e == Ev::Connect(c.id())) > 1,
        "it really reconnected"
    );
    assert_eq!(
        server
            .rec
            .accepted()
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "one session on the server"
    );
    assert_eq!(
        client
            .rec
            .count(|e| matches!(e, Ev::Reset(_) | Ev::RemoteReset(_))),
        0
    );
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

// ---------------------------------------------------------------------------------------
// 4. Reconnect with replay
// ---------------------------------------------------------------------------------------

/// lossless_peer on both sides, socket failures injected on both, thousands of messages
/// both ways: nothing lost, duplicated or reordered, every byte intact.
fn reconnect_replay(kind: TransportKind) {
    let _g = begin_exclusive("reconnect_replay", secs(60));
    let mk = |num, inject| {
        NodeBuilder::new(kind, EntityType::OSD, num)
            .policy(Policy::lossless_peer(0))
            .inject(inject)
            .options(|o| {
                o.initial_backoff = Duration::from_millis(20);
                o.max_backoff = Duration::from_millis(200);
                // Injected failures close sockets, they never lose bytes silently: a
                // handshake that stalls is a bug, which the ready timeout must not hide.
                o.ready_timeout = secs(60);
            })
            .start()
    };
    let a = mk(1, 30);
    let b = mk(2, 45);
    let ab = a.connect(&b);
    let mut up = Stream::new(ab.clone());
    assert!(up.send(1));
    wait_for("the session opens", 10 * S, || b.rec.got(up.id) == 1);
    let ba = b.m.connect_to(a.addr, EntityType::OSD);
    assert_eq!(
        Some(ba.id()),
        b.rec.accepted().first().copied(),
        "connect_to finds the accepted session"
    );
    let mut down = Stream::new(ba.clone());
    let mut rng = Rng::new(4);
    const N: u64 = 3000;
    for _ in 1..N {
        let len = if rng.percent(2) {
            200_000
        } else {
            rng.below(8192) as usize
        };
        assert!(up.send(len));
        let len = if rng.percent(2) {
            200_000
        } else {
            rng.below(8192) as usize
        };
        assert!(down.send(len));
    }
    assert!(down.send(7));
    wait_for_detail(
        "every message both ways",
        secs(30),
        || b.rec.got(up.id) == N as usize && a.rec.got(down.id) == N as usize,
        || {
            format!(
                "a→b {} b→a {}\na: {}\nb: {}",
                b.rec.got(up.id),
                a.rec.got(down.id),
                a.describe(),
                b.describe()
            )
        },
    );
    b.rec.stream(up.id).exactly(N).unwrap();
    a.rec.stream(down.id).exactly(N).unwrap();
    let faults = a.perf("injected_failures") + b.perf("injected_failures");
    eprintln!(
        "{kind:?}: {faults} injected failures, a dials {} b dials {} replaced {}",
        a.perf("dials"),
        b.perf("dials"),
        a.perf("replaced") + b.perf("replaced")
    );
    assert!(faults >= 10, "the run saw socket failures ({faults})");
    for n in [&a, &b] {
        assert_eq!(
            n.rec.count(|e| matches!(e, Ev::RemoteReset(_))),
            0,
            "{}",
            n.rec.name
        );
        n.rec.assert_clean();
    }
    assert_eq!(a.open_conns().len().max(1), 1);
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------------------------------
// 5. Connection races
// ---------------------------------------------------------------------------------------

/// Ceph's ConnectionRaceTest without breakpoints: two lossless_peer_reuse messengers dial
/// each other at the same moment and send at once. Both end with one working session, and
/// everything arrives exactly once, in order. Repeated.
fn connection_race(kind: TransportKind) {
    let _g = begin("connection_race", secs(60));
    for iter in 0..6 {
        let mk = |num| {
            NodeBuilder::new(kind, EntityType::OSD, num)
                .policy(Policy::lossless_peer_reuse(0))
                .start()
        };
        let a = mk(1);
        let b = mk(2);
        let barrier = std::sync::Barrier::new(2);
        let (sa, sb) = std::thread::scope(|sc| {
            let ta = sc.spawn(|| {
                barrier.wait();
                let mut s = Stream::new(a.connect(&b));
                for i in 0..50 {
                    assert!(s.send(i * 10));
                }
                s
            });
            let tb = sc.spawn(|| {
                barrier.wait();
                let mut s = Stream::new(b.connect(&a));
                for i in 0..50 {
                    assert!(s.send(i * 10));
                }
                s
            });
            (ta.join().unwrap(), tb.join().unwrap())
        });
        wait_for_detail(
            "both streams delivered",
            secs(10),
            || b.rec.got(sa.id) == 50 && a.rec.got(sb.id) == 50,
            || format!("iter {iter}: a {:?}\nb {:?}", a.rec.log(), b.rec.log()),
        );
        b.rec.stream(sa.id).exactly(50).unwrap();
        a.rec.stream(sb.id).exactly(50).unwrap();
        wait_for_detail(
            "one open session on each side",
            secs(5),
            || a.open_conns().len() == 1 && b.open_conns().len() == 1,
            || {
                format!(
                    "iter {iter}: a {:?} b {:?}",
                    a.m.connections(),
                    b.m.connections()
                )
            },
        );
        assert!(
            sa.conn.is_connected() && sb.conn.is_connected(),
            "iter {iter}"
        );
        assert_eq!(a.open_conns()[0], sa.conn, "iter {iter}");
        assert_eq!(b.open_conns()[0], sb.conn, "iter {iter}");
        assert_eq!(a.connect(&b), sa.conn);
        assert_eq!(b.connect(&a), sb.conn);
        // Both sides still talk on it.
        let mut sa = sa;
        let mut sb = sb;
        assert!(sa.send(5) && sb.send(5));
        wait_for("one more each way", 5 * S, || {
            b.rec.got(sa.id) == 51 && a.rec.got(sb.id) == 51
        });
        for n in [&a, &b] {
            assert_eq!(n.rec.count(|e| matches!(e, Ev::RemoteReset(_))), 0);
            n.rec.assert_clean();
        }
        shutdown_all(&[&a, &b]);
    }
}

// ---------------------------------------------------------------------------------------
// 6. mark_down during dispatch
// ---------------------------------------------------------------------------------------

/// Ceph's MarkdownDispatcher, shared by two server messengers: it remembers the connections
/// it sees and, while dispatching a message (with its own lock held), marks down another one
/// — possibly of the other messenger — or, every seventh time, the message's own.
#[derive(Default)]
struct Markdown {
    st: Mutex<MarkdownState>,
    marked: AtomicU64,
    marked_own: AtomicU64,
    /// Stop marking down (the end of the test: sessions opened from here on survive).
    off: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct MarkdownState {
    conns: Vec<ConnectionRef>,
    last_mark: bool,
    n: u64,
}

impl Markdown {
    fn forget(&self, con: &ConnectionRef) {
        self.st.lock().unwrap().conns.retain(|c| c != con);
    }
}

impl Dispatcher for Markdown {
    fn ms_handle_fast_accept(&self, con: &ConnectionRef) {
        let mut st = self.st.lock().unwrap();
        if !st.conns.contains(con) {
            st.conns.push(con.clone());
        }
    }
    fn ms_dispatch(&self, m: &Incoming) -> bool {
        if m.msg.ty() != T_DATA || self.off.load(Ordering::Relaxed) {
            return false;
        }
        let mut st = self.st.lock().unwrap();
        st.n += 1;
        if !st.conns.contains(&m.conn) {
            st.conns.push(m.conn.clone());
        }
        if st.conns.len() >= 2 || st.last_mark {
            st.last_mark = true;
            if st.n.is_multiple_of(7) {
                m.conn.mark_down();
                st.conns.retain(|c| *c != m.conn);
                self.marked_own.fetch_add(1, Ordering::Relaxed);
            } else if let Some(i) = st.conns.iter().position(|c| *c != m.conn) {
                let other = st.conns.remove(i);
                other.mark_down();
                self.marked.fetch_add(1, Ordering::Relaxed);
            }
            if st.conns.is_empty() {
                st.last_mark = false;
            }
        }
        // Not consumed: the recorder behind records it.
        false
    }
    fn ms_handle_reset(&self, con: &ConnectionRef) -> bool {
        self.forget(con);
        false
    }
    fn ms_handle_remote_reset(&self, con: &ConnectionRef) {
        self.forget(con);
    }
}

/// Ceph's MarkdownTest: a client sends one message to each of two servers per iteration
/// while the servers' shared dispatcher marks connections down from inside `ms_dispatch`.
/// No deadlock (watchdog, bounded waits), and no lost delivery: every message is dispatched
/// unless its session was reset (which the lossy client is told about).
fn markdown_during_dispatch(kind: TransportKind) {
    let _g = begin("markdown_during_dispatch", secs(60));
    let md = Arc::new(Markdown::default());
    let mk = |num| {
        NodeBuilder::new(kind, EntityType::OSD, num)
            .policy(Policy::stateless_server(0))
            .head(md.clone())
            .start()
    };
    let s1 = mk(1);
    let s2 = mk(2);
    let client = NodeBuilder::client(kind, Policy::lossy_client(0)).start();
    let mut streams: HashMap<u64, Stream> = HashMap::new();
    let delivered = |stream: u64, seq: u64| {
        s1.rec.stream(stream).seqs.contains(&seq) || s2.rec.stream(stream).seqs.contains(&seq)
    };
    const ITERS: usize = 200;
    for it in 0..ITERS {
        let mut pending = Vec::new();
        for srv in [&s1, &s2] {
            let c = client.connect(srv);
            let st = streams
                .entry(c.id())
                .or_insert_with(|| Stream::new(c.clone()));
            let seq = st.next;
            if st.send(16) {
                pending.push((c.id(), st.id, seq));
            } else {
                // Reset between connect_to and send: the client was told.
                assert!(client.rec.has(&Ev::Reset(c.id())) || !c.is_connected());
            }
        }
        wait_for_detail(
            "each message dispatched, or its session reset",
            5 * S,
            || {
                pending.iter().all(|&(conn, stream, seq)| {
                    delivered(stream, seq) || client.rec.has(&Ev::Reset(conn))
                })
            },
            || format!("iteration {it}: {pending:?}\nclient: {}", client.describe()),
        );
    }
    // The markdowns stop; one more message to each server, on the session connect_to
    // finds (or a new one): these sessions are never reset, so some always survive (which
    // ones survived the storm above is up to timing).
    md.off.store(true, Ordering::Relaxed);
    for srv in [&s1, &s2] {
        // A session the storm doomed may still be found (its reset is on its way): then
        // the next attempt opens a new one, which nothing marks down any more.
        let mut ok = false;
        for _ in 0..20 {
            let c = client.connect(srv);
            let st = streams
                .entry(c.id())
                .or_insert_with(|| Stream::new(c.clone()));
            let (stream, seq) = (st.id, st.next);
            if st.send(16) {
                wait_for_detail(
                    "the last message dispatched, or its session reset",
                    5 * S,
                    || delivered(stream, seq) || client.rec.has(&Ev::Reset(c.id())),
                    || client.describe(),
                );
                if delivered(stream, seq) && !client.rec.has(&Ev::Reset(c.id())) {
                    ok = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            ok,
            "no session to {} delivered after the markdowns",
            srv.addr
        );
    }
    let marked = md.marked.load(Ordering::Relaxed);
    let marked_own = md.marked_own.load(Ordering::Relaxed);
    let resets = client.rec.count(|e| matches!(e, Ev::Reset(_)));
    eprintln!("{kind:?}: {marked} others and {marked_own} own marked down; {resets} client resets");
    assert!(
        marked >= ITERS as u64 / 2,
        "the dispatcher marked down ({marked})"
    );
    assert!(
        marked_own >= ITERS as u64 / 10,
        "and its own connection ({marked_own})"
    );
    assert!(
        resets as u64 >= marked / 2,
        "the client saw the resets ({resets})"
    );
    // Sessions that were never reset delivered everything they carried.
    let mut survivors = 0;
    for (conn, st) in &streams {
        if client.rec.has(&Ev::Reset(*conn)) {
            let log = if s1.rec.got(st.id) > 0 {
                s1.rec.stream(st.id)
            } else {
                s2.rec.stream(st.id)
            };
            log.prefix().unwrap();
        } else {
            survivors += 1;
            let n = s1.rec.got(st.id) + s2.rec.got(st.id);
            assert_eq!(
                n as u64, st.next,
                "conn {conn}: a surviving session lost messages"
            );
        }
    }
    assert!(survivors >= 1);
    shutdown_all(&[&client, &s1, &s2]);
    for n in [&client, &s1, &s2] {
        n.rec.assert_clean();
    }
}

// ---------------------------------------------------------------------------------------
// 7. Keepalive and idle timeout
// ---------------------------------------------------------------------------------------

/// Keepalives are answered (the ack stamp advances); with `idle_timeout` = 1 s an idle
/// session drops within 2.5 s (Ceph's TimeoutTest) — a lossy one resets (the dispatchers are
/// told), a lossless one parks in standby and picks up where it left off.
fn keepalive_and_idle_timeout(kind: TransportKind) {
    let _g = begin("keepalive_and_idle_timeout", secs(30));
    let idle = |o: &mut msgr::proto::Options| o.idle_timeout = S;
    let server = NodeBuilder::server(kind, Policy::stateless_server(0))
        .options(idle)
        .start();
    let client = NodeBuilder::client(kind, Policy::lossy_client(0))
        .options(idle)
        .start();
    let c = client.connect(&server);
    let mut s = Stream::new(c.clone());
    assert!(s.send(10));
    wait_for("echo", 5 * S, || client.rec.got(s.id | REPLY) == 1);
    assert_eq!(c.last_keepalive_ack(), None);
    c.send_keepalive();
    wait_for("a keepalive ack", 5 * S, || {
        c.last_keepalive_ack().is_some()
    });
    let k1 = c.last_keepalive_ack().unwrap();
    std::thread::sleep(Duration::from_millis(5)); // a later stamp
    c.send_keepalive();
    wait_for("a later keepalive ack", 5 * S, || {
        c.last_keepalive_ack().is_some_and(|k| k > k1)
    });
    // Idle from here on (a keepalive counts as traffic).
    let t0 = Instant::now();
    wait_for("the idle session drops", secs(5), || !c.is_connected());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(2500),
        "dropped after {took:?}"
    );
    wait_for("the lossy client is told", 2 * S, || {
        client.rec.has(&Ev::Reset(c.id()))
    });
    let sid = server.rec.accepted()[0];
    wait_for("the lossy server is told", 2 * S, || {
        server.rec.has(&Ev::Reset(sid))
    });
    assert!(
        client.perf("faults.idle_timeout") + server.perf("faults.idle_timeout") >= 1,
        "an idle timeout fired"
    );
    shutdown_all(&[&client, &server]);

    // Lossless peers: the idle session parks on both sides; nobody is told; the next
    // message reconnects and arrives.
    let mk = |num| {
        NodeBuilder::new(kind, EntityType::OSD, num)
            .policy(Policy::lossless_peer(0))
            .options(idle)
            .start()
    };
    let a = mk(1);
    let b = mk(2);
    let ab = a.connect(&b);
    let mut s = Stream::new(ab.clone());
    assert!(s.send(10));
    wait_for("delivered", 5 * S, || b.rec.got(s.id) == 1);
    let t0 = Instant::now();
    wait_for("both sides park", secs(5), || {
        ab.phase() == Phase::Standby
            && b.m
                .connections()
                .iter()
                .all(|c| c.phase() == Phase::Standby)
    });
    assert!(
        t0.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    assert!(s.send(10));
    wait_for("delivered after standby", 5 * S, || b.rec.got(s.id) == 2);
    b.rec.stream(s.id).exactly(2).unwrap();
    for n in [&a, &b] {
        assert_eq!(
            n.rec
                .count(|e| matches!(e, Ev::Reset(_) | Ev::RemoteReset(_))),
            0,
            "{}: lossless sessions are not reset",
            n.rec.name
        );
    }
    shutdown_all(&[&a, &b]);
}

/// Regression (simple transport): when a timer faulted a session (idle or handshake
/// timeout), the socket stayed open and attached to the session, so the peer noticed
/// nothing, and what it sent next was read into the parked engine and thrown away. Here only
/// A has a short idle timeout: when A parks, B must see its socket close, and B's next
/// message must arrive.
fn idle_timeout_on_one_side(kind: TransportKind) {
    let _g = begin("idle_timeout_on_one_side", secs(30));
    let a = NodeBuilder::new(kind, EntityType::OSD, 1)
        .policy(Policy::lossless_peer(0))
        .options(|o| o.idle_timeout = S)
        .start();
    let b = NodeBuilder::new(kind, EntityType::OSD, 2)
        .policy(Policy::lossless_peer(0))
        .start();
    let ab = a.connect(&b);
    let mut up = Stream::new(ab.clone());
    assert!(up.send(10));
    wait_for("delivered", 5 * S, || b.rec.got(up.id) == 1);
    let ba = b.m.connect_to(a.addr, EntityType::OSD);
    wait_for("A parks after its idle timeout", 5 * S, || {
        ab.phase() == Phase::Standby
    });
    wait_for("B sees the socket go", 5 * S, || !ba.is_connected());
    let mut down = Stream::new(ba.clone());
    assert!(down.send(10));
    wait_for("B's message after A's idle timeout", 5 * S, || {
        a.rec.got(down.id) == 1
    });
    assert!(a.perf("faults.idle_timeout") >= 1);
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------------------------------
// 8. Standby
// ---------------------------------------------------------------------------------------

/// Ceph's ClientStandbyTest: stateful_server + lossless_peer client. After the server marks
/// the session down the client parks in standby (no redials) until it has something to send;
/// then it reconnects, learns that the server reset the session (RESETSESSION: remote reset;
/// the queue, holding the message that woke it, is discarded, as in Ceph), and the session
/// works again.
fn client_standby(kind: TransportKind) {
    let _g = begin("client_standby", secs(30));
    let server = NodeBuilder::server(kind, Policy::stateful_server(0)).start();
    let client = NodeBuilder::client(kind, Policy::lossless_peer(0)).start();
    let c = client.connect(&server);
    let mut s = Stream::new(c.clone());
    assert!(s.send(10));
    wait_for("echo", 5 * S, || client.rec.got(s.id | REPLY) == 1);
    let sid = server.rec.accepted()[0];
    let sconn = server.rec.conn(sid).unwrap();
    sconn.mark_down();
    assert!(!sconn.is_connected());
    wait_for("the client parks", 5 * S, || c.phase() == Phase::Standby);
    let dials = client.perf("dials");
    // Asserting an absence: the client stays parked (Ceph's test waits 300 ms too).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.phase(), Phase::Standby);
    assert!(!c.is_connected());
    assert_eq!(
        client.perf("dials"),
        dials,
        "standby does not redial by itself"
    );
    assert_eq!(client.rec.count(|e| matches!(e, Ev::RemoteReset(_))), 0);

    assert!(s.send(10)); // seq 1: wakes the session
    wait_for("remote reset on the client", 5 * S, || {
        client.rec.has(&Ev::RemoteReset(c.id()))
    });
    wait_for("reconnected", 5 * S, || {
        client.rec.count(|e| *e == Ev::Connect(c.id())) == 2 && c.is_connected()
    });
    assert!(c.stats().discarded >= 1, "RESETSESSION discarded the queue");
    assert!(s.send(10)); // seq 2
    wait_for("echo after the reset", 5 * S, || {
        client.rec.got(s.id | REPLY) == 2
    });
    assert_eq!(server.rec.stream(s.id).seqs, vec![0, 2]);
    assert_eq!(client.rec.stream(s.id | REPLY).seqs, vec![0, 2]);
    assert_eq!(
        server.rec.accepted().len(),
        2,
        "a new session on the server"
    );
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

// ---------------------------------------------------------------------------------------
// 9. Throttles
// ---------------------------------------------------------------------------------------

/// Samples the process RSS every 5 ms until dropped; reports the peak.
struct RssProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssProbe {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let (st, pk) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                pk.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

impl Drop for RssProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const MIB: u64 = 1 << 20;

/// A server whose dispatcher is stalled, behind policy message/byte throttles (`policy`) or
/// only the dispatch throttle: a client offers 200 MiB (1 MiB messages, zero-copy on the
/// sending side). While stalled the server stops reading (TCP pushes back), so the process
/// RSS stays flat — it grows by less than 64 MiB while 200 MiB are offered — and once the
/// dispatcher is released everything arrives, in order, intact.
fn throttle_run(kind: TransportKind, policy: bool) {
    const MSGS: u64 = 200;
    let msgs = Throttle::new("policy_messages", 16);
    let bytes = Throttle::new("policy_bytes", 16 * MIB);
    let mut sp = Policy::stateful_server(0);
    if policy {
        sp.throttles = RecvThrottles {
            messages: Some(msgs.clone()),
            bytes: Some(bytes.clone()),
            dispatch: None,
        };
    }
    let server = NodeBuilder::new(kind, EntityType::OSD, 0)
        .policy(sp)
        .dispatch_throttle(if policy { 100 * MIB } else { 16 * MIB })
        .start();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0)).start();
    let c = client.connect(&server);
    let mut s = Stream::new(c.clone());
    assert!(s.send(1));
    wait_for("the session opens", 5 * S, || server.rec.got(s.id) == 1);
    let base = rss_bytes();
    let probe = RssProbe::start();
    server.rec.gate.close();
    for _ in 1..MSGS {
        assert!(s.send(MIB as usize));
    }
    let dispatch_throttle = || {
        server.m.perf_dump()["msgr"]["dispatch_throttle"]["current"]
            .as_u64()
            .unwrap_or(0)
    };
    // The server fills its budget, then stops reading.
    wait_for_detail(
        "the server's throttle to fill",
        10 * S,
        || {
            server.rec.gate.waiting.load(Ordering::SeqCst) == 1
                && if policy {
                    msgs.current() == 16 || bytes.current() > 15 * MIB
                } else {
                    dispatch_throttle() > 15 * MIB
                }
        },
        || {
            format!(
                "msgs {} bytes {} dispatch {}",
                msgs.current(),
                bytes.current(),
                dispatch_throttle()
            )
        },
    );
    // Held for a while: the server reads nothing more from the socket (not even into its
    // receive buffer), so nothing grows however long the stall lasts.
    std::thread::sleep(Duration::from_millis(100));
    let (msgs_in, bytes_in) = (server.perf("msgs_in"), server.perf("bytes_in"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        server.perf("msgs_in"),
        msgs_in,
        "a stalled server takes no messages"
    );
    let more = server.perf("bytes_in") - bytes_in;
    assert!(
        more < 256 << 10,
        "the stalled server kept reading its socket: {more} bytes in 600 ms"
    );
    let (queued, unacked) = c.backlog();
    assert!(
        queued + unacked >= 100,
        "most of the 200 MiB are still with the client ({queued} queued, {unacked} unacked)"
    );
    let stalled_peak = probe.peak() - base.min(probe.peak());
    if policy {
        assert!(msgs.current() <= 16 && bytes.current() <= 17 * MIB);
    }
    server.rec.gate.open();
    wait_for_detail(
        "all 200 messages after the release",
        secs(30),
        || server.rec.got(s.id) == MSGS as usize,
        || format!("{} of {MSGS}", server.rec.got(s.id)),
    );
    server.rec.stream(s.id).exactly(MSGS).unwrap();
    let growth = probe.peak() - base.min(probe.peak());
    drop(probe);
    eprintln!(
        "{kind:?} policy={policy}: RSS base {} MiB, growth while stalled {} MiB, overall {} MiB",
        base / MIB,
        stalled_peak / MIB,
        growth / MIB
    );
    assert!(
        stalled_peak < 64 * MIB,
        "RSS grew by {} MiB while the server was stalled",
        stalled_peak / MIB
    );
    assert!(growth < 64 * MIB, "RSS grew by {} MiB", growth / MIB);
    assert!(
        server.perf("throttle_waits") > 0,
        "the reader was throttled"
    );
    wait_for("throttles released", 5 * S, || {
        msgs.current() == 0 && bytes.current() == 0 && dispatch_throttle() == 0
    });
    shutdown_all(&[&client, &server]);
    server.rec.assert_clean();
}

fn throttles(kind: TransportKind) {
    let _g = begin_exclusive("throttles", secs(90));
    let _ = data_msg(0, 0, 0); // the corpus is allocated before measuring
    throttle_run(kind, true);
    throttle_run(kind, false);
}

/// The sending side of a stalled receiver: a client session holds at most
/// `max_queued_bytes` for its peer (queued, and written but unacknowledged); past that
/// `send_message` fails with `QueueFull` and hands the message back, however long the
/// stall lasts. Nothing accepted is lost: once the receiver moves again, every accepted
/// message arrives, in order, and the session takes more.
fn sender_bound(kind: TransportKind) {
    let _g = begin_exclusive("sender_bound", secs(60));
    const LIMIT: usize = 24 << 20;
    let server = NodeBuilder::new(kind, EntityType::OSD, 0)
        .policy(Policy::stateful_server(0))
        .dispatch_throttle(4 * MIB)
        .start();
    let client = NodeBuilder::client(kind, Policy::lossless_client(0))
        .options(|o| o.max_queued_bytes = LIMIT)
        .start();
    let c = client.connect(&server);
    let mut s = Stream::new(c.clone());
    assert!(s.send(1));
    wait_for("the session opens", 5 * S, || server.rec.got(s.id) == 1);
    server.rec.gate.close();
    let msg = MIB as usize;
    let mut refused = 0;
    // Offer 200 MiB; the session takes what fits, then refuses.
    for _ in 0..200 {
        match c.send_message(data_msg(s.id, s.next, msg)) {
            Ok(()) => s.next += 1,
            Err(SendError::QueueFull(m)) => {
                assert_eq!(m.data.len(), msg, "the refused message comes back");
                refused += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("send on a live lossless session: {e}"),
        }
    }
    let taken = s.next - 1;
    // What the client holds, plus what the stalled server took (its dispatch throttle
    // and the message it is stuck on) and acknowledged.
    let most = (LIMIT + 8 * MIB as usize) / msg + 2;
    eprintln!("{kind:?}: {taken} of 200 MiB taken, {refused} refused");
    assert!(refused > 0, "a stalled receiver's sender is refused");
    assert!(
        (taken as usize) <= most,
        "{taken} MiB taken while the receiver was stalled (at most {most})"
    );
    // However long the stall lasts, the session takes no more.
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(
        c.send_message(data_msg(s.id, s.next, msg)),
        Err(SendError::QueueFull(_))
    ));
    server.rec.gate.open();
    wait_for_detail(
        "every accepted message after the release",
        secs(30),
        || server.rec.got(s.id) == s.next as usize,
        || format!("{} of {}", server.rec.got(s.id), s.next),
    );
    assert!(s.send(msg), "room again");
    wait_for("the next one", 10 * S, || {
        server.rec.got(s.id) == s.next as usize
    });
    server.rec.stream(s.id).exactly(s.next).unwrap();
    shutdown_all(&[&client, &server]);
    server.rec.assert_clean();
    client.rec.assert_clean();
}

/// Messages that make [`Bomb`] panic: in fast dispatch, or on the dispatch thread.
const T_BOMB_FAST: MsgType = MsgType(0x7e10);
const T_BOMB_SLOW: MsgType = MsgType(0x7e11);

/// A dispatcher with a bug: it panics on the bomb types (and lets the rest through).
struct Bomb;

impl Dispatcher for Bomb {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == T_BOMB_FAST
    }
    fn ms_fast_dispatch(&self, _m: Incoming) {
        panic!("bomb in fast dispatch");
    }
    fn ms_dispatch(&self, m: &Incoming) -> bool {
        if m.msg.ty() == T_BOMB_SLOW {
            panic!("bomb on the dispatch thread");
        }
        false
    }
}

fn bomb(ty: MsgType) -> Message {
    Message::new(
        MessageHeader::new(ty, 1, 1),
        Bytes::from_static(b"boom"),
        Bytes::new(),
        Bytes::new(),
    )
}

/// A dispatcher that panics — in fast dispatch on a network thread, or on the dispatch
/// thread — takes down only the connection the message came on (the default policy): its
/// lossy client is reset, a lossless client streaming alongside never notices, the daemon
/// keeps serving, and each panic is counted in perf dump.
fn dispatcher_panic_contained(kind: TransportKind) {
    let _g = begin("dispatcher_panic_contained", secs(60));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0))
        .policy_for(EntityType::OSD, Policy::stateful_server(0))
        .head(Arc::new(Bomb))
        .start();
    let good = NodeBuilder::new(kind, EntityType::OSD, 7)
        .policy(Policy::lossless_peer(0))
        .bind(false)
        .start();
    let g = good.connect(&server);
    let mut gs = Stream::new(g.clone());
    for _ in 0..50 {
        assert!(gs.send(100));
    }
    wait_for("the good stream", 10 * S, || server.rec.got(gs.id) == 50);
    for (round, ty) in [(1, T_BOMB_FAST), (2, T_BOMB_SLOW)] {
        let bad = NodeBuilder::client(kind, Policy::lossy_client(0)).start();
        let b = bad.connect(&server);
        b.send_message(bomb(ty)).unwrap();
        wait_for_detail(
            "the bad client's session reset",
            10 * S,
            || bad.rec.has(&Ev::Reset(b.id())),
            || bad.describe(),
        );
        wait_for("the panic counted", 5 * S, || {
            server.perf("dispatch_panics") == round
        });
        for _ in 0..50 {
            assert!(gs.send(100));
        }
        wait_for_detail(
            "the good stream goes on",
            10 * S,
            || server.rec.got(gs.id) == 50 + 50 * round as usize,
            || server.describe(),
        );
        shutdown_all(&[&bad]);
    }
    server.rec.stream(gs.id).exactly(150).unwrap();
    assert!(!good
        .rec
        .log()
        .iter()
        .any(|e| matches!(e, Ev::Reset(_) | Ev::RemoteReset(_))));
    shutdown_all(&[&good, &server]);
}

/// The other policy, in a child process (it ends it): the panic is logged with the
/// connection it happened on and the process aborts.
#[test]
fn dispatcher_panic_abort() {
    let _g = begin("dispatcher_panic_abort", secs(60));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "dispatcher_panic_abort_child",
            "--ignored",
            "--nocapture",
        ])
        .env("MSGR_TEST_ABORT_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "SIGABRT: {}\n{err}",
        out.status
    );
    assert!(
        err.contains("a dispatcher panicked in ms_fast_dispatch on connection")
            && err.contains("bomb in fast dispatch; aborting (dispatch panic policy: abort)"),
        "{err}"
    );
}

/// Run by [`dispatcher_panic_abort`] in a child process.
#[test]
#[ignore = "run by dispatcher_panic_abort, in a child process it aborts"]
fn dispatcher_panic_abort_child() {
    assert!(
        std::env::var_os("MSGR_TEST_ABORT_CHILD").is_some(),
        "only as dispatcher_panic_abort's child"
    );
    let server = NodeBuilder::server(TransportKind::Posix, Policy::stateless_server(0))
        .head(Arc::new(Bomb))
        .dispatch_panic(DispatchPanic::Abort)
        .start();
    let bad = NodeBuilder::client(TransportKind::Posix, Policy::lossy_client(0)).start();
    bad.connect(&server)
        .send_message(bomb(T_BOMB_FAST))
        .unwrap();
    std::thread::sleep(Duration::from_secs(20));
    panic!("still alive 20 s after the bomb");
}

// ---------------------------------------------------------------------------------------
// 10. Large messages
// ---------------------------------------------------------------------------------------

/// A raw test type echoed verbatim (front, middle and data) by a [`Collector`].
const T_RAW: MsgType = MsgType(0x7e03);

/// Ceph's MessageTest on stateful_server + lossless_peer: an MCommand with 30,720 strings
/// (a front of about 0.9 MB), a 4 MiB data segment, and a raw message with a 1 MiB front, a
/// 100 KB middle and a 4 MiB data segment — each round trip byte-equal.
fn large_messages(kind: TransportKind) {
    let _g = begin("large_messages", secs(60));
    let scol = Collector::new(&[MsgType::COMMAND, T_RAW], true);
    let server = NodeBuilder::server(kind, Policy::stateful_server(0))
        .head(scol.clone())
        .start();
    let ccol = Collector::new(&[MsgType::COMMAND, T_RAW], false);
    let client = NodeBuilder::client(kind, Policy::lossless_peer(0))
        .head(ccol.clone())
        .start();
    let c = client.connect(&server);

    // 1. A very large front: MCommand.
    let cmd = MCommand::new(
        Fsid([7; 16]),
        vec!["abcdefghijklmnopqrstuvwxyz".to_string(); 1024 * 30],
    );
    let m = cmd.to_message(features::PACIFIC_ALL);
    assert!(m.front.len() > 900_000, "front of {} bytes", m.front.len());
    let front = m.front.clone();
    assert!(send_retry(&c, m));
    wait_for("the MCommand echo", secs(20), || ccol.len() == 1);
    let back = ccol.got().remove(0);
    assert_eq!(back.ty(), MsgType::COMMAND);
    assert!(back.front == front, "front bytes differ");
    assert_eq!(MCommand::decode(back).unwrap(), cmd);
    assert!(scol.got()[0].front == front);

    // 2. A very large data segment (4 MiB), checked byte by byte by both recorders.
    let mut s = Stream::new(c.clone());
    assert!(s.send(MAX_DATA));
    wait_for("the 4 MiB echo", secs(20), || {
        client.rec.got(s.id | REPLY) == 1
    });
    assert_eq!(server.rec.stream(s.id).bytes, MAX_DATA as u64);
    assert_eq!(client.rec.stream(s.id | REPLY).bytes, MAX_DATA as u64);

    // 3. All three segments large at once.
    let (_, data) = corpus_data(99, 1, MAX_DATA);
    let raw = Message::new(
        MessageHeader::new(T_RAW, 1, 1),
        pattern(11, (1 << 20) + 17),
        pattern(12, 100_003),
        data,
    );
    assert!(send_retry(&c, raw.clone()));
    wait_for("the raw echo", secs(20), || ccol.len() == 2);
    let back = ccol.got().remove(1);
    assert!(back.front == raw.front, "front bytes differ");
    assert!(back.middle == raw.middle, "middle bytes differ");
    assert!(back.data == raw.data, "data bytes differ");
    let at_server = scol.got().remove(1);
    assert!(at_server.front == raw.front && at_server.middle == raw.middle);
    assert!(at_server.data == raw.data);
    assert_eq!(
        client
            .rec
            .count(|e| matches!(e, Ev::Reset(_) | Ev::RemoteReset(_))),
        0
    );
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

// ---------------------------------------------------------------------------------------
// 11. Randomized stress
// ---------------------------------------------------------------------------------------

/// A session of the stress run: client messenger, server messenger, what was sent.
struct Session {
    client: usize,
    server: usize,
    stream: Stream,
}

/// Ceph's SyntheticStressTest / SyntheticInjectTest: 4 servers (stateful_server, echoing;
/// one on the fast path) and 8 clients (lossless_client), socket failures injected on all,
/// 5000 random operations with a fixed seed — sends of 0..4 MiB (skewed small; 5% are
/// MCommands at priority 200 that overtake the data), new connections, mark_downs (1%),
/// pauses —
/// with at most 64 messages awaiting their echo. Every session not marked down delivers
/// everything exactly once, in order, byte-equal, both ways; sessions the test marked down
/// may lose their tail but never reorder or duplicate (tracked separately, as Ceph does).
fn stress(kind: TransportKind) {
    let _g = begin_exclusive("stress", secs(120));
    const OPS: usize = 5000;
    const MAX_IN_FLIGHT: u64 = 64;
    let fast_retry = |o: &mut msgr::proto::Options| {
        o.initial_backoff = Duration::from_millis(10);
        o.max_backoff = Duration::from_millis(100);
        // A stalled handshake is a bug here; the ready timeout must not paper over it.
        o.ready_timeout = secs(60);
    };
    let servers: Vec<Node> = (0..4)
        .map(|i| {
            NodeBuilder::new(kind, EntityType::OSD, i)
                .policy(Policy::stateful_server(0))
                .echo(true)
                .fast(i == 1)
                .inject(150)
                .options(fast_retry)
                .label(&format!("osd.{i}"))
                .start()
        })
        .collect();
    let clients: Vec<Node> = (0..8)
        .map(|i| {
            NodeBuilder::client(kind, Policy::lossless_client(0))
                .inject(150)
                .options(fast_retry)
                .workers(1)
                .label(&format!("client{i}"))
                .start()
        })
        .collect();
    let mut rng = Rng::new(0x5eed_0001);
    let mut live: Vec<Session> = Vec::new();
    let mut dead: Vec<Session> = Vec::new();
    let connect = |live: &mut Vec<Session>, rng: &mut Rng| {
        let (ci, si) = (rng.below(8) as usize, rng.below(4) as usize);
        if live.iter().any(|s| s.client == ci && s.server == si) {
            return;
        }
        let conn = clients[ci].connect(&servers[si]);
        live.push(Session {
            client: ci,
            server: si,
            stream: Stream::new(conn),
        });
    };
    let echoed = |s: &Session| clients[s.client].rec.got(s.stream.id | REPLY) as u64;
    for _ in 0..10 {
        connect(&mut live, &mut rng);
    }
    let (mut sends, mut commands, mut marks) = (0u64, 0u64, 0u64);
    let mut bytes = 0u64;
    let t0 = Instant::now();
    for op in 0..OPS {
        // Bound what is in flight (Ceph's max_in_flight).
        let t = Instant::now();
        while live.iter().map(|s| s.stream.next - echoed(s)).sum::<u64>() > MAX_IN_FLIGHT {
            assert!(
                t.elapsed() < secs(20),
                "op {op}: echoes stopped coming\n{}",
                clients
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        match rng.below(100) {
            0..=69 => {
                if live.is_empty() {
                    connect(&mut live, &mut rng);
                    continue;
                }
                let k = rng.below(live.len() as u64) as usize;
                let s = &mut live[k];
                if rng.percent(5) {
                    let m = MCommand::new(Fsid([1; 16]), vec!["command".into()])
                        .to_message(features::PACIFIC_ALL)
                        .with_priority(200);
                    assert!(send_retry(&s.stream.conn, m));
                    commands += 1;
                } else {
                    let r = rng.below(100);
                    let len = if r < 85 {
                        rng.below(4096)
                    } else if r < 98 {
                        4096 + rng.below(256 << 10)
                    } else {
                        rng.below(MAX_DATA as u64 + 1)
                    } as usize;
                    assert!(s.stream.send(len), "send on a live session");
                    sends += 1;
                    bytes += len as u64;
                }
            }
            70..=78 => connect(&mut live, &mut rng),
            79 => {
                if live.len() > 8 {
                    let k = rng.below(live.len() as u64) as usize;
                    let s = live.swap_remove(k);
                    s.stream.conn.mark_down();
                    dead.push(s);
                    marks += 1;
                }
            }
            _ => std::thread::sleep(Duration::from_micros(rng.below(500))),
        }
    }
    let ops_time = t0.elapsed();
    wait_for_detail(
        "every live session's echoes",
        secs(30),
        || live.iter().all(|s| echoed(s) == s.stream.next),
        || {
            live.iter()
                .filter(|s| echoed(s) != s.stream.next)
                .map(|s| {
                    format!(
                        "client{} → osd.{} stream {:#x}: sent {} got {} echoed {}\n  {}\n  {}",
                        s.client,
                        s.server,
                        s.stream.id,
                        s.stream.next,
                        servers[s.server].rec.got(s.stream.id),
                        echoed(s),
                        clients[s.client].describe(),
                        servers[s.server].describe()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    for s in &live {
        let what = format!("client{} → osd.{}", s.client, s.server);
        servers[s.server]
            .rec
            .stream(s.stream.id)
            .exactly(s.stream.next)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        clients[s.client]
            .rec
            .stream(s.stream.id | REPLY)
            .exactly(s.stream.next)
            .unwrap_or_else(|e| panic!("{what} (echo): {e}"));
    }
    for s in &dead {
        let there = servers[s.server].rec.stream(s.stream.id);
        there.prefix().unwrap_or_else(|e| {
            panic!(
                "client{} → osd.{} (marked down, conn {}, sent {}): {e}",
                s.client,
                s.server,
                s.stream.conn.id(),
                s.stream.next
            )
        });
        // Echoes of a marked-down session: the server may still be dispatching one of its
        // messages when the client's next session to it replaces the old one (with a
        // reset), and the echo then leaves on the new session — as in Ceph, where a
        // Connection outlives its sessions. So: no duplicates, no reordering, nothing the
        // server did not get; gaps allowed.
        let back = clients[s.client].rec.stream(s.stream.id | REPLY);
        back.increasing().unwrap();
        assert!(back.seqs.iter().all(|q| there.seqs.contains(q)));
        assert!(there.seqs.len() as u64 <= s.stream.next);
    }
    let injected: u64 = servers
        .iter()
        .chain(&clients)
        .map(|n| n.perf("injected_failures"))
        .sum();
    let reconnects: u64 = clients.iter().map(|n| n.perf("reconnects")).sum();
    let others: u64 = servers
        .iter()
        .map(|n| n.rec.others.load(Ordering::Relaxed))
        .sum();
    eprintln!(
        "{kind:?}: {OPS} ops in {ops_time:?}: {sends} sends ({} MiB), {commands} commands, \
         {marks} mark_downs, {} live / {} dead sessions, {injected} injected failures, \
         {reconnects} reconnects",
        bytes >> 20,
        live.len(),
        dead.len()
    );
    assert!(injected > 20, "failures were injected ({injected})");
    assert!(reconnects > 10, "sessions reconnected ({reconnects})");
    let strict: u64 = live.iter().map(|s| s.stream.next).sum();
    eprintln!("{kind:?}: {strict} messages on live sessions checked exactly");
    assert!(
        marks > 20 && live.len() > 8,
        "{marks} mark_downs, {} live",
        live.len()
    );
    assert!(
        strict * 10 > sends * 3,
        "a good part of the messages are on sessions checked exactly ({strict}/{sends})"
    );
    assert!(
        others <= commands && others > 0,
        "commands delivered ({others}/{commands})"
    );
    let mut all: Vec<&Node> = clients.iter().collect();
    all.extend(servers.iter());
    shutdown_all(&all);
    for n in all {
        n.rec.assert_clean();
    }
}

/// Shutdown with traffic in flight, three rounds: a server shuts down while six clients
/// stream at it (echoes flowing back) and redial the moment their sockets close, then the
/// clients shut down while redialing a server that is gone. Nothing hangs (watchdog,
/// bounded shutdown), and each lossless client is told of a refused redial within 4 s —
/// well before the 10 s handshake timeout, so a socket the dying server accepted but never
/// served (it used to be handed to a worker that had already exited) fails the test.
fn shutdown_under_load(kind: TransportKind) {
    let _g = begin("shutdown_under_load", secs(60));
    for round in 0..3 {
        let server = NodeBuilder::server(kind, Policy::stateful_server(0)).start();
        let clients: Vec<Node> = (0..6)
            .map(|_| {
                NodeBuilder::client(kind, Policy::lossless_client(0))
                    .workers(1)
                    .options(|o| o.initial_backoff = Duration::from_millis(20))
                    .start()
            })
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            // The senders stop however this scope ends (a failed wait must not hang the
            // join).
            struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&stop);
            for c in &clients {
                let (stop, server) = (&stop, &server);
                sc.spawn(move || {
                    let mut s = Stream::new(c.connect(server));
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        // Bounded backlog: the server going away must not leave us queuing
                        // forever.
                        if s.conn.backlog().0 < 200 {
                            assert!(s.send(i % 70_000));
                            i += 1;
                        } else {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                });
            }
            wait_for("traffic flows", 10 * S, || {
                server.rec.msgs.load(Ordering::Relaxed) > 1000
            });
            let t = Instant::now();
            shutdown_all(&[&server]);
            assert!(
                t.elapsed() < 5 * S,
                "round {round}: server shutdown under load took {:?}",
                t.elapsed()
            );
            // A stopped userspace stack answers nothing (no RST, see `simple`): its
            // clients' redials time out instead of being refused.
            let (what, limit) = if kind == TransportKind::Dpdk {
                ("every client's redial failed", 8 * S)
            } else {
                ("every client told of a refused redial", 4 * S)
            };
            wait_for_detail(
                what,
                limit,
                || {
                    clients.iter().all(|c| {
                        if kind == TransportKind::Dpdk {
                            c.perf("faults.connect_failed") >= 1
                        } else {
                            c.rec.count(|e| matches!(e, Ev::Refused(_))) >= 1
                        }
                    })
                },
                || {
                    let v: Vec<String> = clients.iter().map(|c| c.describe()).collect();
                    format!("round {round}:\n{}", v.join("\n"))
                },
            );
        });
        let all: Vec<&Node> = clients.iter().collect();
        shutdown_all(&all);
        server.rec.assert_clean();
        for c in &clients {
            c.rec.assert_clean();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 12. Bad input against a running server
// ---------------------------------------------------------------------------------------

fn raw_connect(to: &Node) -> TcpStream {
    let sa = to.addr.addr.expect("bound");
    let s = TcpStream::connect_timeout(&sa, 2 * S).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.set_write_timeout(Some(2 * S)).unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset); fails after `limit`.
#[track_caller]
fn expect_closed(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t0.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return t0.elapsed(), // reset by the server
        }
        assert!(
            t0.elapsed() < limit,
            "the server did not close the connection within {limit:?}"
        );
    }
}

fn read_exact_bounded(s: &mut TcpStream, buf: &mut [u8]) {
    let t0 = Instant::now();
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => panic!("EOF after {at} of {} bytes", buf.len()),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        assert!(t0.elapsed() < 5 * S, "server reply timed out");
    }
}

/// A complete v1 client handshake on a raw socket (banner, address, `ceph_msg_connect`,
/// and the SEQ exchange), built with `msgr::wire`. The session is open afterwards.
fn raw_handshake(to: &Node, nonce: u32) -> TcpStream {
    let mut s = raw_connect(to);
    let mut hello = [0u8; SERVER_HELLO_LEN];
    read_exact_bounded(&mut s, &mut hello);
    let h = ServerHello::parse(&hello).expect("server hello");
    assert_eq!(
        (h.server_addr.addr, h.server_addr.nonce),
        (to.addr.addr, to.addr.nonce)
    );
    let me = EntityAddr::v1(s.local_addr().unwrap(), nonce);
    let mut out = BANNER.to_vec();
    out.extend_from_slice(&me.to_legacy());
    out.extend_from_slice(
        &ConnectRepr {
            features: features::PACIFIC_ALL,
            host_type: EntityType::CLIENT,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 24, // client ↔ OSD
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 1,
        }
        .emit(),
    );
    s.write_all(&out).unwrap();
    let mut r = [0u8; ConnectReplyRepr::LEN];
    read_exact_bounded(&mut s, &mut r);
    let reply = ConnectReplyRepr::parse(&ConnectReply::new_checked(&r[..]).unwrap()).unwrap();
    match reply.tag {
        Tag::Seq => {
            let mut acked = [0u8; 8];
            read_exact_bounded(&mut s, &mut acked);
            s.write_all(&0u64.to_le_bytes()).unwrap();
        }
        Tag::Ready => {}
        other => panic!("server replied {other:?}"),
    }
    s
}

/// A message header (tag included) announcing `front_len` bytes of front.
fn header_claiming(front_len: u32) -> Vec<u8> {
    let mut h = MessageHeader::new(T_DATA, 1, 1);
    h.seq = 1;
    let repr = HeaderRepr {
        header: h,
        front_len,
        middle_len: 0,
        data_len: 0,
    };
    let mut b = vec![7u8];
    b.extend_from_slice(&repr.emit(true));
    b
}

/// Hostile clients on raw sockets against a running server — random bytes, a half handshake
/// then silence (ready timeout, set to 2 s here), a valid handshake then a header claiming
/// a 2 GiB front, a handshake then an unknown tag, and a flood of held connections. Each
/// costs the server only that connection (the fault counters say why), while a well-behaved
/// client messenger keeps getting its pings answered throughout.
fn bad_input(kind: TransportKind) {
    let _g = begin_exclusive("bad_input", secs(60));
    let server = NodeBuilder::server(kind, Policy::stateless_server(0))
        .options(|o| o.ready_timeout = 2 * S)
        .start();
    let client = NodeBuilder::client(kind, Policy::lossy_client(0)).start();
    let conn = client.connect(&server);
    let mut first = Stream::new(conn.clone());
    assert!(first.send(8));
    wait_for("the good client's session", 5 * S, || {
        client.rec.got(first.id | REPLY) == 1
    });
    let faults = |label: &str| server.perf(&format!("faults.{label}"));
    let (bad_banner0, ready0, too_large0, unknown0) = (
        faults("bad_banner"),
        faults("ready_timeout"),
        faults("too_large"),
        faults("unknown_tag"),
    );

    // The good client pings every 20 ms throughout; each echo must come within 3 s.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pinger = |stream: &mut Stream| -> (u64, Duration) {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            assert!(stream.send(64), "the good session was closed");
            let want = stream.next as usize;
            wait_for("a ping echo", 3 * S, || {
                client.rec.got(stream.id | REPLY) == want
            });
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        (stream.next, worst)
    };
    let ((pinged, worst_latency), flood_n) = std::thread::scope(|sc| {
        let ping = sc.spawn(|| pinger(&mut Stream::new(conn.clone())));

        // Half handshakes that then go silent (checked last: they take the ready timeout).
        let mut silent: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut s = raw_connect(&server);
                s.write_all(BANNER).unwrap();
                s
            })
            .collect();
        let silent_since = Instant::now();

        // Random bytes instead of a banner.
        let mut rng = Rng::new(12);
        for _ in 0..10 {
            let mut s = raw_connect(&server);
            let junk: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
            let _ = s.write_all(&junk);
            expect_closed(&mut s, 3 * S);
        }

        // A valid handshake, then a header claiming a 2 GiB front.
        for i in 0..3 {
            let mut s = raw_handshake(&server, 100 + i);
            s.write_all(&header_claiming(2 << 30)).unwrap();
            expect_closed(&mut s, 3 * S);
        }

        // A valid handshake, then a tag that does not exist.
        let mut s = raw_handshake(&server, 200);
        s.write_all(&[0xee, 0, 0, 0]).unwrap();
        expect_closed(&mut s, 3 * S);

        // A flood of connections, opened and held (each gets the server's hello and sits
        // in the handshake until the ready timeout).
        let flood_n =
            open_files_limit().map_or(500, |l| ((l.saturating_sub(300)) / 2).min(500)) as usize;
        // Opened in bursts of 100: the listener's accept queue holds 128 (Rust's listen
        // backlog; Ceph's ms_tcp_listen_backlog is 512), and a connect beyond it waits for
        // a SYN retransmission (1 s, then 3 s).
        let t = Instant::now();
        let accepts0 = server.perf("accepts") as usize;
        let mut flood: Vec<TcpStream> = Vec::with_capacity(flood_n);
        while flood.len() < flood_n {
            let n = (flood_n - flood.len()).min(100);
            flood.extend((0..n).map(|_| raw_connect(&server)));
            let want = accepts0 + flood.len();
            wait_for_detail(
                "the server to accept the flood",
                5 * S,
                || server.perf("accepts") as usize >= want,
                || format!("accepts {} of {want}", server.perf("accepts")),
            );
        }
        let opened_in = t.elapsed();
        std::thread::sleep(Duration::from_millis(300)); // pings go on meanwhile

        for s in &mut silent {
            expect_closed(s, 5 * S);
            let since = silent_since.elapsed();
            assert!(
                since >= Duration::from_millis(1500),
                "a half handshake was dropped after {since:?}, before the ready timeout"
            );
        }
        assert!(silent_since.elapsed() < 5 * S);
        for s in &mut flood {
            expect_closed(s, 6 * S);
        }
        eprintln!("{kind:?}: flood of {flood_n} opened in {opened_in:?}, all dropped after the ready timeout");
        stop.store(true, Ordering::Relaxed);
        (ping.join().unwrap(), flood_n)
    });
    eprintln!("{kind:?}: {pinged} pings answered, slowest {worst_latency:?}");
    assert!(pinged >= 10, "the good client kept pinging ({pinged})");
    assert_eq!(faults("bad_banner") - bad_banner0, 10);
    assert_eq!(faults("too_large") - too_large0, 3);
    assert_eq!(faults("unknown_tag") - unknown0, 1);
    assert!(
        faults("ready_timeout") - ready0 >= 5 + flood_n as u64,
        "ready timeouts: {}",
        faults("ready_timeout") - ready0
    );
    wait_for_detail(
        "the server is back to the one good session",
        5 * S,
        || server.m.connections().len() == 1,
        || server.describe(),
    );
    assert!(conn.is_connected());
    assert_eq!(client.rec.count(|e| matches!(e, Ev::Reset(_))), 0);
    let good = server.rec.accepted()[0];
    assert!(
        !server.rec.has(&Ev::Reset(good)),
        "the good session was never reset"
    );
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

/// The simple transport gives an accepted socket no thread of its own until its peer has
/// said a good hello: the accepter writes the server's hello, reads what comes without
/// blocking, has the engine judge it (a wrong banner or address is refused there) and
/// runs the ready timeout of the sockets still waiting. A socket whose hello is good gets
/// its reader, which writes the rest of the handshake (as Ceph's Pipe::accept); the
/// session's writer starts when the session opens. Silent sockets, half hellos and garbage
/// cost no threads; whole hellos one each.
#[test]
fn simple_handshake_threads() {
    let _g = begin_exclusive("simple_handshake_threads", secs(30));
    let server = NodeBuilder::server(TransportKind::Simple, Policy::stateless_server(0))
        .options(|o| o.ready_timeout = 2 * S)
        .start();
    let gauge = |n: &Node, g: &str| n.m.perf_dump()["simple"][g].as_u64().unwrap();
    let (writers0, readers0) = (gauge(&server, "writers"), gauge(&server, "readers"));
    let connect = || {
        let mut s = raw_connect(&server);
        let mut hello = [0u8; SERVER_HELLO_LEN];
        read_exact_bounded(&mut s, &mut hello);
        ServerHello::parse(&hello).expect("the server's hello");
        s
    };
    let speak = |bytes: &[u8]| {
        let mut s = connect();
        s.write_all(bytes).unwrap();
        s
    };
    let mut hello = BANNER.to_vec();
    let me = EntityAddr::v1("127.0.0.1:9".parse().unwrap(), 77);
    hello.extend_from_slice(&me.to_legacy());
    let t0 = Instant::now();
    // Silent sockets and half hellos (the banner, then nothing): no thread.
    let mut silent: Vec<TcpStream> = (0..20).map(|_| connect()).collect();
    silent.extend((0..5).map(|_| speak(BANNER)));
    silent.extend((0..5).map(|_| speak(&hello[..BANNER.len() + 40])));
    // Garbage instead of a banner, and a banner then garbage where the address should be:
    // refused by the accepter, no thread.
    let mut garbage: Vec<TcpStream> = (0..5).map(|_| speak(b"GET / HTTP/1.1\r\n")).collect();
    let mut junk = BANNER.to_vec();
    junk.extend_from_slice(&[0xff; 136]);
    garbage.extend((0..5).map(|_| speak(&junk)));
    for s in &mut garbage {
        expect_closed(s, 5 * S);
    }
    assert_eq!(server.perf("faults.bad_banner"), 5);
    assert_eq!(server.perf("faults.decode"), 5);
    // Whole hellos, then nothing: a reader each, no writer.
    let mut half: Vec<TcpStream> = (0..5).map(|_| speak(&hello)).collect();
    wait_for_detail(
        "a reader per whole hello",
        5 * S,
        || gauge(&server, "readers") >= readers0 + half.len() as u64,
        || format!("{} readers", gauge(&server, "readers")),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        gauge(&server, "readers"),
        readers0 + half.len() as u64,
        "a reader per socket with a good hello, none for the others"
    );
    assert_eq!(
        gauge(&server, "writers"),
        writers0,
        "no writer for a socket whose handshake is not done"
    );
    // A real client opens a session: then (and only then) a writer serves it.
    let client = NodeBuilder::client(TransportKind::Simple, Policy::lossy_client(0)).start();
    let mut st = Stream::new(client.connect(&server));
    assert!(st.send(8));
    wait_for("the echo", 5 * S, || client.rec.got(st.id | REPLY) == 1);
    assert_eq!(
        (
            gauge(&server, "writers") - writers0,
            gauge(&client, "writers")
        ),
        (1, 1),
        "the client's session and the server's, one writer each"
    );
    // Every held socket still meets the ready timeout (silent ones by the accepter).
    for s in silent.iter_mut().chain(half.iter_mut()) {
        expect_closed(s, 5 * S);
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "closed before the ready timeout: {:?}",
        t0.elapsed()
    );
    assert!(server.perf("faults.ready_timeout") >= (silent.len() + half.len()) as u64);
    // The threads of the readers that ended wait for the next connections: three more
    // whole hellos get readers without a thread being created. (The client's session
    // keeps its reader.)
    let open = readers0 + 1;
    wait_for("the readers ended", 5 * S, || {
        gauge(&server, "readers") == open && gauge(&server, "idle_threads") >= 3
    });
    let pooled = gauge(&server, "threads");
    let mut more: Vec<TcpStream> = (0..3).map(|_| speak(&hello)).collect();
    wait_for("a reader per new hello", 5 * S, || {
        gauge(&server, "readers") == open + 3
    });
    assert_eq!(
        gauge(&server, "threads"),
        pooled,
        "threads reused, none created"
    );
    for s in &mut more {
        expect_closed(s, 5 * S);
    }
    shutdown_all(&[&client, &server]);
    client.rec.assert_clean();
    server.rec.assert_clean();
}

both_transports! {
    simple => simple_posix, simple_simple;
    delivery_order_under_concurrent_drains => delivery_order_posix, delivery_order_simple;
    many_connections => many_connections_posix, many_connections_simple;
    client_identities => client_identities_posix, client_identities_simple;
    stateless_lossy => stateless_lossy_posix, stateless_lossy_simple;
    stateful_lossless => stateful_lossless_posix, stateful_lossless_simple;
    reconnect_replay => reconnect_replay_posix, reconnect_replay_simple;
    connection_race => connection_race_posix, connection_race_simple;
    markdown_during_dispatch => markdown_during_dispatch_posix, markdown_during_dispatch_simple;
    keepalive_and_idle_timeout => keepalive_and_idle_timeout_posix, keepalive_and_idle_timeout_simple;
    idle_timeout_on_one_side => idle_timeout_on_one_side_posix, idle_timeout_on_one_side_simple;
    client_standby => client_standby_posix, client_standby_simple;
    throttles => throttles_posix, throttles_simple;
    sender_bound => sender_bound_posix, sender_bound_simple;
    dispatcher_panic_contained => dispatcher_panic_contained_posix, dispatcher_panic_contained_simple;
    large_messages => large_messages_posix, large_messages_simple;
    stress => stress_posix, stress_simple;
    shutdown_under_load => shutdown_under_load_posix, shutdown_under_load_simple;
    bad_input => bad_input_posix, bad_input_simple;
}

// The dpdk transport, in process: every node a userspace stack on one in-memory switch.
// (bad_input talks raw kernel TCP to the server: the kernel cannot reach an in-memory
// switch; the cross-boundary tests cover hostile input over a real DPDK port.)
dpdk_transport! {
    simple => simple_dpdk;
    delivery_order_under_concurrent_drains => delivery_order_dpdk;
    many_connections => many_connections_dpdk;
    client_identities => client_identities_dpdk;
    stateless_lossy => stateless_lossy_dpdk;
    stateful_lossless => stateful_lossless_dpdk;
    reconnect_replay => reconnect_replay_dpdk;
    connection_race => connection_race_dpdk;
    markdown_during_dispatch => markdown_during_dispatch_dpdk;
    keepalive_and_idle_timeout => keepalive_and_idle_timeout_dpdk;
    idle_timeout_on_one_side => idle_timeout_on_one_side_dpdk;
    client_standby => client_standby_dpdk;
    throttles => throttles_dpdk;
    sender_bound => sender_bound_dpdk;
    dispatcher_panic_contained => dispatcher_panic_contained_dpdk;
    large_messages => large_messages_dpdk;
    stress => stress_dpdk;
    shutdown_under_load => shutdown_under_load_dpdk;
}

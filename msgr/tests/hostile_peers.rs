//! Hostile peers against a messenger on real sockets (posix and simple transports): the
//! defences `bench hostile` measures against a running daemon, each checked here on its
//! own, quickly.
//!
//! - A flood of connections that never finish their handshake: beyond
//!   `Options::max_handshakes` the oldest are closed (`handshakes_evicted`), the bound holds
//!   (`handshakes_in_progress`), and a new client still gets in.
//! - A socket that loops on stale connects is given up after `max_connect_attempts`
//!   (a `misbehaved` fault), each connect before that answered.
//! - A message header whose body never comes (or comes a byte at a time) holds the
//!   dispatch throttle only until `Options::body_timeout`: the connection faults
//!   (`body_timeout`), the budget goes back, and the honest client's message goes through;
//!   a body that arrives slowly but steadily is not cut.
//! - Concurrent reconnects of one lossless session (replaces racing stale connects) never
//!   wedge the messenger. Regression: a session answering on a socket it had adopted took
//!   the registry with its engine locked, while an accept for the same peer on another
//!   thread held the registry and waited for that engine: both posix workers deadlocked
//!   (found by `bench hostile`'s reconnect storm).
#![allow(clippy::disallowed_methods)] // a test driver: bounded waits read the clock

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgr::crc::ceph_crc32c;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::features;
use msgr::messenger::{Messenger, TransportKind};
use msgr::msg::{MPing, MessageHeader, MsgType, TypedMessage};
use msgr::osd::{ObjectStore, OsdDispatcher};
use msgr::proto::{Options, Policy};
use msgr::wire::banner::{BANNER, SERVER_HELLO_LEN};
use msgr::wire::{ConnectReply, ConnectReplyRepr, ConnectRepr, HeaderRepr, Tag};
use serde_json::Value;

const KINDS: [TransportKind; 2] = [TransportKind::Posix, TransportKind::Simple];
const STEP: Duration = Duration::from_secs(10);

/// An OSD-like server (answers MPing) with `opts`; OSD peers lossless.
fn server(kind: TransportKind, opts: Options) -> (Messenger, EntityAddr) {
    server_throttled(kind, opts, 100 << 20)
}

/// [`server`] with a dispatch throttle of `dispatch_bytes`.
fn server_throttled(
    kind: TransportKind,
    opts: Options,
    dispatch_bytes: u64,
) -> (Messenger, EntityAddr) {
    let m = Messenger::builder(EntityName::new(EntityType::OSD, 0), 77)
        .transport(kind)
        .workers(2)
        .options(opts)
        .dispatch_throttle_bytes(dispatch_bytes)
        .build();
    m.set_default_policy(Policy::stateless_registered_server(0));
    m.set_policy(EntityType::OSD, Policy::lossless_peer(0));
    m.add_dispatcher_tail(Arc::new(OsdDispatcher::new(Arc::new(ObjectStore::new()))));
    let addr = m.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    m.start().unwrap();
    (m, addr)
}

fn counter(m: &Messenger, path: &[&str]) -> u64 {
    let mut v: &Value = &m.perf_dump()["msgr"];
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// Polls `f` until it holds (bounded by [`STEP`]).
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + STEP;
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {STEP:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dial(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, STEP).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    s.set_write_timeout(Some(STEP)).unwrap();
    s
}

/// Whether the server closed `s` (EOF or reset) after what it sent.
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

/// A client that opens a session and gets a ping answered.
fn ping_works(addr: EntityAddr) {
    let c = Messenger::builder(EntityName::new(EntityType::CLIENT, 9), 99)
        .transport(TransportKind::Posix)
        .workers(1)
        .build();
    c.set_default_policy(Policy::lossy_client(0));
    let (tx, rx) = std::sync::mpsc::channel();
    c.add_dispatcher_tail(Arc::new(Inbox(std::sync::Mutex::new(tx))));
    c.start().unwrap();
    let conn = c.connect_to(addr, EntityType::OSD);
    conn.send_message(MPing::new().to_message(0).with_tid(5))
        .unwrap();
    let m = rx.recv_timeout(STEP).expect("a ping reply");
    assert_eq!(m, 5);
    c.shutdown();
    c.wait();
}

struct Inbox(std::sync::Mutex<std::sync::mpsc::Sender<u64>>);

impl msgr::messenger::Dispatcher for Inbox {
    fn ms_dispatch(&self, m: &msgr::messenger::Incoming) -> bool {
        let _ = self.0.lock().unwrap().send(m.msg.header.tid);
        true
    }
}

/// Reads the server hello and sends ours as `ty` with `nonce`.
fn hello(s: &mut TcpStream, nonce: u32) {
    let mut b = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut b).unwrap();
    let me = EntityAddr::v1(SocketAddr::new(s.local_addr().unwrap().ip(), 9), nonce);
    let mut out = BANNER.to_vec();
    out.extend_from_slice(&me.to_legacy());
    s.write_all(&out).unwrap();
}

fn connect(global_seq: u32, connect_seq: u32) -> [u8; ConnectRepr::LEN] {
    connect_as(EntityType::OSD, global_seq, connect_seq)
}

fn connect_as(ty: EntityType, global_seq: u32, connect_seq: u32) -> [u8; ConnectRepr::LEN] {
    ConnectRepr {
        features: features::PACIFIC_ALL,
        host_type: ty,
        global_seq,
        connect_seq,
        // CEPH_OSD_PROTOCOL between OSDs, CEPH_OSDC_PROTOCOL from clients.
        protocol_version: if ty == EntityType::OSD { 10 } else { 24 },
        authorizer_protocol: 0,
        authorizer_len: 0,
        flags: 0,
    }
    .emit()
}

fn reply(s: &mut TcpStream) -> std::io::Result<ConnectReplyRepr> {
    let mut b = [0u8; ConnectReplyRepr::LEN];
    s.read_exact(&mut b)?;
    Ok(ConnectReplyRepr::parse(&ConnectReply::new_unchecked(&b[..])).unwrap())
}

#[test]
fn handshakes_beyond_the_bound_close_the_oldest() {
    for kind in KINDS {
        let opts = Options {
            max_handshakes: 4,
            ready_timeout: Duration::from_secs(60),
            ..Options::default()
        };
        let (m, addr) = server(kind, opts);
        let sa = addr.addr.unwrap();
        let mut socks: Vec<TcpStream> = Vec::new();
        for i in 0..10 {
            socks.push(dial(sa));
            // In order: the daemon's notion of "oldest" is accept order.
            eventually("accepted", || counter(&m, &["accepts"]) == i + 1);
        }
        eventually("six evicted", || counter(&m, &["handshakes_evicted"]) == 6);
        assert_eq!(counter(&m, &["handshakes_in_progress"]), 4, "{kind:?}");
        for (i, s) in socks.iter_mut().enumerate().take(6) {
            assert!(closed(s), "{kind:?}: the oldest ({i}) was closed");
        }
        // A new client gets in (and evicts one more of the silent ones to do so).
        ping_works(addr);
        assert_eq!(counter(&m, &["handshakes_evicted"]), 7, "{kind:?}");
        drop(socks);
        eventually("no handshake left", || {
            counter(&m, &["handshakes_in_progress"]) == 0
        });
        m.shutdown();
        m.wait();
    }
}

#[test]
fn a_socket_looping_on_stale_connects_is_given_up() {
    for kind in KINDS {
        let opts = Options {
            max_connect_attempts: 5,
            ..Options::default()
        };
        let (m, addr) = server(kind, opts);
        let mut s = dial(addr.addr.unwrap());
        hello(&mut s, 31);
        // No session for us: each reconnect (connect_seq 3) is answered RESETSESSION.
        for i in 0..5 {
            s.write_all(&connect(10 + i, 3)).unwrap();
            assert_eq!(reply(&mut s).unwrap().tag, Tag::ResetSession, "{kind:?}");
        }
        s.write_all(&connect(20, 3)).unwrap();
        assert!(
            closed(&mut s),
            "{kind:?}: the sixth connect closes the socket"
        );
        eventually("a misbehaved fault", || {
            counter(&m, &["faults", "misbehaved"]) == 1
        });
        assert_eq!(counter(&m, &["accept_replies", "reset_session"]), 5);
        m.shutdown();
        m.wait();
    }
}

/// One reconnect of the victim session: connects until the server opens it, closes the
/// socket, or gives up; returns the last connect_seq the server named.
fn reconnect(addr: SocketAddr, nonce: u32, gseq: &std::sync::atomic::AtomicU32, cseq: u32) -> u32 {
    use std::sync::atomic::Ordering;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, STEP) else {
        return cseq;
    };
    let _ = s.set_read_timeout(Some(STEP));
    let mut b = [0u8; SERVER_HELLO_LEN];
    if s.read_exact(&mut b).is_err() {
        return cseq;
    }
    let me = EntityAddr::v1(SocketAddr::new(s.local_addr().unwrap().ip(), 9), nonce);
    let mut out = BANNER.to_vec();
    out.extend_from_slice(&me.to_legacy());
    if s.write_all(&out).is_err() {
        return cseq;
    }
    let mut c = cseq;
    for _ in 0..8 {
        let g = gseq.fetch_add(1, Ordering::Relaxed) + 1;
        if s.write_all(&connect(g, c)).is_err() {
            return c;
        }
        let Ok(r) = reply(&mut s) else { return c };
        match r.tag {
            Tag::RetryGlobal => {
                gseq.fetch_max(r.global_seq, Ordering::Relaxed);
            }
            Tag::RetrySession => c = r.connect_seq,
            Tag::ResetSession => c = 0,
            Tag::Seq | Tag::Ready => {
                if r.tag == Tag::Seq {
                    let mut acked = [0u8; 8];
                    let _ = s.read_exact(&mut acked);
                    let _ = s.write_all(&0u64.to_le_bytes());
                }
                return r.connect_seq;
            }
            _ => return c,
        }
    }
    c
}

#[test]
fn concurrent_reconnects_of_one_session_do_not_wedge_the_messenger() {
    use std::sync::atomic::{AtomicU32, Ordering};
    for kind in KINDS {
        let (m, addr) = server(kind, Options::default());
        let sa = addr.addr.unwrap();
        let gseq = AtomicU32::new(100);
        let known = AtomicU32::new(0);
        let until = Instant::now() + Duration::from_millis(1500);
        std::thread::scope(|sc| {
            for t in 0..3u32 {
                let (gseq, known) = (&gseq, &known);
                sc.spawn(move || {
                    let mut round = t;
                    while Instant::now() < until {
                        round += 1;
                        // Hard resets (replaces) racing reconnects with what is known.
                        let c = if round % 2 == 0 {
                            0
                        } else {
                            known.load(Ordering::Relaxed)
                        };
                        let c = reconnect(sa, 4242, gseq, c);
                        known.store(c, Ordering::Relaxed);
                    }
                });
            }
        });
        // Still alive: the counters answer (a deadlock took the registry lock with it)
        // and a new client is served.
        let (tx, rx) = std::sync::mpsc::channel();
        let m = Arc::new(m);
        let probe = Arc::clone(&m);
        std::thread::spawn(move || {
            let _ = tx.send(probe.perf_dump());
        });
        let Ok(dump) = rx.recv_timeout(STEP) else {
            // Its threads are deadlocked: shutting it down would wait for them forever.
            std::mem::forget(m);
            panic!("{kind:?}: the messenger is wedged (perf dump did not answer)");
        };
        assert!(
            dump["msgr"]["replaced"].as_u64() > Some(0),
            "{kind:?}: sessions were replaced: {dump}"
        );
        ping_works(addr);
        m.shutdown();
        m.wait();
    }
}

/// A new open session as a client (the server's client policy: lossy) on a raw socket.
fn client_session(addr: SocketAddr, nonce: u32) -> TcpStream {
    let mut s = dial(addr);
    hello(&mut s, nonce);
    s.write_all(&connect_as(EntityType::CLIENT, 1, 0)).unwrap();
    let r = reply(&mut s).unwrap();
    match r.tag {
        Tag::Ready => {}
        Tag::Seq => {
            let mut acked = [0u8; 8];
            s.read_exact(&mut acked).unwrap();
            s.write_all(&0u64.to_le_bytes()).unwrap();
        }
        other => panic!("session refused: {other:?}"),
    }
    s
}

/// A MSG frame: tag, a header announcing `data.len()` bytes of data, the data, the footer.
fn msg_frame(seq: u64, data: &[u8]) -> Vec<u8> {
    let mut header = MessageHeader::new(MsgType::PING, 1, 1);
    header.seq = seq;
    let repr = HeaderRepr {
        header,
        front_len: 0,
        middle_len: 0,
        data_len: data.len() as u32,
    };
    let mut b = vec![u8::from(Tag::Msg)];
    b.extend_from_slice(&repr.emit(true));
    b.extend_from_slice(data);
    b.extend_from_slice(&ceph_crc32c(0, &[]).to_le_bytes()); // front
    b.extend_from_slice(&0u32.to_le_bytes()); // middle
    b.extend_from_slice(&ceph_crc32c(0, data).to_le_bytes());
    b.extend_from_slice(&[0; 8]); // signature
    b.push(1); // COMPLETE
    b
}

#[test]
fn a_message_body_that_stops_coming_gives_its_throttle_budget_back() {
    const BUDGET: usize = 1 << 20;
    for kind in KINDS {
        let opts = Options {
            body_timeout: Some(Duration::from_millis(500)),
            ..Options::default()
        };
        let (m, addr) = server_throttled(kind, opts, BUDGET as u64);
        let sa = addr.addr.unwrap();
        let faults = || counter(&m, &["faults", "body_timeout"]);

        // Withheld: a header claiming the whole budget, no body. Until the body timeout
        // nobody else's message gets in; after it, the honest client's does.
        let mut withheld = client_session(sa, 41);
        let frame = msg_frame(1, &vec![7u8; BUDGET]);
        withheld.write_all(&frame[..1 + HeaderRepr::LEN]).unwrap();
        eventually("the budget taken", || {
            m.perf_dump()["msgr"]["dispatch_throttle"]["current"].as_u64() == Some(BUDGET as u64)
        });
        let before = counter(&m, &["msgs_in"]);
        let mut honest = client_session(sa, 42);
        honest.write_all(&msg_frame(1, &[5u8; 4096])).unwrap();
        eventually("the honest message delivered", || {
            counter(&m, &["msgs_in"]) == before + 1
        });
        assert_eq!(
            faults(),
            1,
            "{kind:?}: delivered once the withholder was cut"
        );
        assert!(closed(&mut withheld), "{kind:?}: the withholder was cut");
        drop(honest);

        // Trickled: a byte every 50 ms is not progress.
        let mut trickle = client_session(sa, 43);
        trickle.write_all(&frame[..1 + HeaderRepr::LEN]).unwrap();
        let t0 = Instant::now();
        for b in &frame[1 + HeaderRepr::LEN..] {
            if trickle.write_all(&[*b]).is_err() || t0.elapsed() > STEP {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(t0.elapsed() < STEP, "{kind:?}: the trickler was not cut");
        eventually("the trickler's fault", || faults() == 2);

        // Slow but steady, so never cut and delivered: 16 KiB every 100 ms (160 KiB/s, over
        // the 64 KiB/s floor) for 256 KiB, five windows; then 64 KiB every 150 ms for
        // 768 KiB, eight windows: pieces this size make the posix transport gather the
        // frame before it offers it to the engine, and what it gathers is progress too.
        for (nonce, len, piece, pause) in [
            (45, 256 << 10, 16 << 10, 100),
            (47, 768 << 10, 64 << 10, 150),
        ] {
            let before = counter(&m, &["msgs_in"]);
            let mut slow = client_session(sa, nonce);
            for chunk in msg_frame(1, &vec![9u8; len]).chunks(piece) {
                slow.write_all(chunk).unwrap();
                std::thread::sleep(Duration::from_millis(pause));
            }
            eventually("the slow message delivered", || {
                counter(&m, &["msgs_in"]) == before + 1
            });
            assert_eq!(
                faults(),
                2,
                "{kind:?}: a steady sender ({len} B) was not cut"
            );
        }
        m.shutdown();
        m.wait();
    }
}

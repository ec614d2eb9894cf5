//! Two DPDK processes exchanging TCP through our stack over vhost-user: this test binary is
//! process A, and it runs itself again (`<this binary> --exact dpdk_vhost --nocapture`, with
//! `MSGR_VHOST_PEER=<socket>,virtio_user` in the environment) as process B. Each starts its
//! own EAL (own `--file-prefix`, no hugepages, no PCI, no telemetry) with one vdev:
//! - A: `net_vhost0,iface=<socket>,client=1` (the vhost-user back end, connecting),
//! - B: `net_virtio_user0,path=<socket>,server=1` (the virtio front end, listening).
//!
//! This is the order-independent arrangement of dpdk-virtual-links.md §2 (the vhost client
//! retries every second until the socket exists). A still waits for B's socket before its own
//! EAL starts, so the first connection attempt succeeds. `--no-huge` is enough for the
//! vhost back end to map B's memory: without hugepages EAL backs its memory with one
//! memfd, which virtio_user hands over; with hugepages it would need
//! `--single-file-segments`.
//!
//! Each process runs a `NetStack` (A 10.77.0.1/24, B 10.77.0.2/24, the ports' MACs) driven by
//! a `Worker` with the default idle policy (a short spin, then naps): two busy pollers on
//! these 2-core machines starve each other (§7). B listens and echoes everything. A
//! connects, sends 2 MiB and reads the echo, then makes 200 small request/response round
//! trips, checking every byte, and closes. B checks the whole stream it got as well.
//!
//! Shutdown is ordered so that no process polls while the other leaves: after the close
//! handshake B reports `closed` and stops polling; A stops polling when it reads that and
//! sends `bye` on B's stdin; B then stops and closes its port, cleans up EAL and exits 0; A
//! waits for that exit and only then stops its own port. Every wait has a deadline; B has
//! a watchdog in case A disappears; A kills B if anything fails. Runtime directories (both
//! prefixes), the socket and the temporary directory are removed, also on failure.
//!
//! If EAL cannot start in either process (or a PMD is missing), the test prints
//! `SKIPPED dpdk_vhost: <reason>` and passes, unless `MSGR_REQUIRE_INTEROP=1`, where that is
//! a failure. Nothing leaves the two processes: the only channel is the unix socket.

// A test driver: it bounds its waits with the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "common/eal.rs"]
mod eal_common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration as StdDuration, Instant as StdInstant};
use std::{env, fs};

use common::pattern;
use eal_common::{check_same, RuntimeDir};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::dpdk::{Eal, EthPort, Mempool, PortConfig, Started};
use stack::dpdkport::stack_pool;
use stack::l2::Neighbors;
use stack::netstack::StackError;
use stack::peer::PeerProcess;
use stack::worker::{Clock, Handler, MonotonicClock};
use stack::{ConnId, DpdkPort, IdlePolicy, NetStack, StackConfig, StackEvent, StackStats, Worker};

/// Set in B's environment: `<socket path>,<role>`.
const PEER_ENV: &str = "MSGR_VHOST_PEER";
const PEER_ROLE: &str = "virtio_user";
/// B's status lines on its stdout start with this.
const MARK: &str = "vhost-peer:";
const PORT: u16 = 7300;
const STREAM: usize = 2 << 20;
const SEED_STREAM: u64 = 1;
const ROUND_TRIPS: usize = 200;
const DESCS: u16 = 1024;
const POOL_CACHE: u32 = 256;
/// Used when a port reports no usable MAC address.
const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x77, 0x01]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x77, 0x02]);
/// Limits: setup steps (socket, link, readiness, exit); a handshake; a data phase.
const STEP_LIMIT: StdDuration = StdDuration::from_secs(20);
const CONNECT_LIMIT: StdDuration = StdDuration::from_secs(10);
const PHASE_LIMIT: StdDuration = StdDuration::from_secs(90);
/// B gives up on its own after this long (A vanished without killing it).
const PEER_WATCHDOG: StdDuration = StdDuration::from_secs(300);

#[test]
fn dpdk_vhost() {
    match env::var(PEER_ENV) {
        Ok(spec) => peer_main(&spec),
        Err(_) => driver_main(),
    }
}

fn ip_a() -> Ipv4Address {
    Ipv4Address::new(10, 77, 0, 1)
}

fn ip_b() -> Ipv4Address {
    Ipv4Address::new(10, 77, 0, 2)
}

/// The small messages of the round trips: 1..=512 bytes.
fn message(i: usize) -> Vec<u8> {
    pattern(1000 + i as u64, 1 + (i * 37) % 512)
}

/// Everything B must receive, in order.
fn expected_stream() -> Vec<u8> {
    let mut all = pattern(SEED_STREAM, STREAM);
    for i in 0..ROUND_TRIPS {
        all.extend_from_slice(&message(i));
    }
    all
}

/// Prints why the test did not run, or fails if interop tests are required.
fn skip(reason: &str) {
    eal_common::skip("dpdk_vhost", reason);
}

// ---------------------------------------------------------------------------------------
// Process A: the driver (vhost back end, client side of the socket, TCP client).
// ---------------------------------------------------------------------------------------

fn driver_main() {
    let pid = std::process::id();
    // Declared first, dropped last: after B is gone and both runtime directories.
    let tmp = match TempDir::create(pid) {
        Ok(t) => t,
        Err(e) => return skip(&format!("cannot create a temporary directory: {e}")),
    };
    let sock = tmp.path.join("vhost.sock");
    // B first: its virtio_user server creates the socket (and waits in accept()).
    let mut peer = spawn_peer(&sock);
    eprintln!("peer B: pid {}, socket {}", peer.id(), sock.display());
    let t = StdInstant::now();
    let waited = peer.wait_socket(&sock, STEP_LIMIT);
    if let Err(reason) = or_skip(&mut peer, waited) {
        return skip(&reason);
    }
    eprintln!("peer B's socket appeared after {:?}", t.elapsed());

    let prefix = format!("stack-vhost-{pid}");
    let mut runtime = RuntimeDir::new(&prefix);
    let vdev = format!("net_vhost0,iface={},client=1,queues=1", sock.display());
    let args = eal_common::test_args(&prefix, 512, 1, &[vdev]);
    let t = StdInstant::now();
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => return skip(&format!("EAL did not start: {e}; args {args:?}")),
    };
    runtime.dir = Some(eal.runtime_dir());
    eprintln!("A: EAL with {} in {:?}", args.join(" "), t.elapsed());

    if let Err(reason) = drive(&eal, &mut peer) {
        drop(eal);
        return skip(&reason);
    }

    eal.cleanup().expect("rte_eal_cleanup");
    let dir = runtime.dir.clone().expect("runtime dir");
    drop(runtime);
    assert!(!dir.exists(), "{} removed", dir.display());
    let peer_prefix = peer.runtime_prefix().to_owned();
    drop(peer);
    for d in runtime_dirs(&peer_prefix) {
        assert!(!d.exists(), "B's {} removed", d.display());
    }
    let tmp_path = tmp.path.clone();
    drop(tmp);
    assert!(!tmp_path.exists(), "{} removed", tmp_path.display());
}

/// Records the stack's connection events (not the many Readable/Writable ones).
#[derive(Default)]
struct Recorder {
    events: Vec<StackEvent>,
}

impl<P: stack::Port> Handler<P> for Recorder {
    fn event(&mut self, _stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        if !matches!(ev, StackEvent::Readable(_) | StackEvent::Writable(_)) {
            self.events.push(ev);
        }
    }
}

type Node<'p, 'a> = Worker<DpdkPort<'p, 'a>, Recorder, MonotonicClock>;

/// Everything between A's EAL init and cleanup; `Err` is a reason to skip (B could not
/// start its EAL). Whatever it made is gone before it returns or unwinds.
fn drive(eal: &Eal, peer: &mut PeerProcess) -> Result<(), String> {
    assert_eq!(eal.port_count(), 1, "the vhost port and nothing else");
    // The vhost PMD copies each received frame into an mbuf of this pool at rx_burst and
    // frees transmitted ones at once (it has no descriptors of ours): the pool holds what
    // the stack holds (queued for the device, waiting for ARP, a burst in hand, queued in
    // shards).
    let pool = stack_pool(eal, "vhost_a", 0, 0, POOL_CACHE).expect("mempool");
    let base = pool.in_use();

    let t_start = StdInstant::now();
    let port = start_port(eal, &pool, "net_vhost");
    let link_up = wait_link(&port, Some(peer))?;
    let ready = peer.wait_line("ready", STEP_LIMIT);
    let ready = or_skip(peer, ready)?;
    eprintln!(
        "A: port {} ({}) started, link up {link_up:?} after start ({:?} from open); \
         B: {ready}",
        port.id(),
        port.dev_info().driver,
        t_start.elapsed()
    );

    let mac = port_mac(&port, MAC_A);
    let dp = DpdkPort::new(&port, 0, &pool).expect("queue pair");
    let clock = MonotonicClock::new();
    let mut cfg = StackConfig::new(mac, Ipv4Cidr::new(ip_a(), 24));
    cfg.shards = 4;
    let stack = NetStack::new(cfg, dp, Neighbors::new(), clock.now());
    let mut w = Worker::new(stack, Recorder::default(), clock, IdlePolicy::default());
    eprintln!(
        "A: {} at {mac}, MTU {}, pool of {} mbufs",
        ip_a(),
        port.mtu().expect("mtu"),
        pool.size()
    );

    exchange(&mut w, peer);

    // B reported `closed`: from here on A does not poll. B stops, closes and exits.
    peer.send_line("bye").unwrap_or_else(|e| panic!("{e}"));
    let t = StdInstant::now();
    let status = peer.wait_exit(STEP_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let out = peer.output();
    assert!(status.success(), "B failed ({status}): {out}");
    let done = peer
        .seen("done")
        .unwrap_or_else(|| panic!("B said done: {out}"));
    eprintln!("B exited 0 {:?} after bye ({done})", t.elapsed());
    let b_final = peer
        .seen("final")
        .unwrap_or_else(|| panic!("B's final counters: {out}"));
    // The vhost library saw B go (its socket closed): the link is down.
    let deadline = StdInstant::now() + STEP_LIMIT;
    while port.link().expect("link").up {
        assert!(
            StdInstant::now() < deadline,
            "link still up {STEP_LIMIT:?} after B left"
        );
        thread::sleep(StdDuration::from_millis(1));
    }
    eprintln!("A: link down {:?} after bye", t.elapsed());

    // Counters: everything the port got reached the stack, everything the stack sent left
    // the port, and what A sent is what B received and back.
    let ws = w.stats();
    let st = w.stack.stats();
    let ds = w.stack.port().stats();
    let ps = port.stats().expect("port stats");
    eprintln!("A: worker {ws:?}\nA: stack {st:?}\nA: queue {ds:?}\nA: port {ps:?}");
    eprintln!("B: {b_final}");
    assert_eq!((st.rx_oversize, st.rx_malformed), (0, 0), "{st:?}");
    assert_eq!((st.tx_no_buffer, st.tx_unresolved), (0, 0), "{st:?}");
    assert_eq!((ds.nombuf, ds.too_long, ds.rx_chained), (0, 0, 0), "{ds:?}");
    check_offloads("A", &st);
    assert_eq!(st.rx_frames, ps.ipackets, "every frame received reached A");
    assert_eq!(
        st.tx_frames, ps.opackets,
        "every frame A sent left the port"
    );
    let (b_rx, b_tx) = parse_counts(&b_final);
    assert_eq!(ps.opackets, b_rx, "A sent = B received");
    assert_eq!(ps.ipackets, b_tx, "B sent = A received");
    assert!(st.rx_frames > 1000, "real traffic: {st:?}");
    assert!(ws.sleeps > 0, "A napped when idle: {ws:?}");
    assert_eq!(w.stack.connections(), 0);

    drop(w);
    assert_eq!(pool.in_use(), base, "every mbuf went back to A's pool");
    let port = port.stop().expect("stop");
    drop(port);
    assert_eq!(eal.port_count(), 0, "port closed");
    assert_eq!(pool.in_use(), base, "and still none out");
    Ok(())
}

/// Connect, 2 MiB echoed, round trips, close; returns once B reported `closed`.
fn exchange(w: &mut Node<'_, '_>, peer: &mut PeerProcess) {
    let remote = IpEndpoint::new(IpAddress::Ipv4(ip_b()), PORT);
    let c = w.stack.connect(remote).expect("connect");
    let took = run_until(w, peer, CONNECT_LIMIT, "ARP + connect", |w, _| {
        assert!(
            !w.handler.events.contains(&StackEvent::Closed(c)),
            "connection refused or timed out"
        );
        w.handler.events.contains(&StackEvent::Connected(c))
    });
    assert!(
        w.stack.stats().arp_requests_sent >= 1,
        "A asked for B's MAC"
    );
    eprintln!("connect: ARP + handshake in {took:?}");

    // 2 MiB out, the echo back at the same time.
    let data = pattern(SEED_STREAM, STREAM);
    let mut sent = 0;
    let mut got = Vec::with_capacity(STREAM);
    let mut buf = vec![0u8; 64 << 10];
    let took = run_until(w, peer, PHASE_LIMIT, "2 MiB echo", |w, _| {
        if sent < data.len() {
            sent += w.stack.send(c, &data[sent..]).expect("send");
        }
        read_all(&mut w.stack, c, &mut buf, &mut got);
        assert!(got.len() <= STREAM, "more echoed than sent");
        got.len() == STREAM
    });
    check_same("2 MiB echo", &got, &data);
    eprintln!(
        "stream: 2 MiB to B and its echo back in {took:?} ({:.1} MiB/s each way)",
        2.0 / took.as_secs_f64()
    );

    // Small request/response round trips, one at a time.
    let (mut total, mut worst) = (StdDuration::ZERO, StdDuration::ZERO);
    for i in 0..ROUND_TRIPS {
        let msg = message(i);
        let mut at_a = Vec::with_capacity(msg.len());
        let start = StdInstant::now();
        assert_eq!(w.stack.send(c, &msg), Ok(msg.len()), "request {i} fits");
        run_until(w, peer, CONNECT_LIMIT, "round trip", |w, _| {
            read_all(&mut w.stack, c, &mut buf, &mut at_a);
            at_a.len() >= msg.len()
        });
        let rtt = start.elapsed();
        check_same("reply", &at_a, &msg);
        total += rtt;
        worst = worst.max(rtt);
    }
    eprintln!(
        "round trips: {ROUND_TRIPS} of 1..=512 bytes, mean {:?}, worst {worst:?}",
        total / ROUND_TRIPS as u32
    );

    // Our FIN, B's FIN after its last echo; B reports `closed` when its side is done.
    w.stack.close(c).expect("close");
    let took = run_until(w, peer, CONNECT_LIMIT, "close", |w, _| {
        w.handler.events.contains(&StackEvent::Closed(c))
    });
    eprintln!("close: FIN, echo of it, FIN back in {took:?}");
    // (B checks the whole stream before it reports; A keeps answering meanwhile.)
    let took = run_until(w, peer, CONNECT_LIMIT, "B's close", |_, peer| {
        peer.seen("closed").is_some()
    });
    let closed = peer.seen("closed").unwrap_or_default();
    eprintln!("close: B reported {took:?} later: {closed}");
}

/// Steps A's worker until `done` (checked before each step); fails after `limit` or when B
/// exits. Returns the time it took.
fn run_until(
    w: &mut Node<'_, '_>,
    peer: &mut PeerProcess,
    limit: StdDuration,
    what: &str,
    mut done: impl FnMut(&mut Node<'_, '_>, &mut PeerProcess) -> bool,
) -> StdDuration {
    let start = StdInstant::now();
    let mut checked = start;
    loop {
        if done(w, peer) {
            return start.elapsed();
        }
        let now = StdInstant::now();
        if now - checked > StdDuration::from_millis(20) {
            checked = now;
            peer.check_running(what).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                now - start < limit,
                "{what}: not done within {limit:?}; stack {:?}; events {:?}; B: {}",
                w.stack.stats(),
                w.handler.events,
                peer.output()
            );
        }
        w.step();
    }
}

/// The sum of B's `rx=N tx=M` counters in a status line.
fn parse_counts(line: &str) -> (u64, u64) {
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    (field("rx="), field("tx="))
}

/// Where EAL puts the runtime directory of `prefix` (root, XDG, other users).
fn runtime_dirs(prefix: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/var/run/dpdk", "/tmp/dpdk"]
        .iter()
        .map(|b| Path::new(b).join(prefix))
        .collect();
    if let Some(xdg) = env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(PathBuf::from(xdg).join("dpdk").join(prefix));
    }
    dirs
}

/// A's temporary directory for the socket; removed (with whatever is in it) when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn create(pid: u32) -> std::io::Result<Self> {
        let path = env::temp_dir().join(format!("msgr-vhost-{pid}"));
        // A stale one from a killed run with the same pid: ours now.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path)?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("cleanup {}: {e}", self.path.display());
        }
    }
}

/// Starts process B: killed (if still running) and reaped when dropped, then its runtime
/// directory removed. Its output lines (stdout and stderr) come through a channel from two
/// reader threads; failures show all of them.
fn spawn_peer(sock: &Path) -> PeerProcess {
    let exe = env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "dpdk_vhost", "--nocapture", "--test-threads=1"])
        .env(PEER_ENV, format!("{},{PEER_ROLE}", sock.display()));
    PeerProcess::spawn(cmd, "B", MARK, |pid| format!("stack-vhost-{pid}"))
        .expect("spawn B")
        .abort_on("skip")
        .context_lines(usize::MAX)
}

/// A wait's `Err` as a reason to skip if B reported that it skips (its EAL did not start),
/// else a failure.
fn or_skip<T>(peer: &mut PeerProcess, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| match peer.seen("skip") {
        Some(reason) => format!("in B: {reason}"),
        None => panic!("{e}"),
    })
}

// ---------------------------------------------------------------------------------------
// Process B: the peer (virtio_user front end, server side of the socket, echo server).
// ---------------------------------------------------------------------------------------

/// Prints one status line for A.
fn say(msg: &str) {
    println!("{MARK} {msg}");
}

fn peer_main(spec: &str) {
    let (sock, role) = spec
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("{PEER_ENV}={spec:?}: want <socket>,<role>"));
    assert_eq!(role, PEER_ROLE, "{PEER_ENV}={spec:?}: unknown role");
    // A vanished without killing us: do not linger (A's guard removes our runtime files).
    thread::spawn(|| {
        thread::sleep(PEER_WATCHDOG);
        say("watchdog: giving up");
        std::process::exit(3);
    });
    let bye = stdin_lines();

    let pid = std::process::id();
    let prefix = format!("stack-vhost-{pid}");
    let mut runtime = RuntimeDir::new(&prefix);
    let vdev = format!("net_virtio_user0,path={sock},server=1,queues=1");
    let args = eal_common::test_args(&prefix, 512, 1, &[vdev]);
    // The probe of virtio_user in server mode waits in accept() until A connects.
    let t = StdInstant::now();
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => return say(&format!("skip EAL did not start: {e}; args {args:?}")),
    };
    runtime.dir = Some(eal.runtime_dir());
    say(&format!(
        "eal up in {:?} (A connected) with {}",
        t.elapsed(),
        args.join(" ")
    ));

    serve(&eal, &bye);

    eal.cleanup().expect("rte_eal_cleanup");
    let dir = runtime.dir.clone().expect("runtime dir");
    drop(runtime);
    assert!(!dir.exists(), "{} removed", dir.display());
    say(&format!(
        "done: port closed, EAL cleaned up, {} removed",
        dir.display()
    ));
}

/// Lines from stdin (A's), through a reader thread.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Echoes everything on the one connection it accepts, closes after the peer's FIN, and
/// keeps all it received for the check.
struct Echo {
    conn: Option<ConnId>,
    received: Vec<u8>,
    echoed: usize,
    fin_sent: bool,
    closed: bool,
    buf: Vec<u8>,
}

impl<P: stack::Port> Handler<P> for Echo {
    fn event(&mut self, _stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        match ev {
            StackEvent::Accepted {
                conn,
                local_port,
                remote,
            } => {
                assert!(self.conn.is_none(), "one connection only");
                assert_eq!(local_port, PORT);
                assert_eq!(remote.addr, IpAddress::Ipv4(ip_a()));
                self.conn = Some(conn);
            }
            StackEvent::Closed(c) | StackEvent::Refused(c) => {
                assert_eq!(Some(c), self.conn, "closed: an unknown connection");
                assert!(self.fin_sent, "the connection ended before B closed it");
                self.closed = true;
            }
            _ => {}
        }
    }

    fn turn(&mut self, stack: &mut NetStack<P>, _now: Instant) -> bool {
        let Some(c) = self.conn.filter(|_| !self.closed) else {
            return false;
        };
        let mut did = false;
        loop {
            match stack.recv(c, &mut self.buf) {
                Ok(0) | Err(StackError::NotOpen) => break,
                Ok(n) => {
                    self.received.extend_from_slice(&self.buf[..n]);
                    did = true;
                }
                Err(e) => panic!("B recv: {e}"),
            }
        }
        if self.echoed < self.received.len() {
            let n = stack
                .send(c, &self.received[self.echoed..])
                .unwrap_or_else(|e| panic!("B echo: {e}"));
            self.echoed += n;
            did |= n > 0;
        }
        if !self.fin_sent && self.echoed == self.received.len() && stack.peer_closed(c) == Ok(true)
        {
            stack.close(c).expect("B close");
            self.fin_sent = true;
            did = true;
        }
        did
    }
}

/// Everything between B's EAL init and cleanup.
fn serve(eal: &Eal, bye: &Receiver<String>) {
    assert_eq!(eal.port_count(), 1, "the virtio_user port and nothing else");
    // virtio_user keeps mbufs of this pool in its RX ring and sent ones in its TX ring until
    // it reclaims them, besides what the stack holds.
    let pool = stack_pool(
        eal,
        "vhost_b",
        u32::from(DESCS),
        u32::from(DESCS),
        POOL_CACHE,
    )
    .expect("mempool");
    let base = pool.in_use();

    let port = start_port(eal, &pool, "net_virtio_user");
    let link_up = wait_link(&port, None).expect("link");
    let mac = port_mac(&port, MAC_B);
    let dp = DpdkPort::new(&port, 0, &pool).expect("queue pair");
    let clock = MonotonicClock::new();
    let mut cfg = StackConfig::new(mac, Ipv4Cidr::new(ip_b(), 24));
    cfg.shards = 4;
    cfg.seed ^= 0xff;
    let mut stack = NetStack::new(cfg, dp, Neighbors::new(), clock.now());
    stack.listen(PORT).expect("listen");
    let echo = Echo {
        conn: None,
        received: Vec::with_capacity(STREAM + ROUND_TRIPS * 512),
        echoed: 0,
        fin_sent: false,
        closed: false,
        buf: vec![0u8; 64 << 10],
    };
    let mut w = Worker::new(stack, echo, clock, IdlePolicy::default());
    say(&format!(
        "ready: port {} ({}), link up {link_up:?} after start, {} at {mac}, MTU {}, \
         pool of {} mbufs",
        port.id(),
        port.dev_info().driver,
        ip_b(),
        port.mtu().expect("mtu"),
        pool.size()
    ));

    // The whole session, accept to close.
    let start = StdInstant::now();
    let limit = CONNECT_LIMIT + STEP_LIMIT + 2 * PHASE_LIMIT;
    while !w.handler.closed {
        assert!(
            start.elapsed() < limit,
            "B: session not over within {limit:?}; stack {:?}; {} bytes received",
            w.stack.stats(),
            w.handler.received.len()
        );
        w.step();
    }
    let session = start.elapsed();
    check_same("B received", &w.handler.received, &expected_stream());
    let ps = port.stats().expect("port stats");
    say(&format!(
        "closed: {} bytes received, checked and echoed; session {session:?}; rx={} tx={}",
        w.handler.received.len(),
        ps.ipackets,
        ps.opackets
    ));

    // No polling from here on. A stops polling too, then says bye.
    match bye.recv_timeout(STEP_LIMIT) {
        Ok(l) if l == "bye" => {}
        other => panic!("B: no bye from A within {STEP_LIMIT:?}: {other:?}"),
    }
    let ws = w.stats();
    let st = w.stack.stats();
    let ds = w.stack.port().stats();
    let ps = port.stats().expect("port stats");
    say(&format!(
        "final rx={} tx={} port {ps:?}",
        ps.ipackets, ps.opackets
    ));
    say(&format!("stats worker {ws:?} stack {st:?} queue {ds:?}"));
    assert_eq!((st.rx_oversize, st.rx_malformed), (0, 0), "{st:?}");
    assert_eq!((st.tx_no_buffer, st.tx_unresolved), (0, 0), "{st:?}");
    assert_eq!((ds.nombuf, ds.too_long, ds.rx_chained), (0, 0, 0), "{ds:?}");
    check_offloads("B", &st);
    assert_eq!(st.rx_frames, ps.ipackets, "every frame received reached B");
    assert_eq!(
        st.tx_frames, ps.opackets,
        "every frame B sent left the port"
    );
    assert_eq!(w.stack.connections(), 0);

    let t = StdInstant::now();
    drop(w);
    let port = port.stop().expect("stop");
    drop(port);
    assert_eq!(eal.port_count(), 0, "port closed");
    assert_eq!(pool.in_use(), base, "every mbuf went back to B's pool");
    say(&format!("stopped and closed in {:?}", t.elapsed()));
}

// ---------------------------------------------------------------------------------------
// Both.
// ---------------------------------------------------------------------------------------

/// Opens port 0 (the vdev), checks its driver, one queue pair, starts it. Both PMDs offer
/// TCP checksum offload both ways (virtio's VIRTIO_NET_F_CSUM / GUEST_CSUM): it must be on,
/// so the stack's offload path runs here (the IPv4 header checksum is not offered).
fn start_port<'a>(eal: &'a Eal, pool: &'a Mempool<'a>, driver: &str) -> EthPort<'a, Started> {
    let port = EthPort::open(eal, 0).expect("open port 0");
    let info = port.dev_info().clone();
    assert_eq!(info.driver, driver, "{info:?}");
    let mut port = port.configure(&PortConfig::new(1, 1)).expect("configure");
    let got = port.config();
    assert!(
        got.tx_checksum().tcp && got.rx_offloads & PortConfig::CHECKSUM_RX != 0,
        "{driver}: TCP checksum offloads enabled: {got:?}, device {info:?}"
    );
    port.rx_queue_setup(0, DESCS, pool).expect("rx queue");
    port.tx_queue_setup(0, DESCS).expect("tx queue");
    port.start().expect("start")
}

/// The checksum offloads did the work: every TCP segment sent was left to the device
/// (everything but ARP), every one received was vouched for by it (virtio passes them with
/// the checksum left partial: software verification would have failed them all), and none
/// was bad.
fn check_offloads(who: &str, st: &StackStats) {
    assert_eq!(st.rx_bad_checksum, 0, "{who}: {st:?}");
    let arp = st.arp_requests_sent + st.arp_replies_sent;
    assert_eq!(
        st.tx_checksum_offloaded + arp,
        st.tx_frames,
        "{who}: {st:?}"
    );
    assert!(
        st.rx_checksum_by_device + 2 >= st.rx_frames && st.rx_checksum_by_device > 100,
        "{who}: all but ARP verified by the device: {st:?}"
    );
}

/// Waits (bounded) for the port's link; how long it took. With `peer` (A), fails early if
/// B exits, and returns `Err` if B reported that it skips.
fn wait_link(
    port: &EthPort<'_, Started>,
    mut peer: Option<&mut PeerProcess>,
) -> Result<StdDuration, String> {
    let start = StdInstant::now();
    loop {
        if port.link().expect("link").up {
            return Ok(start.elapsed());
        }
        if let Some(p) = peer.as_deref_mut() {
            let running = p.check_running("waiting for link up");
            or_skip(p, running)?;
        }
        assert!(
            start.elapsed() < STEP_LIMIT,
            "port {} link not up within {STEP_LIMIT:?}",
            port.id()
        );
        thread::sleep(StdDuration::from_millis(1));
    }
}

/// The port's MAC address if it is a usable unicast one, else `fallback`.
fn port_mac(port: &EthPort<'_, Started>, fallback: EthernetAddress) -> EthernetAddress {
    let mac = EthernetAddress(port.mac_addr().expect("mac address"));
    if mac.is_unicast() && mac != EthernetAddress([0; 6]) {
        mac
    } else {
        eprintln!("port {} reports MAC {mac}: using {fallback}", port.id());
        fallback
    }
}

/// Reads everything buffered on `c` into `into`.
fn read_all(s: &mut NetStack<DpdkPort<'_, '_>>, c: ConnId, buf: &mut [u8], into: &mut Vec<u8>) {
    loop {
        match s.recv(c, buf) {
            Ok(0) => return,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) => panic!("recv: {e}"),
        }
    }
}

//! Two workers on two queues of one real DPDK port, with software steering between them.
//!
//! The port is `net_af_packet` over a veth (as in `dpdk_kernel.rs`: the test makes its own
//! namespace `msgr-mq-<pid>` and veth pair, the kernel end in the namespace with
//! 10.98.<x>.1/24, the DPDK end in the root namespace, up, without an address, offloads
//! off on both). With `qpairs=2` the PMD opens one packet socket per queue and joins them
//! in a `PACKET_FANOUT_HASH` group: the kernel spreads received packets over the two queues
//! by its own flow hash, which the stack cannot predict. The port reports no RSS, so
//! `configure` leaves RSS off. Each queue gets a `NetStack` (10.98.<x>.2, the veth's MAC,
//! one shared neighbour table) that owns the flows its software Toeplitz model
//! (`Steering::round_robin(2, 128)`) gives queue `q`, and hands frames of the other
//! worker's flows over through a `Forwarding` group. Worker 1 runs on worker lcore 1
//! (`Eal::scope`, stopped by a guard also when the test fails), worker 0 on the main lcore;
//! both nap when idle (the default `Sleep` policy), so the kernel peers get CPU time.
//!
//! Checked, with both kinds of traffic at once:
//! - a kernel client (python3 in the namespace) opens 16 connections to us, sends 64 KiB
//!   and its FIN on each; whichever worker owns a flow echoes everything and closes; the
//!   client checks every byte and the EOF and exits 0;
//! - each worker, on its first turn, opens 8 connections to a kernel echo server, sends
//!   64 KiB on each, checks the echo, closes; the server checks that each connection
//!   brought 64 KiB and exits 0 after all 16;
//! - frames were forwarded between the workers (both ways of traffic need it: the kernel's
//!   fanout ignores our model), none dropped for a full queue, nothing malformed or
//!   oversized, the port's counters match the stacks', every mbuf back in the pool;
//!   worker 1's results come back through a channel when it is stopped.
//!
//! Cleanup, passing or failing (guards): helpers killed, veth and namespace deleted, EAL's
//! runtime directory removed. Needs root, `ip` and python3; without them, or if EAL cannot
//! start, the test prints `SKIPPED dpdk_multiqueue: <reason>` and passes, unless
//! `MSGR_REQUIRE_INTEROP=1`. EAL initialises once per process: exactly one `#[test]`.

// A test driver: it bounds its waits with the real clock.
#![allow(clippy::disallowed_methods)]

#[path = "common/eal.rs"]
mod eal_common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread::{self};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use eal_common::RuntimeDir;
use netns::{kernel_pattern, preflight, Helper, Lab, MTU, STEP_LIMIT};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Cidr};
use stack::dpdk::{self, Eal, EthPort, Mempool, PoolSizing, PortConfig, Started};
use stack::dpdkport::DpdkPortStats;
use stack::l2::Neighbors;
use stack::netstack::Forwarding;
use stack::rss::Steering;
use stack::worker::{Clock, Handler, TscClock, WorkerStats};
use stack::{ConnId, DpdkPort, IdlePolicy, NetStack, StackConfig, StackEvent, StackStats, Worker};

/// The kernel echo server's port (in the namespace) and ours.
const SERVER_PORT: u16 = 7300;
const OUR_PORT: u16 = 7400;
const WORKERS: u16 = 2;
/// Connections from the kernel client to us, and from each worker to the kernel server.
const INBOUND: usize = 16;
const OUTBOUND_PER_WORKER: usize = 8;
/// Bytes each connection carries each way.
const BYTES: usize = 64 << 10;
/// Seeds: the client's connection k uses `SEED_IN + k`; worker w's connection i uses
/// `SEED_OUT + 100 * w + i`.
const SEED_IN: u32 = 10;
const SEED_OUT: u32 = 1000;
const POOL_CACHE: u32 = 256;
const FORWARD_DEPTH: usize = 1024;
/// Socket buffers of our connections (and what the echo keeps in flight at most).
const SOCK_BUF: usize = 64 << 10;
const PHASE_LIMIT: StdDuration = StdDuration::from_secs(60);

/// The kernel's side, run as `python3 -c PY <mode> <args>`: `prep IFACE ROLE` (IPv6 and
/// offloads off; for the DPDK end also forwarding off and no ARP answers from the root
/// kernel), `server HOST PORT N SIZE` (echoes N connections, each must bring SIZE bytes),
/// `clients HOST PORT N SIZE SEED0` (N connections at once, each sends SIZE bytes and
/// checks the echo). Exits non-zero with the reason on stderr if anything is off.
/// `pattern` must match `kernel_pattern` below.
const PY: &str = r#"
TIMEOUT = 45

def run_all(jobs):
    errors = []
    def wrap(f):
        try:
            e = f()
            if e:
                errors.append(e)
        except OSError as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=wrap, args=(f,)) for f in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors

def server(host, port, n, size):
    n, size = int(n), int(size)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(64)
    ls.settimeout(TIMEOUT)
    print("READY", flush=True)
    conns = []
    for _ in range(n):
        c, peer = ls.accept()
        c.settimeout(TIMEOUT)
        conns.append((c, peer))
    def echo(c, peer):
        total = 0
        while True:
            chunk = c.recv(1 << 16)
            if not chunk:
                break
            c.sendall(chunk)
            total += len(chunk)
        c.shutdown(socket.SHUT_WR)
        c.close()
        if total != size:
            return "from %s:%d: %d bytes, want %d" % (peer[0], peer[1], total, size)
    # (Accepted first, served in parallel: the first ones may already be sending.)
    errors = run_all([lambda c=c, p=p: echo(c, p) for c, p in conns])
    if errors:
        sys.exit("server: %d of %d failed: %s" % (len(errors), n, errors))
    ports = sorted(p[1] for _, p in conns)
    print("server: %d connections echoed %d bytes each; client ports %s" % (n, size, ports), flush=True)

def clients(host, port, n, size, seed0):
    n, size, seed0 = int(n), int(size), int(seed0)
    # The send runs in its own thread so that the echo is read while sending.
    def one(k):
        data = pattern(seed0 + k, size)
        c = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        c.settimeout(TIMEOUT)
        send_errors = []
        def send():
            try:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
            except OSError as e:
                send_errors.append(repr(e))
        t = threading.Thread(target=send)
        t.start()
        got = recv_to_eof(c, len(data))
        t.join()
        c.close()
        if send_errors:
            return "client %d send: %s" % (k, send_errors)
        return differs("client %d echo" % k, got, data)
    errors = run_all([lambda k=k: one(k) for k in range(n)])
    if errors:
        sys.exit("clients: %d of %d failed: %s" % (len(errors), n, errors))
    print("clients: %d connections, %d bytes each echoed and checked" % (n, size), flush=True)

{"prep": prep, "server": server, "clients": clients}[sys.argv[1]](*sys.argv[2:])
"#;

#[test]
fn dpdk_multiqueue() {
    let python = match preflight() {
        Ok(p) => p,
        Err(reason) => return skip(&reason),
    };
    let pid = std::process::id();
    // Declared first, so removed last: after EAL cleanup and the runtime directory.
    let lab = match Lab::create(pid, ["mq", "msgrq", "msgrk"], 98, python, PY) {
        Ok(lab) => lab,
        Err(e) => return skip(&format!("cannot create a network namespace: {e}")),
    };
    let t = StdInstant::now();
    lab.setup().expect("veth pair and namespace setup");
    eprintln!(
        "namespace {} with {} ({}), veth {} for DPDK: set up in {:?}",
        lab.ns,
        lab.peer,
        lab.kernel_ip(),
        lab.dev,
        t.elapsed()
    );

    let prefix = format!("stack-mq-{pid}");
    let mut runtime = RuntimeDir::new(&prefix);
    let args = eal_common::test_args(
        &prefix,
        512,
        2,
        &[format!("net_af_packet0,iface={},qpairs=2", lab.dev)],
    );
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => return skip(&format!("EAL did not start: {e}; args {args:?}")),
    };
    runtime.dir = Some(eal.runtime_dir());
    assert_eq!(dpdk::worker_lcores(), vec![1], "one worker lcore");

    run(&eal, &lab);

    eal.cleanup().expect("rte_eal_cleanup");
    let dir = runtime.dir.clone().expect("runtime dir");
    drop(runtime);
    assert!(!dir.exists(), "{} removed", dir.display());
    lab.remove_and_verify();
}

/// Prints why the test did not run, or fails if interop tests are required.
fn skip(reason: &str) {
    eal_common::skip("dpdk_multiqueue", reason);
}

/// What a worker did, reported when it stops (worker 1's through a channel from its lcore).
#[derive(Debug)]
struct Report {
    worker: usize,
    /// Outbound connections whose echo came back intact and that closed cleanly.
    outbound_ok: usize,
    /// Accepted connections echoed to the end and closed after the peer's FIN.
    inbound_ok: usize,
    failures: Vec<String>,
    /// Connections still open at the stop.
    open: usize,
    stack: StackStats,
    queue: DpdkPortStats,
    turns: WorkerStats,
}

/// One outbound connection: what it sends, what came back.
struct Out {
    conn: ConnId,
    data: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    up: bool,
    /// Echo complete and checked; our FIN queued.
    closing: bool,
    done: bool,
}

/// One accepted connection: bytes echoed, our FIN queued.
#[derive(Default)]
struct In {
    echoed: usize,
    fin: bool,
}

/// Both workers' application: connects to the kernel server on its first turn, echoes
/// what kernel clients send. After each turn it publishes in `quiet` whether all its
/// outbound connections are done and no connection is left, and in `failed` whether
/// anything went wrong (the details are in its report).
struct Node<'e> {
    me: usize,
    server: IpEndpoint,
    started: bool,
    outs: Vec<Out>,
    ins: HashMap<ConnId, In>,
    outbound_ok: usize,
    inbound_ok: usize,
    failures: Vec<String>,
    quiet: &'e AtomicBool,
    failed: &'e AtomicBool,
}

impl<'e> Node<'e> {
    fn new(me: usize, server: IpEndpoint, quiet: &'e AtomicBool, failed: &'e AtomicBool) -> Self {
        Self {
            me,
            server,
            started: false,
            outs: Vec::new(),
            ins: HashMap::new(),
            outbound_ok: 0,
            inbound_ok: 0,
            failures: Vec::new(),
            quiet,
            failed,
        }
    }

    fn outbound_done(&self) -> bool {
        self.started && self.outs.iter().all(|o| o.done)
    }

    /// What worker `w` did (its stack, queue pair and loop counters included).
    fn report(w: &Worker<Port<'_, '_>, Self, TscClock>) -> Report {
        let h = &w.handler;
        Report {
            worker: h.me,
            outbound_ok: h.outbound_ok,
            inbound_ok: h.inbound_ok,
            failures: h.failures.clone(),
            open: w.stack.connections(),
            stack: w.stack.stats(),
            queue: w.stack.port().stats(),
            turns: w.stats(),
        }
    }

    /// Sends what fits, takes what came back, closes once the whole echo is in and right.
    fn pump<P: stack::Port>(&mut self, stack: &mut NetStack<P>, k: usize) {
        let o = &mut self.outs[k];
        if !o.up || o.done {
            return;
        }
        if o.sent < o.data.len() {
            match stack.send(o.conn, &o.data[o.sent..]) {
                Ok(n) => o.sent += n,
                Err(e) => self.failures.push(format!("out {k}: send: {e}")),
            }
        }
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = stack.recv(o.conn, &mut buf) {
            if n == 0 {
                break;
            }
            o.got.extend_from_slice(&buf[..n]);
        }
        if !o.closing && o.got.len() >= o.data.len() {
            o.closing = true;
            if o.got != o.data {
                let at = o.got.iter().zip(&o.data).position(|(a, b)| a != b);
                self.failures.push(format!(
                    "worker {} out {k}: {} bytes back of {}, first difference at {at:?}",
                    self.me,
                    o.got.len(),
                    o.data.len()
                ));
            }
            let _ = stack.close(o.conn);
        }
    }

    /// Echoes what fits in the send buffer; closes after the peer's FIN once all is echoed.
    fn echo<P: stack::Port>(&mut self, stack: &mut NetStack<P>, c: ConnId) {
        let Some(st) = self.ins.get_mut(&c) else {
            return;
        };
        let mut buf = [0u8; 16 << 10];
        loop {
            // Only take what can be sent back at once: the rest waits for `Writable`.
            let room = SOCK_BUF.saturating_sub(stack.send_queue(c).unwrap_or(SOCK_BUF));
            if room == 0 {
                let _ = stack.notify_writable(c);
                return;
            }
            let want = room.min(buf.len());
            let n = stack.recv(c, &mut buf[..want]).unwrap_or(0);
            if n == 0 {
                break;
            }
            let sent = stack.send(c, &buf[..n]).unwrap_or(0);
            st.echoed += sent;
            if sent != n {
                self.failures
                    .push(format!("in {c:?}: echo took {sent} of {n} bytes"));
                return;
            }
        }
        if !st.fin && stack.peer_closed(c) == Ok(true) {
            st.fin = true;
            let _ = stack.close(c);
        }
    }
}

impl<P: stack::Port> Handler<P> for Node<'_> {
    fn event(&mut self, stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        match ev {
            StackEvent::Accepted {
                conn, local_port, ..
            } => {
                if local_port != OUR_PORT {
                    self.failures.push(format!("accepted on port {local_port}"));
                }
                self.ins.insert(conn, In::default());
                self.echo(stack, conn);
            }
            StackEvent::Connected(c) => {
                if let Some(k) = self.outs.iter().position(|o| o.conn == c) {
                    self.outs[k].up = true;
                    self.pump(stack, k);
                }
            }
            StackEvent::Readable(c) | StackEvent::Writable(c) => {
                if let Some(k) = self.outs.iter().position(|o| o.conn == c) {
                    self.pump(stack, k);
                } else {
                    self.echo(stack, c);
                }
            }
            StackEvent::Closed(c) | StackEvent::Refused(c) => {
                if let Some(o) = self.outs.iter_mut().find(|o| o.conn == c && !o.done) {
                    o.done = true;
                    if o.closing && o.got == o.data {
                        self.outbound_ok += 1;
                    } else {
                        self.failures.push(format!(
                            "worker {} out to {}: closed early (up {}, {} sent, {} back)",
                            self.me,
                            self.server,
                            o.up,
                            o.sent,
                            o.got.len()
                        ));
                    }
                } else if let Some(st) = self.ins.remove(&c) {
                    if st.fin && st.echoed == BYTES {
                        self.inbound_ok += 1;
                    } else {
                        self.failures.push(format!(
                            "worker {} in {c:?}: closed early ({} echoed, fin {})",
                            self.me, st.echoed, st.fin
                        ));
                    }
                }
            }
        }
    }

    fn turn(&mut self, stack: &mut NetStack<P>, _now: Instant) -> bool {
        if self.started {
            let quiet = self.outbound_done() && stack.connections() == 0;
            self.quiet.store(quiet, Ordering::Release);
            if !self.failures.is_empty() {
                self.failed.store(true, Ordering::Release);
            }
            return false;
        }
        // First turn: the outbound connections, from local ports our model gives this queue.
        self.started = true;
        for i in 0..OUTBOUND_PER_WORKER {
            let seed = SEED_OUT + 100 * self.me as u32 + i as u32;
            match stack.connect(self.server) {
                Ok(conn) => self.outs.push(Out {
                    conn,
                    data: kernel_pattern(seed, BYTES),
                    sent: 0,
                    got: Vec::with_capacity(BYTES),
                    up: false,
                    closing: false,
                    done: false,
                }),
                Err(e) => self.failures.push(format!("connect {i}: {e}")),
            }
        }
        true
    }
}

type Port<'p, 'a> = DpdkPort<'p, 'a>;

/// Everything between EAL init and cleanup; whatever it made is gone (helpers killed,
/// lcore stopped, port stopped and closed, pool freed) before it returns or unwinds.
fn run(eal: &Eal, lab: &Lab) {
    assert_eq!(eal.port_count(), 1, "the af_packet port and nothing else");
    // The PMD copies each received frame into a fresh mbuf and frees each transmitted one
    // at once; per worker: frames queued for the device, waiting for ARP, a burst, frames in
    // shards; plus both forwarding queues and both lcores' caches.
    let sizing = PoolSizing {
        rx_descs: 0,
        tx_descs: 0,
        in_flight: u32::from(WORKERS) * (1024 + 256 + 32 + 1024 + FORWARD_DEPTH as u32),
        lcores: u32::from(WORKERS),
        cache: POOL_CACHE,
        retransmit: 512,
    };
    let n = sizing.mbufs();
    let pool = Mempool::pktmbuf(
        eal,
        "mq_test",
        n,
        POOL_CACHE,
        dpdk::MBUF_DEFAULT_DATA_ROOM,
        eal.socket_id(),
    )
    .expect("mempool");
    let base = pool.in_use();

    let port = EthPort::open(eal, 0).expect("open port 0");
    let info = port.dev_info().clone();
    assert_eq!(info.driver, "net_af_packet", "{info:?}");
    assert!(
        info.max_rx_queues >= WORKERS && info.max_tx_queues >= WORKERS,
        "qpairs=2 gives two queue pairs: {info:?}"
    );
    let mut port = port
        .configure(&PortConfig::new(WORKERS, WORKERS))
        .expect("configure");
    // af_packet reports no RSS: the kernel's fanout spreads the packets, not a Toeplitz
    // hash we could program, so `configure` leaves RSS off and the port's own model is
    // "everything on queue 0". Ownership follows our model instead, with forwarding.
    assert!(!info.supports_rss(), "{info:?}");
    assert!(!port.config().rss, "{:?}", port.config());
    for q in 0..WORKERS {
        port.rx_queue_setup(q, 512, &pool).expect("rx queue");
        port.tx_queue_setup(q, 512).expect("tx queue");
    }
    let port = port.start().expect("start");
    assert_eq!(port.steering(None), Steering::single());
    wait_link(&port);
    let mac = EthernetAddress(port.mac_addr().expect("mac"));
    assert_eq!(Ok(mac), lab.dev_mac(), "the port's MAC is the veth's");
    assert_eq!(port.mtu().expect("mtu"), MTU);

    // One stack per queue; one neighbour table; one forwarding group.
    let clock = TscClock::new(eal.tsc_hz());
    let neighbors = Neighbors::new();
    let mut fwd = Forwarding::group(usize::from(WORKERS), FORWARD_DEPTH).into_iter();
    let mut stacks: Vec<NetStack<Port<'_, '_>>> = (0..WORKERS)
        .map(|q| {
            let dp = DpdkPort::new(&port, q, &pool).expect("queue pair");
            let mut cfg = StackConfig::new(mac, Ipv4Cidr::new(lab.our_ip(), 24));
            cfg.shards = 16;
            cfg.rx_buffer = SOCK_BUF;
            cfg.tx_buffer = SOCK_BUF;
            cfg.queue = q;
            cfg.steering = Steering::round_robin(WORKERS, 128);
            cfg.seed ^= u64::from(q) + 1;
            let mut st = NetStack::new(cfg, dp, std::sync::Arc::clone(&neighbors), clock.now());
            st.set_forwarding(fwd.next().expect("one handle per worker"));
            st.listen(OUR_PORT).expect("listen");
            st
        })
        .collect();
    let stack1 = stacks.pop().expect("worker 1's stack");
    let stack0 = stacks.pop().expect("worker 0's stack");
    eprintln!(
        "port {} ({}, {} RX / {} TX queues, RSS {}), MAC {mac}, {} at {}, pool of {n} mbufs",
        port.id(),
        info.driver,
        port.config().rx_queues,
        port.config().tx_queues,
        port.config().rss,
        lab.dev,
        lab.our_ip()
    );

    // The kernel's side: the echo server first (our workers connect on their first turn),
    // then the clients (they may connect before worker 1 runs: their frames wait in the
    // PMD's rings).
    let host = lab.kernel_ip().to_string();
    let (bytes, n_out) = (
        BYTES.to_string(),
        (usize::from(WORKERS) * OUTBOUND_PER_WORKER).to_string(),
    );
    let server_port = SERVER_PORT.to_string();
    let mut server = Helper::spawn(
        lab,
        "kernel server",
        &["server", &host, &server_port, &n_out, &bytes],
    );
    server.wait_line("READY", STEP_LIMIT);
    let ours = lab.our_ip().to_string();
    let (our_port, n_in, seed_in) = (
        OUR_PORT.to_string(),
        INBOUND.to_string(),
        SEED_IN.to_string(),
    );
    let start = StdInstant::now();
    let mut clients = Helper::spawn(
        lab,
        "kernel clients",
        &["clients", &ours, &our_port, &n_in, &bytes, &seed_in],
    );

    let to_server = IpEndpoint::new(IpAddress::Ipv4(lab.kernel_ip()), SERVER_PORT);
    let quiet = [AtomicBool::new(false), AtomicBool::new(false)];
    let failed = [AtomicBool::new(false), AtomicBool::new(false)];
    let stop = &AtomicBool::new(false);
    let (report_tx, reports) = mpsc::channel::<Report>();
    let idle = IdlePolicy::default();
    let (r0, r1, lcore) = eal.scope(|s| {
        // However this closure ends, worker 1's loop is told to stop (the scope waits).
        let _stop = StopOnDrop(stop);
        let node1 = Node::new(1, to_server, &quiet[1], &failed[1]);
        let mut w1 = Worker::new(stack1, node1, clock, idle);
        let h = s
            .launch(1, move || {
                w1.run(stop);
                let r = Node::report(&w1);
                eprintln!("worker 1 ({}): {r:?}", thread_name());
                let _ = report_tx.send(r);
                // The stack (its queue pair, its mbufs) goes here, on its own lcore.
                drop(w1);
                0
            })
            .expect("launch worker 1");

        let node0 = Node::new(0, to_server, &quiet[0], &failed[0]);
        let mut w0 = Worker::new(stack0, node0, clock, idle);
        let mut lcore_gone = false;
        let done = w0.run_until(Duration::from_secs(PHASE_LIMIT.as_secs()), |w| {
            for h in [&mut server, &mut clients] {
                if let Some(st) = h.exited() {
                    let what = h.what;
                    assert!(st.success(), "{what} failed ({st}): {}", h.output());
                }
            }
            if let Err(TryRecvError::Disconnected) = reports.try_recv() {
                lcore_gone = true;
            }
            assert!(!lcore_gone, "worker 1's lcore ended early (panicked?)");
            assert!(
                !failed[1].load(Ordering::Acquire),
                "worker 1 failed (its report follows on stderr)"
            );
            assert!(
                w.handler.failures.is_empty(),
                "worker 0: {:?}",
                w.handler.failures
            );
            server.exited().is_some()
                && clients.exited().is_some()
                && quiet.iter().all(|q| q.load(Ordering::Acquire))
        });
        let took = start.elapsed();
        assert!(
            done,
            "not done within {PHASE_LIMIT:?}: server {}; clients {}; \
             worker 1 quiet {}; worker 0 {} of {} outbound done, {} in, {} open, {:?}",
            server.output(),
            clients.output(),
            quiet[1].load(Ordering::Acquire),
            w0.handler.outs.iter().filter(|o| o.done).count(),
            w0.handler.outs.len(),
            w0.handler.inbound_ok,
            w0.stack.connections(),
            w0.stack.stats()
        );
        eprintln!("all connections done in {took:?}");
        stop.store(true, Ordering::Release);
        let r1 = match reports.recv_timeout(STEP_LIMIT) {
            Ok(r) => r,
            Err(e) => panic!("no report from worker 1 within {STEP_LIMIT:?}: {e}"),
        };
        let lcore = h.join();
        let r0 = Node::report(&w0);
        eprintln!("worker 0 (main lcore): {r0:?}");
        (r0, r1, lcore)
    });
    assert_eq!(lcore, Ok(0), "worker 1's lcore returned normally");
    server.assert_success();
    clients.assert_success();

    let reports = [&r0, &r1];
    for r in reports {
        assert!(
            r.failures.is_empty(),
            "worker {}: {:?}",
            r.worker,
            r.failures
        );
        assert_eq!(
            r.outbound_ok, OUTBOUND_PER_WORKER,
            "worker {}: every outbound connection echoed and closed",
            r.worker
        );
        assert_eq!(r.open, 0, "worker {}: no connection left", r.worker);
        let st = &r.stack;
        assert_eq!((st.rx_oversize, st.rx_malformed), (0, 0), "{st:?}");
        assert_eq!((st.tx_no_buffer, st.tx_unresolved), (0, 0), "{st:?}");
        assert_eq!(st.rx_shard_full, 0, "{st:?}");
        assert_eq!(
            (r.queue.nombuf, r.queue.too_long, r.queue.rx_chained),
            (0, 0, 0),
            "{:?}",
            r.queue
        );
        assert!(
            r.queue.rx_frames > 0,
            "the kernel's fanout used queue {}: {:?}",
            r.worker,
            r.queue
        );
    }
    let inbound: usize = reports.iter().map(|r| r.inbound_ok).sum();
    assert_eq!(
        inbound, INBOUND,
        "every accepted connection echoed and closed"
    );
    let forwarded: u64 = reports.iter().map(|r| r.stack.forwarded).sum();
    let full: u64 = reports.iter().map(|r| r.stack.forward_full).sum();
    assert!(forwarded > 0, "frames were handed over between the workers");
    assert_eq!(full, 0, "no frame dropped for a full forwarding queue");
    let ps = port.stats().expect("port stats");
    eprintln!("turns: worker 0 {:?}, worker 1 {:?}", r0.turns, r1.turns);
    eprintln!(
        "{} connections in ({} + {} by worker), {} out, {forwarded} frames forwarded \
         ({} by worker 0, {} by worker 1); port {ps:?}",
        inbound,
        r0.inbound_ok,
        r1.inbound_ok,
        r0.outbound_ok + r1.outbound_ok,
        r0.stack.forwarded,
        r1.stack.forwarded
    );
    assert_eq!(ps.oerrors, 0, "{ps:?}");
    let rx: u64 = reports.iter().map(|r| r.stack.rx_frames).sum();
    let tx: u64 = reports.iter().map(|r| r.stack.tx_frames).sum();
    assert_eq!(rx, ps.ipackets, "every frame received reached a stack");
    assert_eq!(tx, ps.opackets, "every frame sent left the port");

    assert_eq!(pool.in_use(), base, "every mbuf went back to the pool");
    let port = port.stop().expect("stop");
    drop(port);
    assert_eq!(eal.port_count(), 0, "port closed");
}

/// This thread's name as the kernel knows it (EAL names its lcore threads), for reports.
fn thread_name() -> String {
    fs::read_to_string("/proc/thread-self/comm")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned())
}

/// Waits (bounded) for the port's link.
fn wait_link(port: &EthPort<'_, Started>) {
    let deadline = StdInstant::now() + STEP_LIMIT;
    while !port.link().expect("link").up {
        assert!(
            StdInstant::now() < deadline,
            "link up within {STEP_LIMIT:?}"
        );
        thread::sleep(StdDuration::from_millis(10));
    }
}

/// Sets the flag when dropped, unwinding included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

//! Our DPDK stack against the Linux kernel's TCP/IP stack, over a veth pair: the test makes
//! its own network namespace (`msgr-t-<pid>`) and a veth pair. One end goes into the
//! namespace with 10.99.<x>.1/24; the other stays in the root namespace, up, without an
//! address, and EAL's `net_af_packet` PMD binds to it (`--vdev=net_af_packet0,iface=...`).
//! A `NetStack` runs on that port as 10.99.<x>.2/24 with the port's (the veth's) MAC, driven
//! by a `Worker` on the test thread that naps up to 50 µs whenever a turn found nothing, so
//! the kernel peers (python3 in the namespace) get the CPU.
//!
//! Checked, in this order:
//! - we connect to a kernel server: we ARP for it; 512 KiB up and the first half of
//!   768 KiB down at the same time, then our FIN, then the rest of the download and the
//!   server's FIN (our half-close, then the peer's tail: the TIME-WAIT path); bytes checked
//!   on both sides, the server exits 0;
//! - the kernel's neighbour table is flushed, then a kernel client connects to us: the
//!   kernel ARPs for us (we answer; its table then holds our MAC); it sends 1 MiB and its
//!   FIN, we echo everything and close, it checks the echo and the EOF and exits 0;
//! - no frame was oversized or malformed (offloads off), port and stack counters agree,
//!   no mbuf leaked, the port stops and closes, EAL cleans up.
//!
//! Cleanup, passing or failing (guards): helpers killed, the veth and the namespace
//! deleted, EAL's runtime directory removed. Nothing else is touched: no address or route
//! in the root namespace, no other interface, `--no-pci`.
//!
//! Why af_packet and not net_tap (dpdk-virtual-links.md): af_packet on a veth ran without
//! trouble there, while tap raises one real-time signal per packet (slow, and it made
//! processes ignore SIGINT). The pitfalls met here, and what the setup does about them:
//! - the kernel hands a veth CHECKSUM_PARTIAL packets and GSO/TSO super-packets; the
//!   af_packet PMD copies `tp_snaplen` bytes and ignores `TP_STATUS_CSUMNOTREADY`, so the
//!   stack would see bad checksums and truncated 64 KiB packets. Offloads (rx, tx, sg, tso,
//!   gso, gro) go off on both ends, with the ethtool ioctl (from python3: ethtool itself is
//!   not installed on these machines);
//! - the DPDK port's MAC is the root-side veth's, so the root kernel also takes our frames
//!   as its own. It has no address on that veth and must neither forward them nor answer
//!   for them: `forwarding=0` (no forwarding, and no ICMP errors, which would route out of
//!   the default interface) and `arp_ignore=8` on that veth; IPv6 off on both ends (no
//!   ND/MLD noise);
//! - MTU 1500 on both ends: the PMD's default (2048-byte ring frames) and the stack's MTU.
//!
//! Needs root (network namespaces, raw sockets), `ip` and python3. Without them, or if EAL
//! cannot start, the test prints `SKIPPED dpdk_kernel: <reason>` and passes, unless
//! `MSGR_REQUIRE_INTEROP=1`, where that is a failure. EAL initialises once per process, so
//! this file holds exactly one `#[test]`.

// A test driver: it bounds its waits with the real clock.
#![allow(clippy::disallowed_methods)]

#[path = "common/eal.rs"]
mod eal_common;
#[path = "common/netns.rs"]
mod netns;

use std::thread::{self};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use eal_common::{check_same, RuntimeDir};
use netns::{ip, kernel_pattern, preflight, Helper, Lab, MTU, STEP_LIMIT};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Cidr};
use stack::dpdk::{Eal, EthPort, PortConfig, Started};
use stack::dpdkport::stack_pool;
use stack::l2::Neighbors;
use stack::worker::{Clock, Handler, MonotonicClock};
use stack::{ConnId, DpdkPort, IdlePolicy, NetStack, StackConfig, StackEvent, Worker};

/// The kernel server's port (in the namespace) and ours.
const SERVER_PORT: u16 = 7100;
const OUR_PORT: u16 = 7200;
/// Connect phase: we upload this much while the server sends the first half of its
/// download; the second half follows our FIN.
const UPLOAD: usize = 512 << 10;
const DOWNLOAD: usize = 768 << 10;
/// Accept phase: the kernel client sends this much, we echo it.
const ECHO: usize = 1 << 20;
const SEED_UP: u32 = 1;
const SEED_DOWN: u32 = 2;
const SEED_ECHO: u32 = 3;
const POOL_CACHE: u32 = 256;
/// Limits: setup steps and helpers' readiness; the handshakes; a data phase.
const CONNECT_LIMIT: StdDuration = StdDuration::from_secs(10);
const PHASE_LIMIT: StdDuration = StdDuration::from_secs(90);

/// The kernel's side, run as `python3 -c PY <mode> <args>`: `prep IFACE ROLE` (IPv6 and
/// offloads off; for the DPDK end also forwarding off and no ARP answers from the root
/// kernel), `server HOST PORT N_IN SEED_IN N_OUT SEED_OUT`, `client HOST PORT N SEED`.
/// Exits non-zero with the reason on stderr if anything is off. `pattern` must match
/// `kernel_pattern` below.
const PY: &str = r#"
TIMEOUT = 60

def check(what, got, want):
    error = differs(what, got, want)
    if error:
        sys.exit(error)

def in_thread(f):
    errors = []
    def run():
        try:
            f()
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=run)
    t.start()
    return t, errors

def server(host, port, n_in, seed_in, n_out, seed_out):
    want = pattern(int(seed_in), int(n_in))
    out = pattern(int(seed_out), int(n_out))
    half = len(out) // 2
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(1)
    ls.settimeout(TIMEOUT)
    print("READY", flush=True)
    c, peer = ls.accept()
    c.settimeout(TIMEOUT)
    t, errors = in_thread(lambda: c.sendall(out[:half]))
    got = recv_to_eof(c, len(want))
    t.join()
    if errors:
        sys.exit("server send: %s" % errors[0])
    check("server received", got, want)
    c.sendall(out[half:])
    c.shutdown(socket.SHUT_WR)
    c.close()
    print("server: %d bytes from %s:%d checked, %d sent" % (len(got), peer[0], peer[1], len(out)), flush=True)

def client(host, port, n, seed):
    data = pattern(int(seed), int(n))
    c = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    c.settimeout(TIMEOUT)
    def send():
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    t, errors = in_thread(send)
    got = recv_to_eof(c, len(data))
    t.join()
    if errors:
        sys.exit("client send: %s" % errors[0])
    check("client echo", got, data)
    c.close()
    print("client: %d bytes echoed and checked" % len(got), flush=True)

{"prep": prep, "server": server, "client": client}[sys.argv[1]](*sys.argv[2:])
"#;

#[test]
fn dpdk_kernel() {
    let python = match preflight() {
        Ok(p) => p,
        Err(reason) => return skip(&reason),
    };
    let pid = std::process::id();
    // Declared first, so removed last: after EAL cleanup and the runtime directory.
    let lab = match Lab::create(pid, ["t", "msgrd", "msgrn"], 99, python, PY) {
        Ok(lab) => lab,
        Err(e) => return skip(&format!("cannot create a network namespace: {e}")),
    };
    let t = StdInstant::now();
    lab.setup().expect("veth pair and namespace setup");
    eprintln!(
        "namespace {} with {} ({}), veth {} ({}) for DPDK: set up in {:?}",
        lab.ns,
        lab.peer,
        lab.kernel_ip(),
        lab.dev,
        lab.dev_mac().expect("veth MAC"),
        t.elapsed()
    );

    let prefix = format!("stack-kernel-{pid}");
    let mut runtime = RuntimeDir::new(&prefix);
    let args = eal_common::test_args(
        &prefix,
        256,
        1,
        &[format!("net_af_packet0,iface={}", lab.dev)],
    );
    let t = StdInstant::now();
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => return skip(&format!("EAL did not start: {e}; args {args:?}")),
    };
    runtime.dir = Some(eal.runtime_dir());
    eprintln!("EAL with {}: {:?}", args.join(" "), t.elapsed());

    run(&eal, &lab);

    eal.cleanup().expect("rte_eal_cleanup");
    let dir = runtime.dir.clone().expect("runtime dir");
    drop(runtime);
    assert!(!dir.exists(), "{} removed", dir.display());
    lab.remove_and_verify();
}

/// Prints why the test did not run, or fails if interop tests are required.
fn skip(reason: &str) {
    eal_common::skip("dpdk_kernel", reason);
}

/// The test's handler: records the stack's events; the phases act on them.
#[derive(Default)]
struct Recorder {
    events: Vec<StackEvent>,
}

impl<P: stack::Port> Handler<P> for Recorder {
    fn event(&mut self, _stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        self.events.push(ev);
    }
}

type Port<'p, 'a> = DpdkPort<'p, 'a>;
type Node<'p, 'a> = Worker<Port<'p, 'a>, Recorder, MonotonicClock>;

/// Steps the worker until `done` (checked before each step); fails after `limit`.
/// Returns the time it took.
fn run_until(
    w: &mut Node<'_, '_>,
    limit: StdDuration,
    what: &str,
    mut done: impl FnMut(&mut Node<'_, '_>) -> bool,
) -> StdDuration {
    let start = StdInstant::now();
    loop {
        if done(w) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not done within {limit:?}; stack {:?}; events {:?}",
            w.stack.stats(),
            w.handler.events
        );
        w.step();
    }
}

/// Everything between EAL init and cleanup; whatever it made is gone (helpers killed,
/// port stopped and closed, pool freed) before it returns or unwinds.
fn run(eal: &Eal, lab: &Lab) {
    assert_eq!(eal.port_count(), 1, "the af_packet port and nothing else");
    // The PMD copies each received frame into a fresh mbuf and frees each transmitted one
    // at once; what the pool must hold is the stack's: queued for the device, waiting for
    // ARP, a burst in hand, received frames queued in shards.
    let pool = stack_pool(eal, "kernel_test", 0, 0, POOL_CACHE).expect("mempool");
    let base = pool.in_use();

    let port = EthPort::open(eal, 0).expect("open port 0");
    let info = port.dev_info().clone();
    assert_eq!(info.driver, "net_af_packet", "{info:?}");
    let mut port = port.configure(&PortConfig::new(1, 1)).expect("configure");
    port.rx_queue_setup(0, 512, &pool).expect("rx queue");
    port.tx_queue_setup(0, 512).expect("tx queue");
    let port = port.start().expect("start");
    wait_link(&port);

    let mac = EthernetAddress(port.mac_addr().expect("mac"));
    assert_eq!(Ok(mac), lab.dev_mac(), "the port's MAC is the veth's");
    assert_eq!(port.mtu().expect("mtu"), MTU);
    let dp = DpdkPort::new(&port, 0, &pool).expect("queue pair");

    let clock = MonotonicClock::new();
    let mut cfg = StackConfig::new(mac, Ipv4Cidr::new(lab.our_ip(), 24));
    cfg.shards = 4;
    let neighbors = Neighbors::new();
    let stack = NetStack::new(cfg, dp, neighbors.clone(), clock.now());
    let idle = IdlePolicy::Sleep {
        spins: 0,
        max: Duration::from_micros(50),
    };
    let mut w = Worker::new(stack, Recorder::default(), clock, idle);
    eprintln!(
        "port {} ({}), MAC {mac}, MTU {MTU}, {} at {}, pool of {} mbufs",
        port.id(),
        info.driver,
        lab.dev,
        lab.our_ip(),
        pool.size()
    );

    assert!(neighbors.is_empty(), "nothing learned yet");
    connect_to_kernel(&mut w, lab);
    assert!(
        !neighbors.is_empty() && w.stack.stats().arp_requests_sent >= 1,
        "we ARPed for the kernel: {:?}",
        w.stack.stats()
    );

    // The kernel learned our MAC from our ARP request; forget it, so it must ask.
    ip(&["-n", &lab.ns, "neigh", "flush", "dev", &lab.peer]).expect("neigh flush");
    let before = lab.kernel_neighbor();
    assert!(
        !before.contains("lladdr"),
        "kernel neighbour entry flushed: {before}"
    );
    let replies = w.stack.stats().arp_replies_sent;
    accept_from_kernel(&mut w, lab);
    assert!(
        w.stack.stats().arp_replies_sent > replies,
        "the kernel ARPed for us and we answered: {:?}",
        w.stack.stats()
    );
    let entry = lab.kernel_neighbor();
    let colons = mac.0.map(|b| format!("{b:02x}")).join(":");
    assert!(
        entry.contains(&format!("lladdr {colons}")),
        "the kernel's neighbour entry holds our MAC {mac}: {entry:?}"
    );

    // Counters: everything the port got reached the stack, everything the stack sent left
    // the port, nothing oversized (GSO), truncated or malformed came in.
    let ws = w.stats();
    let st = w.stack.stats();
    let ds = w.stack.port().stats();
    let ps = port.stats().expect("port stats");
    eprintln!("worker {ws:?}\nstack {st:?}\nqueue {ds:?}\nport {ps:?}");
    assert_eq!((st.rx_oversize, st.rx_malformed), (0, 0), "{st:?}");
    assert_eq!((st.tx_no_buffer, st.tx_unresolved), (0, 0), "{st:?}");
    assert_eq!((ds.nombuf, ds.too_long, ds.rx_chained), (0, 0, 0), "{ds:?}");
    assert_eq!(ps.oerrors, 0, "{ps:?}");
    assert_eq!(
        st.rx_frames, ps.ipackets,
        "every frame received reached the stack"
    );
    assert_eq!(st.tx_frames, ps.opackets, "every frame sent left the port");
    assert!(ws.sleeps > 0, "the worker napped when idle: {ws:?}");
    assert_eq!(w.stack.connections(), 0);

    drop(w);
    assert_eq!(pool.in_use(), base, "every mbuf went back to the pool");
    let port = port.stop().expect("stop");
    drop(port);
    assert_eq!(eal.port_count(), 0, "port closed");
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

/// We connect to a kernel server: upload and the first half of the download at once, our
/// FIN, then the rest of the download and the server's FIN.
fn connect_to_kernel(w: &mut Node<'_, '_>, lab: &Lab) {
    let host = lab.kernel_ip().to_string();
    let (port, n_up, n_down) = (
        SERVER_PORT.to_string(),
        UPLOAD.to_string(),
        DOWNLOAD.to_string(),
    );
    let (seed_up, seed_down) = (SEED_UP.to_string(), SEED_DOWN.to_string());
    let mut server = Helper::spawn(
        lab,
        "kernel server",
        &["server", &host, &port, &n_up, &seed_up, &n_down, &seed_down],
    );
    server.wait_line("READY", STEP_LIMIT);

    let up = kernel_pattern(SEED_UP, UPLOAD);
    let want = kernel_pattern(SEED_DOWN, DOWNLOAD);
    let remote = IpEndpoint::new(IpAddress::Ipv4(lab.kernel_ip()), SERVER_PORT);
    let c = w.stack.connect(remote).expect("connect");
    let took = run_until(w, CONNECT_LIMIT, "ARP + connect to the kernel", |w| {
        assert!(
            !w.handler.events.contains(&StackEvent::Closed(c)),
            "connection refused or timed out: {}",
            server.output()
        );
        w.handler.events.contains(&StackEvent::Connected(c))
    });
    eprintln!("connect: ARP + handshake with the kernel in {took:?}");

    let (mut sent, mut fin) = (0, false);
    let mut got = Vec::with_capacity(DOWNLOAD);
    let mut buf = vec![0u8; 64 << 10];
    let took = run_until(w, PHASE_LIMIT, "exchange with the kernel server", |w| {
        if sent < up.len() {
            sent += w.stack.send(c, &up[sent..]).expect("send");
        } else if !fin {
            w.stack.close(c).expect("close");
            fin = true;
        }
        let open = read_all(&mut w.stack, c, &mut buf, &mut got);
        assert!(
            got.len() <= want.len(),
            "more than {} bytes from the server",
            want.len()
        );
        if !open {
            // (Its Closed event may still be queued in the stack.)
            assert_eq!(
                got.len(),
                want.len(),
                "the connection ended before the whole download arrived"
            );
        }
        let closed = w.handler.events.contains(&StackEvent::Closed(c));
        closed && server.exited().is_some()
    });
    check_same("download from the kernel", &got, &want);
    server.assert_success();
    let mib = (UPLOAD + DOWNLOAD) as f64 / f64::from(1 << 20);
    eprintln!(
        "connect: {} KiB up + {} KiB down in {took:?} ({:.1} MiB/s together)",
        UPLOAD >> 10,
        DOWNLOAD >> 10,
        mib / took.as_secs_f64()
    );
}

/// A kernel client connects to us, sends 1 MiB and its FIN; we echo it all and close.
fn accept_from_kernel(w: &mut Node<'_, '_>, lab: &Lab) {
    w.stack.listen(OUR_PORT).expect("listen");
    w.handler.events.clear();
    let host = lab.our_ip().to_string();
    let (port, n, seed) = (
        OUR_PORT.to_string(),
        ECHO.to_string(),
        SEED_ECHO.to_string(),
    );
    let start = StdInstant::now();
    let mut client = Helper::spawn(lab, "kernel client", &["client", &host, &port, &n, &seed]);

    let mut conn = None;
    let took = run_until(
        w,
        CONNECT_LIMIT + STEP_LIMIT,
        "accept from the kernel",
        |w| {
            assert!(
                client.exited().is_none(),
                "client ended: {}",
                client.output()
            );
            conn = w.handler.events.iter().find_map(|e| match *e {
                StackEvent::Accepted {
                    conn,
                    local_port,
                    remote,
                } => {
                    assert_eq!(local_port, OUR_PORT);
                    assert_eq!(remote.addr, IpAddress::Ipv4(lab.kernel_ip()));
                    Some(conn)
                }
                _ => None,
            });
            conn.is_some()
        },
    );
    let c = conn.expect("accepted");
    eprintln!("accept: python start + kernel ARP + handshake in {took:?}");

    let want = kernel_pattern(SEED_ECHO, ECHO);
    let mut got = Vec::with_capacity(ECHO);
    let mut echoed = 0;
    let mut fin = false;
    let mut buf = vec![0u8; 64 << 10];
    let took = run_until(w, PHASE_LIMIT, "echo to the kernel client", |w| {
        let open = read_all(&mut w.stack, c, &mut buf, &mut got);
        if echoed < got.len() {
            echoed += w.stack.send(c, &got[echoed..]).expect("echo");
        }
        if open && !fin && echoed == got.len() && w.stack.peer_closed(c) == Ok(true) {
            w.stack.close(c).expect("close");
            fin = true;
        }
        let closed = w.handler.events.contains(&StackEvent::Closed(c));
        if closed {
            assert!(fin, "the connection ended before we closed it");
        }
        closed && client.exited().is_some()
    });
    check_same("upload from the kernel client", &got, &want);
    client.assert_success();
    eprintln!(
        "accept: 1 MiB echoed in {took:?} ({:.1} MiB/s each way); phase total {:?}",
        1.0 / took.as_secs_f64(),
        start.elapsed()
    );
}

/// Reads everything buffered on `c` into `into`; whether the connection still exists.
fn read_all(s: &mut NetStack<Port<'_, '_>>, c: ConnId, buf: &mut [u8], into: &mut Vec<u8>) -> bool {
    loop {
        match s.recv(c, buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(stack::netstack::StackError::NoSuchConnection) => return false,
            Err(stack::netstack::StackError::NotOpen) => return true,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

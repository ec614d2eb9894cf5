//! Workers on their own lcores: two DPDK ring ports cross-linked in one process, an echo
//! server's worker launched on worker lcore 1 (`Eal::scope`), the client's worker on the main
//! lcore; both nap when idle (two pollers share these 2 CPUs). Also the launch API's edges:
//! a busy lcore, a lcore that is not a worker, a panicking function.
// A test driver: it bounds its waits with the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "common/eal.rs"]
mod eal_common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::pattern;
use eal_common::RuntimeDir;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::dpdk::{self, errno, Eal, EthPort, Mempool, PortConfig, RingLink, Started};
use stack::l2::Neighbors;
use stack::worker::{Clock, Handler, TscClock};
use stack::{ConnId, DpdkPort, IdlePolicy, NetStack, StackConfig, StackEvent, Worker};

const PORT: u16 = 6800;
const POOL: u32 = 8191;

#[test]
fn dpdk_lcores() {
    let prefix = format!("stack-lcores-{}", std::process::id());
    let mut runtime = RuntimeDir::new(&prefix);
    let args = eal_common::test_args(&prefix, 512, 2, &[]);
    let eal = match Eal::init(&args) {
        Ok(eal) => eal,
        Err(e) => {
            eal_common::skip(
                "dpdk_lcores",
                &format!("EAL did not start: {e}; args {args:?}"),
            );
            return;
        }
    };
    runtime.dir = Some(eal.runtime_dir());
    assert_eq!(dpdk::worker_lcores(), vec![1]);
    launch_edges(&eal);
    echo_across_lcores(&eal);
    pool_exhaustion(&eal);
    eal.cleanup().expect("rte_eal_cleanup");
}

fn launch_edges(eal: &Eal) {
    let gate = AtomicBool::new(false);
    eal.scope(|s| {
        let e = s
            .launch(0, || 0)
            .expect_err("the main lcore is not a worker");
        assert_eq!(e.errno, errno::EINVAL);
        let e = s.launch(7, || 0).expect_err("no such lcore");
        assert_eq!(e.errno, errno::EINVAL);
        let h = s
            .launch(1, || {
                while !gate.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                41
            })
            .expect("launch");
        let e = s.launch(1, || 0).expect_err("lcore 1 is busy");
        assert_eq!(e.errno, errno::EBUSY);
        gate.store(true, Ordering::Release);
        assert_eq!(h.join(), Ok(41));
        let h = s.launch(1, || panic!("on purpose")).expect("launch");
        assert_eq!(h.join(), Err(dpdk::LcorePanicked { lcore: 1 }));
        // The lcore is usable again after a panic.
        assert_eq!(s.launch(1, || 7).expect("launch").join(), Ok(7));
    });
}

fn start<'a>(port: EthPort<'a, dpdk::Unconfigured>, pool: &'a Mempool<'_>) -> EthPort<'a, Started> {
    let mut p = port.configure(&PortConfig::new(1, 1)).expect("configure");
    p.rx_queue_setup(0, 1024, pool).expect("rx queue");
    p.tx_queue_setup(0, 1024).expect("tx queue");
    p.start().expect("start")
}

fn config(last: u8) -> StackConfig {
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24),
    );
    c.shards = 16;
    c.rx_buffer = 128 * 1024;
    c.tx_buffer = 128 * 1024;
    c
}

/// Echoes every byte back.
struct Echo;

impl<P: stack::Port> Handler<P> for Echo {
    fn event(&mut self, stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        if let StackEvent::Readable(c) | StackEvent::Writable(c) = ev {
            echo(stack, c);
        }
    }
}

fn echo<P: stack::Port>(stack: &mut NetStack<P>, c: ConnId) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Only take what can be sent back at once: the rest waits for `Writable`.
        let room = 128 * 1024 - stack.send_queue(c).unwrap_or(0);
        let want = room.min(buf.len());
        if want == 0 {
            // Input stays queued (the peer's window closes); come back when room opens.
            let _ = stack.notify_writable(c);
            return;
        }
        let n = stack.recv(c, &mut buf[..want]).unwrap_or(0);
        if n == 0 {
            return;
        }
        let sent = stack.send(c, &buf[..n]).unwrap_or(0);
        assert_eq!(sent, n, "room was checked");
    }
}

/// The client's side: what came back.
#[derive(Default)]
struct Collect {
    up: bool,
    got: Vec<u8>,
}

impl<P: stack::Port> Handler<P> for Collect {
    fn event(&mut self, stack: &mut NetStack<P>, ev: StackEvent, _now: Instant) {
        match ev {
            StackEvent::Connected(_) => self.up = true,
            StackEvent::Readable(c) => {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stack.recv(c, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    self.got.extend_from_slice(&buf[..n]);
                }
            }
            _ => {}
        }
    }
}

fn echo_across_lcores(eal: &Eal) {
    let socket = eal.socket_id();
    let room = dpdk::MBUF_DEFAULT_DATA_ROOM;
    let pool_a = Mempool::pktmbuf(eal, "lc_a", POOL, 256, room, socket).expect("pool a");
    let pool_b = Mempool::pktmbuf(eal, "lc_b", POOL, 256, room, socket).expect("pool b");
    let link = RingLink::new(eal, "lc", 1024).expect("ring link");
    let (pa, pb) = link.ports().expect("ports");
    let pa = start(pa, &pool_a);
    let pb = start(pb, &pool_b);
    let clock = TscClock::new(eal.tsc_hz());
    let idle = IdlePolicy::default();
    let stop = AtomicBool::new(false);
    let port_b = DpdkPort::new(&pb, 0, &pool_b).expect("queue pair b");
    let (served, lcore) = eal.scope(|s| {
        // However this closure ends, the server's loop is told to stop (the scope waits).
        let _stop = StopOnDrop(&stop);
        let server = s
            .launch(1, || {
                let mut st = NetStack::new(config(2), port_b, Neighbors::new(), clock.now());
                st.listen(PORT).expect("listen");
                let mut w = Worker::new(st, Echo, clock, idle);
                w.run(&stop);
                // What lcore this ran on, and how much it served.
                (w.stack.stats().rx_frames as i32).max(1)
            })
            .expect("launch the server");
        let port_a = DpdkPort::new(&pa, 0, &pool_a).expect("queue pair a");
        let st = NetStack::new(config(1), port_a, Neighbors::new(), clock.now());
        let mut w = Worker::new(st, Collect::default(), clock, idle);
        let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
        let c = w.stack.connect(to).expect("connect");
        assert!(
            w.run_until(Duration::from_secs(10), |w| w.handler.up),
            "connected across lcores"
        );
        // A stream, then request/response round trips.
        let data = pattern(9, 1 << 20);
        let start = std::time::Instant::now();
        let mut sent = 0;
        assert!(w.run_until(Duration::from_secs(30), |w| {
            if sent < data.len() {
                sent += w.stack.send(c, &data[sent..]).expect("send");
            }
            w.handler.got.len() == data.len()
        }));
        assert!(w.handler.got == data, "1 MiB echoed intact");
        let stream = start.elapsed();
        let start = std::time::Instant::now();
        for i in 0..200 {
            w.handler.got.clear();
            let req = pattern(i, 200);
            assert_eq!(w.stack.send(c, &req).expect("send"), req.len());
            assert!(w.run_until(Duration::from_secs(5), |w| w.handler.got.len() == req.len()));
            assert_eq!(w.handler.got, req, "echo {i}");
        }
        let rtt = start.elapsed() / 200;
        eprintln!("1 MiB echoed in {stream:?}; 200 B round trip {rtt:?} on average (idle: nap)");
        w.stack.close(c).expect("close");
        w.run_until(Duration::from_millis(200), |_| false);
        stop.store(true, Ordering::Release);
        (server.join(), w.stack.stats())
    });
    let frames = served.expect("the server's lcore did not panic");
    assert!(
        frames > 700,
        "the server received the traffic: {frames} frames"
    );
    eprintln!("server lcore received {frames} frames; client {lcore:?}");
}

/// A sender whose pool is far too small for its window: transmit buffers run out again and
/// again (counted, the frames lost as on a wire), retransmission gets everything through,
/// and every mbuf comes back.
fn pool_exhaustion(eal: &Eal) {
    let socket = eal.socket_id();
    let room = dpdk::MBUF_DEFAULT_DATA_ROOM;
    let tiny = Mempool::pktmbuf(eal, "ex_a", 31, 0, room, socket).expect("tiny pool");
    let pool_b = Mempool::pktmbuf(eal, "ex_b", POOL, 256, room, socket).expect("pool b");
    let base = (tiny.in_use(), pool_b.in_use());
    let link = RingLink::new(eal, "ex", 1024).expect("ring link");
    let (pa, pb) = link.ports().expect("ports");
    let pa = start(pa, &tiny);
    let pb = start(pb, &pool_b);
    let clock = TscClock::new(eal.tsc_hz());
    let mut a = NetStack::new(
        config(1),
        DpdkPort::new(&pa, 0, &tiny).expect("queue pair a"),
        Neighbors::new(),
        clock.now(),
    );
    let mut b = NetStack::new(
        config(2),
        DpdkPort::new(&pb, 0, &pool_b).expect("queue pair b"),
        Neighbors::new(),
        clock.now(),
    );
    b.listen(PORT).expect("listen");
    let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
    let ca = a.connect(to).expect("connect");
    let data = pattern(5, 256 * 1024);
    let (mut sent, mut got, mut cb) = (0, Vec::new(), None);
    let mut buf = vec![0u8; 64 * 1024];
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while got.len() < data.len() {
        assert!(
            std::time::Instant::now() < end,
            "transfer stalled at {} of {} bytes; {:?}",
            got.len(),
            data.len(),
            a.stats()
        );
        let now = clock.now();
        a.poll(now);
        b.poll(now);
        while let Some(e) = b.next_event() {
            if let StackEvent::Accepted { conn, .. } = e {
                cb = Some(conn);
            }
        }
        while a.next_event().is_some() {}
        if a.tcp_state(ca) == Ok(smoltcp::socket::tcp::State::Established) && sent < data.len() {
            sent += a.send(ca, &data[sent..]).expect("send");
        }
        if let Some(cb) = cb {
            while let Ok(n) = b.recv(cb, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert!(got == data, "256 KiB intact through an exhausted pool");
    let st = a.stats();
    eprintln!("pool of 31: {st:?}, port {:?}", a.port().stats());
    assert!(
        st.tx_no_buffer > 0 || a.port().stats().nombuf > 0,
        "the pool did run dry"
    );
    // Quiesce: nothing left inside the link (mbufs in its rings would never come back).
    for _ in 0..1000 {
        let now = clock.now();
        a.poll(now);
        b.poll(now);
        if link.in_flight() == (0, 0) && !a.poll(now) && !b.poll(now) {
            break;
        }
    }
    drop((a, b));
    assert_eq!(
        (tiny.in_use(), pool_b.in_use()),
        base,
        "every mbuf came back"
    );
}

/// Sets the flag when dropped, unwinding included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

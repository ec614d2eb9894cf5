//! Two workers on two threads over the in-memory link, in real time: an echo server and a
//! client, under each idle policy. The point is the idle policy on these shared 2-core
//! machines: the work gets done, and an idle worker does not burn its core.

// A test driver: it bounds its waits with the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::pattern;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::l2::Neighbors;
use stack::memlink::{LinkConfig, MemLink, MemPort};
use stack::worker::{Handler, MonotonicClock};
use stack::{ConnId, IdlePolicy, NetStack, StackConfig, StackEvent, Worker};

const PORT: u16 = 6800;

fn stack_on(port: MemPort, last: u8, clock: &MonotonicClock) -> NetStack<MemPort> {
    use stack::worker::Clock;
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24),
    );
    c.shards = 16;
    c.rx_buffer = 64 * 1024;
    c.tx_buffer = 64 * 1024;
    NetStack::new(c, port, Neighbors::new(), clock.now())
}

/// Echoes everything back on every connection.
struct Echo;

impl Handler<MemPort> for Echo {
    fn event(
        &mut self,
        stack: &mut NetStack<MemPort>,
        ev: StackEvent,
        _now: smoltcp::time::Instant,
    ) {
        if let StackEvent::Readable(c) = ev {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = stack.recv(c, &mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                // The client sends one request at a time, smaller than the send buffer.
                let sent = stack.send(c, &buf[..n]).unwrap_or(0);
                assert_eq!(sent, n, "echo fits the send buffer");
            }
        }
    }
}

/// The client: records events; the test thread drives requests.
#[derive(Default)]
struct Client {
    conn: Option<ConnId>,
    got: Vec<u8>,
}

impl Handler<MemPort> for Client {
    fn event(
        &mut self,
        stack: &mut NetStack<MemPort>,
        ev: StackEvent,
        _now: smoltcp::time::Instant,
    ) {
        match ev {
            StackEvent::Connected(c) => self.conn = Some(c),
            StackEvent::Readable(c) => {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = stack.recv(c, &mut buf).unwrap_or(0);
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

/// Runs `round_trips` echoes of `size` bytes under `policy`; returns the server worker's
/// stats after it sat idle for 200 ms at the end.
fn echo_run(policy: IdlePolicy, round_trips: usize, size: usize) -> stack::worker::WorkerStats {
    let link = MemLink::new(LinkConfig {
        delay: Duration::ZERO,
        ..LinkConfig::default()
    });
    let (pa, pb) = link.ports();
    let clock = MonotonicClock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        let mut st = stack_on(pb, 2, &clock);
        st.listen(PORT).unwrap();
        let link = link.clone();
        std::thread::spawn(move || {
            use stack::worker::Clock;
            let mut w = Worker::new(st, Echo, clock, policy);
            while !stop.load(Ordering::Relaxed) {
                link.set_now(clock.now());
                w.step();
            }
            // Idle for a while: count what that costs.
            let before = w.stats();
            let end = std::time::Instant::now() + std::time::Duration::from_millis(200);
            while std::time::Instant::now() < end {
                link.set_now(clock.now());
                w.step();
            }
            let after = w.stats();
            assert!(
                before.busy_us > 0,
                "the echoes kept the server busy for some time: {before:?}"
            );
            stack::worker::WorkerStats {
                turns: after.turns - before.turns,
                busy_turns: after.busy_turns - before.busy_turns,
                busy_us: after.busy_us - before.busy_us,
                yields: after.yields - before.yields,
                sleeps: after.sleeps - before.sleeps,
                ..after
            }
        })
    };
    let st = stack_on(pa, 1, &clock);
    let mut w = Worker::new(st, Client::default(), clock, policy);
    let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
    let c = w.stack.connect(to).unwrap();
    let ok = w.run_until(Duration::from_secs(10), |w| {
        link.set_now(w.now());
        w.handler.conn == Some(c)
    });
    assert!(ok, "connected");
    for i in 0..round_trips {
        let req = pattern(i as u64, size);
        w.handler.got.clear();
        assert_eq!(w.stack.send(c, &req).unwrap(), size);
        let ok = w.run_until(Duration::from_secs(10), |w| {
            link.set_now(w.now());
            w.handler.got.len() == size
        });
        assert!(ok, "echo {i} came back");
        assert_eq!(w.handler.got, req, "echo {i} intact");
    }
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server thread")
}

#[test]
fn echo_under_every_idle_policy() {
    for policy in [
        IdlePolicy::default(),
        IdlePolicy::Yield { spins: 50 },
        IdlePolicy::BusyPoll,
    ] {
        let idle = echo_run(policy, 300, 1000);
        eprintln!("{policy:?}: idle 200 ms -> {idle:?}");
        assert!(
            idle.busy_turns < 10 && idle.busy_us < 20_000,
            "{policy:?}: next to nothing to do while idle: {idle:?}"
        );
        if let IdlePolicy::Sleep { .. } = policy {
            // Naps of <= 50 us: at most ~4,000 turns in 200 ms, far below a spinning core.
            assert!(
                idle.sleeps > 0 && idle.turns < 20_000,
                "{policy:?}: {idle:?}"
            );
        }
    }
}

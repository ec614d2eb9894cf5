//! The in-memory switch (`memlink::Switch`) in real time, through its ports: delayed frames
//! are not handed over before their delay and keep their order under jitter; two stacks
//! keep a TCP stream intact across a switch that delays, jitters and loses frames, and
//! across a short cut of one port.
//!
//! The switch's logic is unit-tested with instants of its own (`memlink::tests`); these
//! tests check the real clock at its edge. Only lower bounds on time are asserted (a frame
//! cannot arrive before its delay, whatever the scheduler does); waits are bounded and
//! generous, for shared 2-core machines.

// A test driver: it runs the stacks on the real clock and bounds its waits with it.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::pattern;
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::l2::Neighbors;
use stack::memlink::{Switch, SwitchPort};
use stack::worker::{Clock, MonotonicClock};
use stack::{ConnId, NetStack, Port, StackConfig, StackEvent};

const PORT: u16 = 6800;
const MS: Duration = Duration::from_millis(1);

/// A broadcast frame carrying `n`.
fn frame(n: u32) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&n.to_be_bytes());
    f
}

#[test]
fn frames_wait_their_delay_and_keep_their_order() {
    let sw = Switch::new(4096);
    let (mut a, mut b) = (sw.port(), sw.port());
    let delay = 20 * MS;
    sw.set_delay(delay);
    sw.set_jitter(10 * MS, 9);
    // Bursts of 10 frames, 1 ms apart: each with its send time (taken before the send, so
    // "arrived >= sent + delay" holds whatever the scheduler does).
    let mut sent_at = Vec::new();
    for burst in 0..20u32 {
        let mut q: VecDeque<Vec<u8>> = (burst * 10..burst * 10 + 10).map(frame).collect();
        let t = Instant::now();
        assert_eq!(a.tx_burst(&mut q), 10);
        sent_at.extend(std::iter::repeat_n(t, 10));
        std::thread::sleep(MS);
    }
    let mut got = Vec::new();
    let mut out = Vec::new();
    let t0 = Instant::now();
    while got.len() < 200 {
        assert!(t0.elapsed() < Duration::from_secs(10), "got {}", got.len());
        b.rx_burst(&mut out, 32);
        let now = Instant::now();
        for f in out.drain(..) {
            let n = u32::from_be_bytes([f[14], f[15], f[16], f[17]]);
            assert!(
                now >= sent_at[n as usize] + delay,
                "frame {n} after {:?}",
                now - sent_at[n as usize]
            );
            got.push(n);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "in send order");
    let st = sw.stats();
    assert_eq!((st.sent, st.delivered, st.delayed), (200, 200, 200));
    assert!(
        a.rx_burst(&mut out, 32) == 0,
        "nothing comes back to the sender"
    );
}

/// Two stacks on two ports of one switch, polled in turn on the real clock.
struct Pair {
    sw: Switch,
    a: NetStack<SwitchPort>,
    b: NetStack<SwitchPort>,
    clock: MonotonicClock,
}

fn stack_on(port: SwitchPort, last: u8, clock: &MonotonicClock) -> NetStack<SwitchPort> {
    let mut c = StackConfig::new(
        EthernetAddress([0x02, 0, 0, 0, 0, last]),
        Ipv4Cidr::new(Ipv4Address::new(10, 0, 0, last), 24),
    );
    c.shards = 4;
    c.seed ^= u64::from(last);
    NetStack::new(c, port, Neighbors::new(), clock.now())
}

impl Pair {
    fn new() -> Self {
        let sw = Switch::new(1 << 14);
        let clock = MonotonicClock::new();
        let a = stack_on(sw.port(), 1, &clock);
        let b = stack_on(sw.port(), 2, &clock);
        Self { sw, a, b, clock }
    }

    /// Polls both stacks until `done` (given each one's events), failing after `limit`.
    fn run_until(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&mut Self, &[StackEvent], &[StackEvent]) -> bool,
    ) {
        let t0 = Instant::now();
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        loop {
            let now = self.clock.now();
            let busy = self.a.poll(now) | self.b.poll(now);
            ea.extend(std::iter::from_fn(|| self.a.next_event()));
            eb.extend(std::iter::from_fn(|| self.b.next_event()));
            if done(self, &ea, &eb) {
                return;
            }
            ea.clear();
            eb.clear();
            assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
            if !busy {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Connects A to B; returns (A's id, B's id) and how long it took.
    fn connect(&mut self) -> (ConnId, ConnId, Duration) {
        self.b.listen(PORT).unwrap();
        let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), PORT);
        let t0 = Instant::now();
        let ca = self.a.connect(to).unwrap();
        let (mut up, mut acc) = (false, None);
        self.run_until("connect", Duration::from_secs(20), |_, ea, eb| {
            up |= ea.contains(&StackEvent::Connected(ca));
            acc = acc.or(eb.iter().find_map(|e| match e {
                StackEvent::Accepted { conn, .. } => Some(*conn),
                _ => None,
            }));
            up && acc.is_some()
        });
        (ca, acc.unwrap(), t0.elapsed())
    }

    /// Sends `data` from A to B; `each` sees the switch and the bytes arrived so far on
    /// every turn (to inject faults as the transfer goes).
    fn transfer(
        &mut self,
        ca: ConnId,
        cb: ConnId,
        data: &[u8],
        mut each: impl FnMut(&Switch, usize),
    ) {
        let (mut sent, mut got) = (0, Vec::with_capacity(data.len()));
        let mut buf = vec![0u8; 64 * 1024];
        self.run_until("transfer", Duration::from_secs(60), |p, _, _| {
            if sent < data.len() {
                sent += p.a.send(ca, &data[sent..]).unwrap();
            }
            loop {
                let n = p.b.recv(cb, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            each(&p.sw, got.len());
            got.len() == data.len()
        });
        assert!(got == data, "bytes arrive intact and in order");
    }
}

#[test]
fn tcp_crosses_a_delayed_jittery_lossy_switch() {
    let mut p = Pair::new();
    let delay = 3 * MS;
    p.sw.set_delay(delay);
    p.sw.set_jitter(2 * MS, 5);
    p.sw.set_loss(20_000, 11); // 2%
    let (ca, cb, took) = p.connect();
    // ARP request and reply, SYN and SYN-ACK: four crossings at least.
    assert!(took >= 4 * delay, "connected in {took:?}");
    let t0 = Instant::now();
    p.transfer(ca, cb, &pattern(3, 1 << 20), |_, _| {});
    let st = p.sw.stats();
    eprintln!(
        "connect {took:?}, 1 MiB in {:?} over {delay:?} + jitter, 2% loss: {st:?}",
        t0.elapsed()
    );
    assert!(st.dropped > 10, "the switch lost frames: {st:?}");
    assert!(st.delayed > 100, "and delayed them: {st:?}");
    assert_eq!(st.overflow, 0);
}

#[test]
fn tcp_survives_a_short_cut() {
    let mut p = Pair::new();
    p.sw.set_delay(MS);
    let (ca, cb, _) = p.connect();
    let data = pattern(4, 4 << 20);
    // B's link is cut for 300 ms once half the data is across; both stacks keep running
    // (retransmitting into the cut) and recover by themselves.
    let mut cut: Option<(Instant, u64)> = None;
    let mut lost = None;
    p.transfer(ca, cb, &data, |sw, got| match (cut, lost) {
        (None, _) if got >= data.len() / 2 => {
            cut = Some((Instant::now(), sw.stats().dropped));
            sw.set_down(1, true);
        }
        (Some((t, before)), None) if t.elapsed() >= 300 * MS => {
            lost = Some(sw.stats().dropped - before);
            sw.set_down(1, false);
        }
        _ => {}
    });
    let st = p.sw.stats();
    let lost = lost.expect("the cut ended before the transfer did");
    eprintln!("4 MiB across a 300 ms cut: {lost} frames lost to it, {st:?}");
    assert!(lost > 0, "the cut hit frames: {st:?}");
}

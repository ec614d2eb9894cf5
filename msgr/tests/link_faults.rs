//! Faults on the link, not on the socket: two messengers on the dpdk transport (the
//! userspace TCP/IP stack) joined by an in-memory switch of their own, lossless sessions
//! both ways, and a switch that drops, delays or cuts frames while thousands of sequenced
//! messages cross it. Every receiver checks that each stream arrives exactly once and in
//! order, every byte intact (`mtest`'s stamped messages and recorder).
//!
//! What recovers what:
//! - random loss, delay and jitter, and a short cut: TCP retransmits; the sessions never
//!   notice (no fault, no reconnect — asserted);
//! - a long cut: the sessions' idle timeout fires during the cut, they fault and redial
//!   (into the cut: the SYN is lost until the link is back), and the lossless session
//!   resumes on a new TCP connection, replaying what the peer had not acknowledged (the
//!   idle timeout, the redial and the new connection are asserted).
//!
//! Under 3% loss both ways the stack recovers each lost frame by a retransmission timeout
//! and resends the window after it (smoltcp 0.12 counts a duplicate ACK only when it
//! carries no data, and traffic here goes both ways): ~40 ms per lost frame, which sets
//! the volume of `random_loss`.
//!
//! Each test has its own switch (and its own 10.67.x.0/24), so its faults touch no other
//! test. Waits are bounded and generous (shared 2-core machines); correctness assertions
//! are exact.
// A test driver: it reads the clock to bound its waits and time the cut (clippy.toml bans
// `Instant::now` for the sans-IO core only).
#![allow(clippy::disallowed_methods)]

mod mtest;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use msgr::entity::EntityType;
use msgr::messenger::{Backend, TransportKind, UserspaceConfig};
use msgr::proto::{Options, Policy};
use mtest::*;
use stack::memlink::Switch;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
/// Messages per direction.
const N: u64 = 2000;

/// Two lossless messengers (OSDs: symmetric daemons) on a switch of their own.
struct Link {
    sw: Switch,
    a: Node,
    b: Node,
    /// A's switch port (the one a cut takes down).
    port_a: usize,
}

impl Link {
    /// Addresses 10.67.`net`.1 and .2; `opts` tunes both messengers.
    fn new(net: u8, policy: &Policy, opts: impl Fn(&mut Options) + Clone) -> Self {
        let sw = Switch::new(1 << 16);
        let node = |num: i64| {
            let port = sw.port();
            let index = port.index();
            let ip = Ipv4Addr::new(10, 67, net, num as u8);
            let n = NodeBuilder::new(TransportKind::Dpdk, EntityType::OSD, num)
                .policy(policy.clone())
                .options(opts.clone())
                .userspace(UserspaceConfig::new(Backend::Switch(port), ip, 24))
                .start();
            (n, index)
        };
        let (a, port_a) = node(1);
        let (b, _) = node(2);
        Self { sw, a, b, port_a }
    }

    /// Opens the session (one message each way) and returns the two streams on it.
    fn open(&self) -> Traffic {
        let ab = self.a.connect(&self.b);
        let mut up = Stream::new(ab);
        assert!(up.send(1));
        wait_for("the session opens", 10 * S, || self.b.rec.got(up.id) == 1);
        let ba = self.b.m.connect_to(self.a.addr, EntityType::OSD);
        assert_eq!(
            Some(ba.id()),
            self.b.rec.accepted().first().copied(),
            "connect_to finds the accepted session"
        );
        let mut down = Stream::new(ba);
        assert!(down.send(1));
        wait_for("the way back works", 10 * S, || {
            self.a.rec.got(down.id) == 1
        });
        Traffic {
            up,
            down,
            rng: Rng::new(0x11f7),
        }
    }

    /// A counter of both messengers, summed.
    fn perf(&self, path: &str) -> u64 {
        self.a.perf(path) + self.b.perf(path)
    }

    /// Session-level events so far: (faults other than peers leaving, dials, reconnects).
    fn session_figures(&self) -> String {
        format!(
            "faults {} (idle timeouts {}), dials {}, reconnects {}, accepts {}, replaced {}, \
             resets of half-accepted connections {}",
            self.perf("faults_total"),
            self.perf("faults.idle_timeout"),
            self.perf("dials"),
            self.perf("reconnects"),
            self.perf("accepts"),
            self.perf("replaced"),
            self.a.rec.count(|e| matches!(e, Ev::Reset(_)))
                + self.b.rec.count(|e| matches!(e, Ev::Reset(_))),
        )
    }

    /// Waits until both streams are complete, then checks that each arrived exactly once,
    /// in order, intact, and that no session was reset.
    fn finish(&self, t: &Traffic) {
        // Complete, or visibly broken: a message arrived after a gap (lost ones would keep
        // the wait going until its limit; `exactly` below says what went wrong).
        let done = |log: &StreamLog| {
            let n = log.seqs.len() as u64;
            n == N || log.seqs.last().is_some_and(|&last| last + 1 != n)
        };
        wait_for_detail(
            "every message both ways",
            40 * S,
            || done(&self.b.rec.stream(t.up.id)) && done(&self.a.rec.stream(t.down.id)),
            || {
                format!(
                    "a→b {} b→a {} of {N}; {}; switch {:?}\na: {}\nb: {}",
                    self.b.rec.got(t.up.id),
                    self.a.rec.got(t.down.id),
                    self.session_figures(),
                    self.sw.stats(),
                    self.a.describe(),
                    self.b.describe()
                )
            },
        );
        let up = self.b.rec.stream(t.up.id);
        let down = self.a.rec.stream(t.down.id);
        up.exactly(N).unwrap();
        down.exactly(N).unwrap();
        // One session object per side carried its stream throughout (the session outlives
        // its TCP connections).
        let (sa, sb) = (t.up.conn.id(), t.down.conn.id());
        assert!(up.conns.iter().all(|&c| c == sb), "b: {:?}", up.conns);
        assert!(down.conns.iter().all(|&c| c == sa), "a: {:?}", down.conns);
        for (n, session) in [(&self.a, sa), (&self.b, sb)] {
            n.rec.assert_clean();
            // Ceph resets a connection that faults half-accepted with nothing to send (the
            // losing side of a race after a cut); the session itself is never reset.
            let resets = n
                .rec
                .count(|e| *e == Ev::Reset(session) || matches!(e, Ev::RemoteReset(_)));
            assert_eq!(
                resets,
                0,
                "{}: the session was reset: {:?}",
                n.rec.name,
                n.rec.log()
            );
        }
    }

    /// Asserts that TCP alone recovered: no session faulted or redialed.
    #[track_caller]
    fn assert_no_session_fault(&self) {
        assert_eq!(
            (self.perf("faults_total"), self.perf("reconnects")),
            (0, 0),
            "{}",
            self.session_figures()
        );
    }

    fn shutdown(self) {
        shutdown_all(&[&self.a, &self.b]);
    }
}

/// The two streams of a session and the sizes they send.
struct Traffic {
    up: Stream,
    down: Stream,
    rng: Rng,
}

impl Traffic {
    /// Sends `k` more messages each way (without waiting for them), stopping at `N`.
    fn send(&mut self, k: u64) {
        for _ in 0..k {
            for s in [&mut self.up, &mut self.down] {
                if s.next < N {
                    // Mostly small, now and then 32 KiB (a message over many segments).
                    let len = if self.rng.percent(1) {
                        32 << 10
                    } else {
                        self.rng.below(2048) as usize
                    };
                    assert!(s.send(len), "the session is closed");
                }
            }
        }
    }
}

/// Frames lost at random, 3% of all, both ways: TCP retransmits, the sessions see nothing.
#[test]
fn random_loss() {
    let _g = begin("random_loss", 60 * S);
    let link = Link::new(1, &Policy::lossless_peer(0), |_| {});
    let mut t = link.open();
    link.sw.set_loss(30_000, 0x1055);
    let t0 = Instant::now();
    t.send(N);
    link.finish(&t);
    let st = link.sw.stats();
    eprintln!(
        "random_loss: {N} messages each way in {:?}; switch {st:?}; {}",
        t0.elapsed(),
        link.session_figures()
    );
    assert!(st.dropped >= 100, "the switch lost frames: {st:?}");
    link.assert_no_session_fault();
    link.shutdown();
}

/// Every frame delayed by 3 ms plus up to 2 ms of jitter: slower, nothing else.
#[test]
fn delay_and_jitter() {
    let _g = begin("delay_and_jitter", 60 * S);
    let link = Link::new(2, &Policy::lossless_peer(0), |_| {});
    let mut t = link.open();
    let delay = 3 * MS;
    link.sw.set_delay(delay);
    link.sw.set_jitter(2 * MS, 0xde1a);
    // One message alone first: it cannot arrive sooner than the delay.
    let t0 = Instant::now();
    t.send(1);
    wait_for("the first delayed message", 10 * S, || {
        link.b.rec.got(t.up.id) == 2
    });
    let one_way = t0.elapsed();
    assert!(one_way >= delay, "a message crossed in {one_way:?}");
    let t0 = Instant::now();
    t.send(N);
    link.finish(&t);
    let st = link.sw.stats();
    eprintln!(
        "delay_and_jitter: one message in {one_way:?}; {N} each way in {:?}; switch {st:?}; {}",
        t0.elapsed(),
        link.session_figures()
    );
    assert!(st.delayed >= 1000, "the switch delayed frames: {st:?}");
    link.assert_no_session_fault();
    link.shutdown();
}

/// A cut of A's link, in progress.
struct Cut {
    t0: Instant,
    dropped_before: u64,
}

impl Cut {
    /// Once a quarter of the messages have crossed both ways (half are sent: the rest are
    /// in flight or queued), cuts A's link, sends another quarter into the cut, and waits
    /// until the cut has lost frames.
    fn start(link: &Link, t: &mut Traffic) -> Self {
        wait_for("a quarter of the messages", 20 * S, || {
            link.b.rec.got(t.up.id) as u64 >= N / 4 && link.a.rec.got(t.down.id) as u64 >= N / 4
        });
        let dropped_before = link.sw.stats().dropped;
        link.sw.set_down(link.port_a, true);
        let t0 = Instant::now();
        t.send(N / 4);
        wait_for("frames lost to the cut", 10 * S, || {
            link.sw.stats().dropped > dropped_before
        });
        Self { t0, dropped_before }
    }

    /// Ends the cut once it has lasted `at_least`; returns the frames it lost.
    fn end(self, link: &Link, at_least: Duration) -> u64 {
        if let Some(rest) = at_least.checked_sub(self.t0.elapsed()) {
            std::thread::sleep(rest);
        }
        let lost = link.sw.stats().dropped - self.dropped_before;
        link.sw.set_down(link.port_a, false);
        eprintln!("cut of {:?}: {lost} frames lost", self.t0.elapsed());
        lost
    }
}

/// A's link cut for 300 ms in mid-stream: TCP's retransmissions get through once it is
/// back; the sessions never fault (their idle timeout is Ceph's 15 minutes).
#[test]
fn short_cut() {
    let _g = begin("short_cut", 60 * S);
    let link = Link::new(3, &Policy::lossless_peer_reuse(0), |_| {});
    let mut t = link.open();
    let t0 = Instant::now();
    t.send(N / 2);
    Cut::start(&link, &mut t).end(&link, 300 * MS);
    t.send(N);
    link.finish(&t);
    eprintln!(
        "short_cut: {N} each way in {:?}; switch {:?}; {}",
        t0.elapsed(),
        link.sw.stats(),
        link.session_figures()
    );
    link.assert_no_session_fault();
    link.shutdown();
}

/// A's link cut until the sessions give up on it (idle timeout 1 s, both sides) and one
/// of them redials into the cut, then 300 ms more (the redial's SYN is lost, not just
/// late). When the link is back, the session resumes on a new connection and replays what
/// the peer missed: nothing lost, nothing twice.
///
/// This found a bug in the engine: a session whose peer fell silent in the middle of a
/// frame never idled out (the partial frame, offered again on every pass, counted as
/// traffic; `proto::connection`'s `a_partial_frame_offered_again_is_not_activity`).
fn long_cut(net: u8, name: &str, policy: &Policy) {
    let link = Link::new(net, policy, |o| {
        o.idle_timeout = S;
        o.initial_backoff = 20 * MS;
        o.max_backoff = 200 * MS;
    });
    let mut t = link.open();
    let t0 = Instant::now();
    t.send(N / 2);
    let cut = Cut::start(&link, &mut t);
    wait_for_detail(
        "an idle timeout and a redial during the cut",
        20 * S,
        || link.perf("faults.idle_timeout") >= 1 && link.perf("dials") >= 2,
        || link.session_figures(),
    );
    let at_cut_end = link.session_figures();
    std::thread::sleep(300 * MS);
    cut.end(&link, Duration::ZERO);
    t.send(N);
    link.finish(&t);
    eprintln!(
        "long_cut ({name}):\n  {N} each way in {:?}; switch {:?}\n  at the cut's end: \
         {at_cut_end}\n  at the end: {}",
        t0.elapsed(),
        link.sw.stats(),
        link.session_figures()
    );
    assert!(
        link.perf("accepts") >= 2,
        "the session resumed on a new connection: {}",
        link.session_figures()
    );
    link.shutdown();
}

#[test]
fn long_cut_lossless_peer() {
    let _g = begin("long_cut_lossless_peer", 60 * S);
    long_cut(4, "lossless_peer", &Policy::lossless_peer(0));
}

#[test]
fn long_cut_lossless_peer_reuse() {
    let _g = begin("long_cut_lossless_peer_reuse", 60 * S);
    long_cut(5, "lossless_peer_reuse", &Policy::lossless_peer_reuse(0));
}

//! In-memory networks for tests without DPDK.
//!
//! - [`MemLink`]: an Ethernet link between two [`Port`]s in simulated time: frames cross it
//!   with configurable delay, loss and reordering, all driven by a seed and by the time the
//!   test sets, so every run is the same run.
//! - [`Switch`]: a learning Ethernet switch between any number of ports in real time, for
//!   stacks on threads (the messenger's in-process tests), with seeded loss, delay and
//!   jitter, and per-port link cuts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration as RealDuration, Instant as RealInstant};

use smoltcp::time::{Duration, Instant};

use crate::checksum::{self, RxChecksum, RxState, TxChecksum};
use crate::l2::ETH_HLEN;
use crate::port::Port;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    AtoB,
    BtoA,
}

/// Decides, per frame, whether the link drops it (`true`): for targeted losses.
pub type DropFilter = Box<dyn FnMut(Dir, &[u8]) -> bool + Send>;

/// Link behaviour.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Frames lost at random, per million.
    pub loss_ppm: u32,
    /// Frames delayed by an extra `reorder_delay` at random (so later ones overtake), per
    /// million.
    pub reorder_ppm: u32,
    pub reorder_delay: Duration,
    /// Frames a direction holds before it drops (a full ring).
    pub capacity: usize,
    /// Frames with one bit flipped at random, per million (after any offloaded checksum
    /// was filled in: damage on the wire).
    pub corrupt_ppm: u32,
    /// Both ends act like a NIC with checksum offloads: they fill in the IPv4 and TCP
    /// checksums of frames marked for it (from the pseudo-header sum the stack leaves, as
    /// hardware does) and report each received frame's checksums as good or bad. Read
    /// when the ends are taken ([`MemLink::ports`]).
    pub checksum_offload: bool,
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_micros(10),
            loss_ppm: 0,
            reorder_ppm: 0,
            reorder_delay: Duration::from_micros(200),
            capacity: 4096,
            corrupt_ppm: 0,
            checksum_offload: false,
            seed: 1,
        }
    }
}

/// Per-direction counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub overflow: u64,
    /// Frames with a bit flipped on the way.
    pub corrupted: u64,
}

struct Inner {
    cfg: LinkConfig,
    now: Instant,
    rng: u64,
    /// Frames in flight, per direction: (deliver at, frame).
    flight: [Vec<(Instant, u64, Vec<u8>)>; 2],
    seq: u64,
    stats: [DirStats; 2],
    filter: Option<DropFilter>,
}

impl Inner {
    fn rand(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rand() % 1_000_000 < ppm
    }
}

/// The link: create it, take its two ends, move time with [`MemLink::set_now`].
#[derive(Clone)]
pub struct MemLink(Arc<Mutex<Inner>>);

impl MemLink {
    pub fn new(cfg: LinkConfig) -> Self {
        let seed = cfg.seed.max(1);
        Self(Arc::new(Mutex::new(Inner {
            cfg,
            now: Instant::ZERO,
            rng: seed,
            flight: [Vec::new(), Vec::new()],
            seq: 0,
            stats: [DirStats::default(); 2],
            filter: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The two ends: `a` sends `AtoB`, `b` sends `BtoA`.
    pub fn ports(&self) -> (MemPort, MemPort) {
        let offload = self.lock().cfg.checksum_offload;
        (
            MemPort {
                link: self.clone(),
                dir: Dir::AtoB,
                queue: None,
                offload,
            },
            MemPort {
                link: self.clone(),
                dir: Dir::BtoA,
                queue: None,
                offload,
            },
        )
    }

    /// End `a`, and end `b` as a device with `n` queues that spreads received frames by a
    /// hash of their addresses and ports which is *not* the stack's Toeplitz (as a kernel's
    /// af_packet fanout or a NIC without RSS configured would): the stack cannot predict
    /// the queue of a flow. Frames other than TCP/IPv4 go to queue 0.
    pub fn multi_queue(&self, n: usize) -> (MemPort, Vec<MemPort>) {
        let n = n.max(1);
        let offload = self.lock().cfg.checksum_offload;
        let a = MemPort {
            link: self.clone(),
            dir: Dir::AtoB,
            queue: None,
            offload,
        };
        let bs = (0..n)
            .map(|i| MemPort {
                link: self.clone(),
                dir: Dir::BtoA,
                queue: Some((i, n)),
                offload,
            })
            .collect();
        (a, bs)
    }

    pub fn set_now(&self, now: Instant) {
        self.lock().now = now;
    }

    pub fn set_config(&self, cfg: LinkConfig) {
        self.lock().cfg = cfg;
    }

    pub fn set_filter(&self, f: Option<DropFilter>) {
        self.lock().filter = f;
    }

    pub fn stats(&self, dir: Dir) -> DirStats {
        self.lock().stats[dir as usize]
    }

    /// Puts a frame on the wire as if the `dir` sender had sent it (hostile or hand-made
    /// traffic), delivered after the usual delay; no loss applies.
    pub fn inject(&self, dir: Dir, frame: Vec<u8>) {
        let mut g = self.lock();
        let at = g.now + g.cfg.delay;
        g.seq += 1;
        let seq = g.seq;
        g.flight[dir as usize].push((at, seq, frame));
    }

    /// When the next frame in flight becomes deliverable.
    pub fn next_delivery(&self) -> Option<Instant> {
        let g = self.lock();
        g.flight.iter().flatten().map(|(t, _, _)| *t).min()
    }
}

/// One end of a [`MemLink`] (or one queue of it, see [`MemLink::multi_queue`]).
pub struct MemPort {
    link: MemLink,
    dir: Dir,
    /// (this queue, queues): receive only the frames the fanout gives this queue.
    queue: Option<(usize, usize)>,
    /// Acts as a device with checksum offloads (`LinkConfig::checksum_offload`).
    offload: bool,
}

/// The fanout of [`MemLink::multi_queue`]: FNV-1a over the IPv4 addresses and TCP ports.
fn fanout(frame: &[u8], n: usize) -> usize {
    const ETH: usize = 14;
    if n <= 1 || frame.len() < ETH + 24 || frame[12..14] != [0x08, 0x00] || frame[ETH + 9] != 6 {
        return 0;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    if frame.len() < ETH + ihl + 4 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in frame[ETH + 12..ETH + 20]
        .iter()
        .chain(&frame[ETH + ihl..ETH + ihl + 4])
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    (h % n as u64) as usize
}

impl Port for MemPort {
    type Frame = Vec<u8>;

    fn rx_checksum(&self, frame: &Vec<u8>) -> RxChecksum {
        if !self.offload {
            return RxChecksum::default();
        }
        // The "device" checks what it can parse: IPv4, and TCP in it.
        let verdict = |ok: bool| if ok { RxState::Good } else { RxState::Bad };
        let mut v = RxChecksum::default();
        let Some(p) = frame.get(ETH_HLEN..) else {
            return v;
        };
        if frame[12..14] != [0x08, 0x00] || p.len() < 20 || p[0] >> 4 != 4 {
            return v;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if ihl < 20 || total < ihl || total > p.len() {
            return v;
        }
        v.ip = verdict(checksum::ipv4_header_ok(&p[..ihl]));
        if p[9] == 6 {
            let (src, dst) = (addr(&p[12..16]), addr(&p[16..20]));
            v.l4 = verdict(checksum::l4_ok(src, dst, 6, &p[ihl..total]));
        }
        v
    }

    fn tx_checksum(&self) -> TxChecksum {
        if self.offload {
            TxChecksum {
                ipv4: true,
                tcp: true,
            }
        } else {
            TxChecksum::NONE
        }
    }

    fn offload_tx(&self, frame: &mut Vec<u8>, ihl: usize, what: TxChecksum) {
        // What the NIC does as the frame leaves: complement of the sum over the header (its
        // field zero) and over the segment (its field holding the pseudo-header sum).
        let p = &mut frame[ETH_HLEN..];
        if what.ipv4 {
            p[10..12].fill(0);
            let c = !checksum::fold(checksum::sum(0, &p[..ihl]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if what.tcp {
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let c = !checksum::fold(checksum::sum(0, &p[ihl..total]));
            p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
        }
    }

    fn rx_burst(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let mut g = self.link.lock();
        let now = g.now;
        let from = match self.dir {
            Dir::AtoB => Dir::BtoA,
            Dir::BtoA => Dir::AtoB,
        } as usize;
        let q = &mut g.flight[from];
        // Deliver in (time, send order).
        q.sort_by_key(|(t, s, _)| (*t, *s));
        let ready = q.iter().take_while(|(t, _, _)| *t <= now).count();
        let n = match self.queue {
            None => {
                let n = ready.min(max);
                out.extend(q.drain(..n).map(|(_, _, f)| f));
                n
            }
            Some((me, queues)) => {
                let mut taken = 0;
                let mut i = 0;
                let mut left = ready;
                while left > 0 && taken < max {
                    left -= 1;
                    if fanout(&q[i].2, queues) == me {
                        out.push(q.remove(i).2);
                        taken += 1;
                    } else {
                        i += 1;
                    }
                }
                taken
            }
        };
        g.stats[from].delivered += n as u64;
        n
    }

    fn alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Vec<u8>>) -> usize {
        let mut g = self.link.lock();
        let d = self.dir as usize;
        let mut n = 0;
        while let Some(f) = frames.pop_front() {
            n += 1;
            g.stats[d].sent += 1;
            let dropped = match g.filter.as_mut() {
                Some(filter) => filter(self.dir, &f),
                None => false,
            };
            let loss = g.cfg.loss_ppm;
            if dropped || g.chance(loss) {
                g.stats[d].dropped += 1;
                continue;
            }
            if g.flight[d].len() >= g.cfg.capacity {
                g.stats[d].overflow += 1;
                continue;
            }
            let mut f = f;
            let corrupt = g.cfg.corrupt_ppm;
            if !f.is_empty() && g.chance(corrupt) {
                let bit = g.rand() as usize % (f.len() * 8);
                f[bit / 8] ^= 1 << (bit % 8);
                g.stats[d].corrupted += 1;
            }
            let reorder = g.cfg.reorder_ppm;
            let mut at = g.now + g.cfg.delay;
            if g.chance(reorder) {
                at += g.cfg.reorder_delay;
            }
            g.seq += 1;
            let seq = g.seq;
            g.flight[d].push((at, seq, f));
        }
        n
    }
}

fn addr(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// An in-memory Ethernet switch for stacks running on threads in real time (no simulated
/// clock). It learns which port each source MAC is on; broadcasts and unknown destinations
/// go to every other port. For in-process tests of several nodes (the messenger's scenarios
/// on the userspace transport).
///
/// Faults, all off until set:
/// - random loss, per million frames ([`Switch::set_loss`]);
/// - a port's link cut ([`Switch::set_down`]): everything to or from it is lost, frames
///   already queued for it included;
/// - a one-way delay ([`Switch::set_delay`]) with seeded random jitter on top
///   ([`Switch::set_jitter`]): a frame becomes visible in its destination's inbox only at its
///   due time. Jitter never reorders: an inbox is FIFO and a frame is never due before the
///   frame queued ahead of it for the same port, so the frames of each source → destination
///   pair keep their order (a frame drawn a short delay behind one drawn a long one waits
///   for it, as on one FIFO wire). Reordering is [`MemLink`]'s job, in simulated time.
///
/// Loss and delay apply to the whole switch, and the cut to one port; a test that wants
/// faults on its own links takes a switch of its own.
///
/// The switch reads the real clock at its ports ([`SwitchPort`]'s `Port` methods, its only
/// driver edge) and passes `now` into its logic, so the unit tests drive that logic with
/// instants of their own.
#[derive(Clone)]
pub struct Switch(Arc<Mutex<SwitchInner>>);

/// A frame in an inbox and the moment it may be taken.
struct Queued {
    due: RealInstant,
    frame: Vec<u8>,
}

struct SwitchInner {
    inboxes: Vec<VecDeque<Queued>>,
    down: Vec<bool>,
    /// Frames sent by each port.
    sent_by: Vec<u64>,
    macs: Vec<([u8; 6], usize)>,
    capacity: usize,
    loss_ppm: u32,
    rng: u64,
    delay: RealDuration,
    jitter: RealDuration,
    jitter_rng: u64,
    stats: SwitchStats,
}

/// Counters of a [`Switch`]. A frame flooded to several ports counts once per port after
/// `sent`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SwitchStats {
    pub sent: u64,
    /// Taken by their destination port (its receive burst).
    pub delivered: u64,
    /// Lost at random or to a cut link (on the way, or queued for a port when it was cut).
    pub dropped: u64,
    /// Lost because an inbox was full (frames waiting for their due time count as held).
    pub overflow: u64,
    /// Queued with a due time in the future (a delay, jitter, or a delayed frame ahead).
    pub delayed: u64,
}

impl Switch {
    /// A switch whose inboxes hold `capacity` frames each.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(SwitchInner {
            inboxes: Vec::new(),
            down: Vec::new(),
            sent_by: Vec::new(),
            macs: Vec::new(),
            capacity: capacity.max(1),
            loss_ppm: 0,
            rng: 0x5eed,
            delay: RealDuration::ZERO,
            jitter: RealDuration::ZERO,
            jitter_rng: 0x5eed,
            stats: SwitchStats::default(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, SwitchInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new port.
    pub fn port(&self) -> SwitchPort {
        let mut g = self.lock();
        g.inboxes.push(VecDeque::new());
        g.down.push(false);
        g.sent_by.push(0);
        SwitchPort {
            switch: self.clone(),
            me: g.inboxes.len() - 1,
        }
    }

    /// Random loss, per million frames (seeded: `seed`).
    pub fn set_loss(&self, ppm: u32, seed: u64) {
        let mut g = self.lock();
        g.loss_ppm = ppm;
        g.rng = seed.max(1);
    }

    /// One-way delay of every frame sent from now on (frames already queued keep their due
    /// time; a shorter delay does not let new frames overtake them).
    pub fn set_delay(&self, delay: RealDuration) {
        self.lock().delay = delay;
    }

    /// Extra delay drawn per frame, uniform in `0..=max` (seeded: `seed`), on top of
    /// [`Switch::set_delay`]. Never reorders (see [`Switch`]).
    pub fn set_jitter(&self, max: RealDuration, seed: u64) {
        let mut g = self.lock();
        g.jitter = max;
        g.jitter_rng = seed.max(1);
    }

    /// Cuts (`true`) or restores port `port`'s link. A cut also loses the frames queued for
    /// the port, delayed ones included.
    pub fn set_down(&self, port: usize, down: bool) {
        let mut g = self.lock();
        if let Some(d) = g.down.get_mut(port) {
            *d = down;
        }
        if down {
            let lost = g.inboxes.get_mut(port).map_or(0, |q| {
                let n = q.len();
                q.clear();
                n
            });
            g.stats.dropped += lost as u64;
        }
    }

    pub fn stats(&self) -> SwitchStats {
        self.lock().stats
    }

    /// Frames port `port` has sent (0 for a port that does not exist).
    pub fn sent_by(&self, port: usize) -> u64 {
        self.lock().sent_by.get(port).copied().unwrap_or(0)
    }
}

/// The switch's clock. The switch runs in real time, and its ports are its driver edge:
/// the one place it reads the clock (clippy.toml bans `Instant::now` elsewhere).
#[allow(clippy::disallowed_methods)]
fn real_now() -> RealInstant {
    RealInstant::now()
}

/// xorshift64: the switch's seeded randomness.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

impl SwitchInner {
    fn lost(&mut self) -> bool {
        self.loss_ppm > 0 && xorshift(&mut self.rng) % 1_000_000 < u64::from(self.loss_ppm)
    }

    /// This frame's jitter, uniform in `0..=jitter`.
    fn jitter(&mut self) -> RealDuration {
        if self.jitter.is_zero() {
            return RealDuration::ZERO;
        }
        let max = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX - 1);
        RealDuration::from_nanos(xorshift(&mut self.jitter_rng) % (max + 1))
    }

    /// A frame leaves port `from` at `now`.
    fn transmit(&mut self, from: usize, f: Vec<u8>, now: RealInstant) {
        self.stats.sent += 1;
        self.sent_by[from] += 1;
        if self.down[from] || f.len() < ETH_HLEN {
            self.stats.dropped += 1;
            return;
        }
        let (dst, src) = (addr6(&f[0..6]), addr6(&f[6..12]));
        match self.macs.iter_mut().find(|(m, _)| *m == src) {
            Some(e) => e.1 = from,
            None => self.macs.push((src, from)),
        }
        let known = self.macs.iter().find(|(m, _)| *m == dst).map(|e| e.1);
        match known {
            Some(to) if to != from => self.enqueue(to, f, now),
            Some(_) => self.stats.dropped += 1,
            None => {
                for to in (0..self.inboxes.len()).filter(|&p| p != from) {
                    self.enqueue(to, f.clone(), now);
                }
            }
        }
    }

    /// Queues a frame for port `to`, due after the delay and jitter but never before the
    /// frame ahead of it (the inbox stays FIFO).
    fn enqueue(&mut self, to: usize, frame: Vec<u8>, now: RealInstant) {
        if self.down[to] || self.lost() {
            self.stats.dropped += 1;
            return;
        }
        if self.inboxes[to].len() >= self.capacity {
            self.stats.overflow += 1;
            return;
        }
        let mut due = now + self.delay + self.jitter();
        if let Some(ahead) = self.inboxes[to].back() {
            due = due.max(ahead.due);
        }
        if due > now {
            self.stats.delayed += 1;
        }
        self.inboxes[to].push_back(Queued { due, frame });
    }

    /// Port `port` takes up to `max` frames due at `now`, in order.
    fn receive(
        &mut self,
        port: usize,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        now: RealInstant,
    ) -> usize {
        let q = &mut self.inboxes[port];
        let mut n = 0;
        while n < max && q.front().is_some_and(|f| f.due <= now) {
            if let Some(f) = q.pop_front() {
                out.push(f.frame);
                n += 1;
            }
        }
        self.stats.delivered += n as u64;
        n
    }
}

/// One port of a [`Switch`].
pub struct SwitchPort {
    switch: Switch,
    me: usize,
}

impl SwitchPort {
    /// This port's number (for [`Switch::set_down`]).
    pub fn index(&self) -> usize {
        self.me
    }
}

impl Port for SwitchPort {
    type Frame = Vec<u8>;

    fn rx_burst(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let mut g = self.switch.lock();
        if g.inboxes[self.me].is_empty() {
            return 0; // the common case of a polling worker: no clock read
        }
        g.receive(self.me, out, max, real_now())
    }

    fn alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Vec<u8>>) -> usize {
        let mut g = self.switch.lock();
        let now = real_now();
        let n = frames.len();
        for f in frames.drain(..) {
            g.transmit(self.me, f, now);
        }
        n
    }
}

fn addr6(b: &[u8]) -> [u8; 6] {
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: RealDuration = RealDuration::from_millis(1);

    /// A broadcast frame (every other port gets it) carrying `n`.
    fn frame(n: u32) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&n.to_be_bytes());
        f
    }

    fn number(f: &[u8]) -> u32 {
        u32::from_be_bytes([f[14], f[15], f[16], f[17]])
    }

    /// Port 1 takes what is due at `now`; the numbers it got.
    fn take(sw: &Switch, now: RealInstant) -> Vec<u32> {
        let mut out = Vec::new();
        sw.lock().receive(1, &mut out, usize::MAX, now);
        out.iter().map(|f| number(f)).collect()
    }

    fn two_ports(capacity: usize) -> (Switch, SwitchPort, SwitchPort) {
        let sw = Switch::new(capacity);
        let (a, b) = (sw.port(), sw.port());
        (sw, a, b)
    }

    #[test]
    fn without_delay_a_frame_is_there_at_once() {
        let (sw, _a, _b) = two_ports(16);
        let t0 = real_now();
        sw.lock().transmit(0, frame(7), t0);
        assert_eq!(take(&sw, t0), vec![7]);
        let st = sw.stats();
        assert_eq!((st.sent, st.delivered, st.delayed), (1, 1, 0));
    }

    #[test]
    fn a_delayed_frame_is_due_only_after_its_delay() {
        let (sw, _a, _b) = two_ports(16);
        sw.set_delay(5 * MS);
        let t0 = real_now();
        sw.lock().transmit(0, frame(1), t0);
        sw.lock().transmit(0, frame(2), t0 + MS);
        assert_eq!(take(&sw, t0), Vec::<u32>::new());
        assert_eq!(take(&sw, t0 + 5 * MS - RealDuration::from_nanos(1)), vec![]);
        assert_eq!(
            take(&sw, t0 + 5 * MS),
            vec![1],
            "due exactly at send + delay"
        );
        assert_eq!(take(&sw, t0 + 5 * MS), vec![]);
        assert_eq!(take(&sw, t0 + 6 * MS), vec![2]);
        let st = sw.stats();
        assert_eq!((st.sent, st.delivered, st.delayed), (2, 2, 2));
    }

    #[test]
    fn jitter_spreads_due_times_but_keeps_the_order() {
        let (sw, _a, _b) = two_ports(1024);
        sw.set_delay(MS);
        sw.set_jitter(4 * MS, 42);
        let t0 = real_now();
        let us = |n: u64| RealDuration::from_micros(n);
        for n in 0..500u32 {
            sw.lock().transmit(0, frame(n), t0 + us(u64::from(n) * 10));
        }
        // The draws differ (jitter is real), yet due times never go backwards.
        let dues: Vec<RealInstant> = sw.lock().inboxes[1].iter().map(|q| q.due).collect();
        let waits: std::collections::BTreeSet<RealDuration> = dues
            .iter()
            .enumerate()
            .map(|(n, d)| *d - (t0 + us(n as u64 * 10)))
            .collect();
        assert!(waits.len() > 100, "{} distinct waits", waits.len());
        assert!(dues.windows(2).all(|w| w[0] <= w[1]));
        // Each frame waits at least the delay and at most delay + jitter behind the frame
        // ahead of it; taking them in steps hands them over in send order.
        for (n, d) in dues.iter().enumerate() {
            assert!(*d >= t0 + us(n as u64 * 10) + MS, "frame {n} due too early");
        }
        let mut got = Vec::new();
        let mut now = t0;
        while got.len() < 500 {
            now += us(100);
            assert!(now < t0 + 100 * MS, "frames still queued");
            for n in take(&sw, now) {
                let sent = t0 + us(u64::from(n) * 10);
                assert!(now >= sent + MS, "frame {n} taken before its delay");
                got.push(n);
            }
        }
        assert_eq!(got, (0..500).collect::<Vec<_>>());
        assert_eq!(sw.stats().delayed, 500);
    }

    #[test]
    fn the_same_seed_draws_the_same_jitter() {
        let dues = |seed| {
            let (sw, _a, _b) = two_ports(64);
            sw.set_jitter(10 * MS, seed);
            let t0 = real_now();
            for n in 0..32 {
                sw.lock().transmit(0, frame(n), t0);
            }
            let g = sw.lock();
            g.inboxes[1].iter().map(|q| q.due - t0).collect::<Vec<_>>()
        };
        assert_eq!(dues(3), dues(3));
        assert_ne!(dues(3), dues(4));
    }

    #[test]
    fn a_cut_loses_the_frames_queued_for_the_port() {
        let (sw, _a, b) = two_ports(16);
        sw.set_delay(10 * MS);
        let t0 = real_now();
        for n in 0..3 {
            sw.lock().transmit(0, frame(n), t0);
        }
        sw.set_down(b.index(), true);
        sw.lock().transmit(0, frame(3), t0 + MS);
        assert_eq!(take(&sw, t0 + 20 * MS), vec![]);
        assert_eq!(sw.stats().dropped, 4, "3 queued + 1 sent during the cut");
        sw.set_down(b.index(), false);
        sw.lock().transmit(0, frame(4), t0 + 20 * MS);
        assert_eq!(take(&sw, t0 + 29 * MS), vec![]);
        assert_eq!(take(&sw, t0 + 30 * MS), vec![4]);
    }

    #[test]
    fn a_full_inbox_counts_delayed_frames_as_held() {
        let (sw, _a, _b) = two_ports(4);
        sw.set_delay(RealDuration::from_secs(1));
        let t0 = real_now();
        for n in 0..6 {
            sw.lock().transmit(0, frame(n), t0);
        }
        let st = sw.stats();
        assert_eq!((st.sent, st.overflow, st.delayed), (6, 2, 4));
        assert_eq!(take(&sw, t0 + RealDuration::from_secs(1)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_shorter_delay_does_not_let_new_frames_overtake() {
        let (sw, _a, _b) = two_ports(16);
        sw.set_delay(10 * MS);
        let t0 = real_now();
        sw.lock().transmit(0, frame(0), t0);
        sw.set_delay(RealDuration::ZERO);
        sw.lock().transmit(0, frame(1), t0 + MS);
        assert_eq!(take(&sw, t0 + 2 * MS), vec![]);
        assert_eq!(take(&sw, t0 + 10 * MS), vec![0, 1]);
    }
}

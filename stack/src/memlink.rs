//! An in-memory Ethernet link between two [`Port`]s, for tests without DPDK: frames cross
//! it with configurable delay, loss and reordering, all driven by a seed and by the time the
//! test sets, so every run is the same run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

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
/// clock): a frame reaches its destination's inbox as soon as it is sent. It learns which
/// port each source MAC is on; broadcasts and unknown destinations go to every other port.
/// For in-process tests of several nodes (the messenger's scenarios on the userspace
/// transport). Faults: random loss, and a port's link cut (everything to or from it lost).
#[derive(Clone)]
pub struct Switch(Arc<Mutex<SwitchInner>>);

struct SwitchInner {
    inboxes: Vec<VecDeque<Vec<u8>>>,
    down: Vec<bool>,
    macs: Vec<([u8; 6], usize)>,
    capacity: usize,
    loss_ppm: u32,
    rng: u64,
    stats: SwitchStats,
}

/// Counters of a [`Switch`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SwitchStats {
    pub sent: u64,
    pub delivered: u64,
    /// Lost at random or to a cut link.
    pub dropped: u64,
    /// Lost because an inbox was full.
    pub overflow: u64,
}

impl Switch {
    /// A switch whose inboxes hold `capacity` frames each.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(SwitchInner {
            inboxes: Vec::new(),
            down: Vec::new(),
            macs: Vec::new(),
            capacity: capacity.max(1),
            loss_ppm: 0,
            rng: 0x5eed,
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

    /// Cuts (`true`) or restores port `port`'s link.
    pub fn set_down(&self, port: usize, down: bool) {
        let mut g = self.lock();
        if let Some(d) = g.down.get_mut(port) {
            *d = down;
        }
        if down {
            if let Some(q) = g.inboxes.get_mut(port) {
                q.clear();
            }
        }
    }

    pub fn stats(&self) -> SwitchStats {
        self.lock().stats
    }
}

impl SwitchInner {
    fn lost(&mut self) -> bool {
        if self.loss_ppm == 0 {
            return false;
        }
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % 1_000_000) < u64::from(self.loss_ppm)
    }

    fn deliver(&mut self, to: usize, frame: Vec<u8>) {
        if self.down[to] || self.lost() {
            self.stats.dropped += 1;
        } else if self.inboxes[to].len() >= self.capacity {
            self.stats.overflow += 1;
        } else {
            self.inboxes[to].push_back(frame);
            self.stats.delivered += 1;
        }
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
        let q = &mut g.inboxes[self.me];
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        n
    }

    fn alloc(&mut self, len: usize) -> Option<Vec<u8>> {
        Some(vec![0; len])
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Vec<u8>>) -> usize {
        let mut g = self.switch.lock();
        let n = frames.len();
        for f in frames.drain(..) {
            g.stats.sent += 1;
            if g.down[self.me] || f.len() < ETH_HLEN {
                g.stats.dropped += 1;
                continue;
            }
            let (dst, src) = (addr6(&f[0..6]), addr6(&f[6..12]));
            match g.macs.iter_mut().find(|(m, _)| *m == src) {
                Some(e) => e.1 = self.me,
                None => g.macs.push((src, self.me)),
            }
            let known = g.macs.iter().find(|(m, _)| *m == dst).map(|e| e.1);
            match known {
                Some(to) if to != self.me => g.deliver(to, f),
                Some(_) => g.stats.dropped += 1,
                None => {
                    let ports = g.inboxes.len();
                    for to in (0..ports).filter(|&p| p != self.me) {
                        g.deliver(to, f.clone());
                    }
                }
            }
        }
        n
    }
}

fn addr6(b: &[u8]) -> [u8; 6] {
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

//! `bench soak`: a messenger under fire for a given time or message count, every message
//! checked at the receiver.
//!
//! One process, two messengers on the chosen transport (kernel loopback for simple and
//! posix; for dpdk, the transport's workers and userspace stack on an in-memory Ethernet
//! switch): an OSD-like server (`stateful_server`, lossless) and a client standing in for
//! `--conns` clients (`Messenger::connect_as`, `lossless_client`). The client sends messages
//! of random size (mostly small, some up to `--max-size`) on random sessions, with a
//! bounded window in flight; both sides make every Nth socket read or write fail
//! (`ms_inject_socket_failures`); every so often a session is marked down and a new client
//! takes its place.
//!
//! Each message carries its stream, its sequence number, its length and the CRC32C of its
//! data; the server checks each stream's order (lost, duplicated, reordered), the length and
//! the data, and acknowledges it; the client checks the acknowledgements the same way.
//! Messages on a session that was marked down and never delivered are counted as discarded
//! (mark_down discards by definition), not lost.
//!
//! It runs with glibc's malloc tuned as the service runs it ([`MALLOC_TUNABLES`]; set
//! GLIBC_TUNABLES yourself to soak another setting).
//!
//! The report: sent, delivered, lost, duplicated, reordered, corrupt, discarded by mark_down,
//! reconnects and faults by cause (both messengers' counters), resident memory (at the start,
//! the peak at the end of the warm-up, at the end, the peak). Exit status 1 if anything was
//! lost, duplicated, reordered or corrupt, if progress stalled, or if the peak grew more than
//! 10% after the warm-up (judged only when the run outlasts it: 2 minutes by default).
#![allow(clippy::disallowed_methods)] // a benchmark driver: it reads the clock

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::{Message, MessageHeader, MsgType};
use msgr::proto::Policy;
use serde_json::json;

/// glibc's malloc settings the service runs with (and so the soak): a fixed mmap threshold.
/// By default glibc raises the threshold each time a large mmapped block is freed, after
/// which multi-MiB message buffers come from per-thread arenas and stay there: a
/// thread-per-connection messenger soaked with 4 MiB messages grew from 200 to 450 MiB in
/// ten minutes; with the threshold fixed it stays near 100 MiB.
pub(crate) const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072";

/// A soak message (client to server) and its acknowledgement.
const SOAK: MsgType = MsgType(0x7f01);
const SOAK_ACK: MsgType = MsgType(0x7f02);

/// What `bench soak` is asked.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) transport: TransportKind,
    /// Stop after this long ...
    pub(crate) seconds: f64,
    /// ... or after this many messages, whichever first (0: no count limit).
    pub(crate) messages: u64,
    pub(crate) conns: usize,
    /// Every Nth socket read or write fails, on both sides (0: never).
    pub(crate) inject: u64,
    /// Mark a random session down every N messages (0: never).
    pub(crate) mark_down_every: u64,
    pub(crate) max_size: usize,
    pub(crate) seed: u64,
    /// Lossy policies (stateless server, lossy clients) instead of lossless ones.
    pub(crate) lossy: bool,
    /// Memory is compared from this point on (a warm-up fills caches and pools).
    pub(crate) warmup: Duration,
    pub(crate) json: bool,
}

/// Per-stream order checking: the next expected sequence number, and the ones skipped
/// (lost, unless they turn up later: then reordered).
#[derive(Debug, Default)]
struct Order {
    next: u64,
    missing: BTreeSet<u64>,
}

/// What a receiver counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) delivered: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) corrupt: u64,
    pub(crate) bytes: u64,
    /// Messages of a stream already settled: arrived after its session ended and the
    /// grace that followed.
    pub(crate) late: u64,
}

/// A set of u64 kept as disjoint ranges `[start, end)`: stream ids are handed out in
/// order, so the settled ones take room in proportion to the live ones between them, not
/// to how many there were.
#[derive(Debug, Default)]
struct Ranges(std::collections::BTreeMap<u64, u64>);

impl Ranges {
    fn contains(&self, x: u64) -> bool {
        self.0
            .range(..=x)
            .next_back()
            .is_some_and(|(_, &end)| x < end)
    }

    fn insert(&mut self, x: u64) {
        if self.contains(x) {
            return;
        }
        let (mut start, mut end) = (x, x + 1);
        if let Some((&s, &e)) = self.0.range(..x).next_back() {
            if e == x {
                self.0.remove(&s);
                start = s;
            }
        }
        if let Some(e) = self.0.remove(&end) {
            end = e;
        }
        self.0.insert(start, end);
    }
}

/// Order and integrity checks of one receiving side, by stream.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    streams: HashMap<u64, Order>,
    /// Streams whose session ended and whose counts were taken ([`Checker::settle`]).
    settled: Ranges,
    pub(crate) tally: Tally,
}

impl Checker {
    /// Records message `seq` of `stream`.
    pub(crate) fn saw(&mut self, stream: u64, seq: u64) {
        if self.settled.contains(stream) {
            self.tally.late += 1;
            return;
        }
        let o = self.streams.entry(stream).or_default();
        if seq == o.next {
            o.next += 1;
            self.tally.delivered += 1;
        } else if seq > o.next {
            o.missing.extend(o.next..seq);
            o.next = seq + 1;
            self.tally.delivered += 1;
        } else if o.missing.remove(&seq) {
            self.tally.reordered += 1;
            self.tally.delivered += 1;
        } else {
            self.tally.duplicated += 1;
        }
    }

    /// Sequence numbers of `stream` below `sent` that never arrived.
    pub(crate) fn lost(&self, stream: u64, sent: u64) -> u64 {
        self.streams.get(&stream).map_or(sent, |o| {
            o.missing.len() as u64 + sent.saturating_sub(o.next)
        })
    }

    /// Sequence numbers of `stream` skipped (missing below the highest received).
    fn holes(&self, stream: u64) -> u64 {
        self.streams
            .get(&stream)
            .map_or(0, |o| o.missing.len() as u64)
    }

    /// Takes the counts of a stream whose session ended (`sent` messages): (holes, tail)
    /// — messages skipped below the highest received, and those never received after
    /// it — and forgets the stream; any message of it that still arrives counts as late.
    fn settle(&mut self, stream: u64, sent: u64) -> (u64, u64) {
        let holes = self.holes(stream);
        let tail = self.lost(stream, sent) - holes;
        self.streams.remove(&stream);
        self.settled.insert(stream);
        (holes, tail)
    }

    /// Messages of `stream` received so far.
    fn received(&self, stream: u64) -> u64 {
        self.streams
            .get(&stream)
            .map_or(0, |o| o.next - o.missing.len() as u64)
    }
}

/// The soak message: front = stream, seq, data length, CRC32C of the data.
pub(crate) fn message(stream: u64, seq: u64, data: Bytes) -> Message {
    let mut front = BytesMut::with_capacity(24);
    front.put_u64_le(stream);
    front.put_u64_le(seq);
    front.put_u32_le(data.len() as u32);
    front.put_u32_le(msgr::crc::ceph_crc32c(0, &data));
    let mut h = MessageHeader::new(SOAK, 1, 1);
    h.tid = seq;
    Message::new(h, front.freeze(), Bytes::new(), data)
}

/// (stream, seq, whether the data is intact) of a soak message; `None` if it is not one.
pub(crate) fn parse(m: &Message) -> Option<(u64, u64, bool)> {
    let f = &m.front;
    if f.len() < 16 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().unwrap_or([0; 8]));
    let (stream, seq) = (word(0), word(8));
    let intact = f.len() == 24 && {
        let len = u32::from_le_bytes(f[16..20].try_into().unwrap_or([0; 4])) as usize;
        let crc = u32::from_le_bytes(f[20..24].try_into().unwrap_or([0; 4]));
        len == m.data.len() && crc == msgr::crc::ceph_crc32c(0, &m.data)
    };
    Some((stream, seq, intact))
}

fn ack(stream: u64, seq: u64) -> Message {
    let mut front = BytesMut::with_capacity(16);
    front.put_u64_le(stream);
    front.put_u64_le(seq);
    let mut h = MessageHeader::new(SOAK_ACK, 1, 1);
    h.tid = seq;
    Message::new(h, front.freeze(), Bytes::new(), Bytes::new())
}

/// The server's side: checks each message and acknowledges it on its connection.
struct Server {
    check: Mutex<Checker>,
}

impl Dispatcher for Server {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == SOAK
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        let Some((stream, seq, intact)) = parse(&m.msg) else {
            return;
        };
        {
            let mut c = self.check.lock().unwrap_or_else(|e| e.into_inner());
            c.saw(stream, seq);
            c.tally.bytes += m.msg.data.len() as u64;
            if !intact {
                c.tally.corrupt += 1;
            }
        }
        // The ack rides the same lossless session back (a full queue is retried).
        let mut a = ack(stream, seq);
        for _ in 0..1000 {
            match m.conn.send_message(a) {
                Ok(()) => return,
                Err(msgr::proto::SendError::QueueFull(back)) => {
                    a = *back;
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
    }
}

/// The client's side: checks the acknowledgements, and notes the sessions reset.
struct Client {
    check: Mutex<Checker>,
    acked: AtomicU64,
    /// Connections whose reset the dispatcher was told of (`ms_handle_reset`).
    resets: Mutex<HashSet<u64>>,
}

impl Client {
    fn was_reset(&self, conn: u64) -> bool {
        self.resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&conn)
    }
}

impl Dispatcher for Client {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == SOAK_ACK
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        if let Some((stream, seq, _)) = parse(&m.msg) {
            self.check
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .saw(stream, seq);
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn ms_handle_reset(&self, con: &ConnectionRef) -> bool {
        self.resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(con.id());
        true
    }
}

/// How long after a session leaves the run its counts are taken: what was already on its
/// way (read by the server before the socket went) may still arrive until then.
const SETTLE_AFTER: Duration = Duration::from_secs(30);

/// Why a session left the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// `mark_down`: what it never delivered was discarded, by definition.
    MarkedDown,
    /// A lossy session reset (or one that refused a send as closed).
    Reset,
}

/// A session that left the run, waiting to be settled.
#[derive(Debug)]
struct Retired {
    at: Instant,
    stream: u64,
    sent: u64,
    conn: u64,
    ending: Ending,
}

impl Retired {
    fn of(s: &Session, ending: Ending) -> Self {
        Self {
            at: Instant::now(),
            stream: s.stream,
            sent: s.sent,
            conn: s.conn.id(),
            ending,
        }
    }
}

/// The counts of settled sessions.
#[derive(Debug, Default)]
struct Books {
    /// Messages a mark_down discarded.
    discarded: u64,
    sessions_reset: u64,
    /// Lost and not explained: holes in a stream, or a reset nobody was told of.
    lost: u64,
    /// The tails of reset sessions whose dispatcher heard of the reset.
    lost_across_resets: u64,
    resets_unreported: u64,
}

impl Books {
    /// Takes a retired session's counts and forgets its streams (both sides) and its
    /// reset. Lossy: what a reset session never delivered is lost across the reset if it
    /// is the tail of its stream and the dispatcher heard of the reset; a hole, or a loss
    /// nobody was told of, is a loss like any other.
    fn settle(&mut self, r: &Retired, server: &Server, client: &Client) {
        let (holes, tail) = server
            .check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settle(r.stream, r.sent);
        client
            .check
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settle(r.stream, r.sent);
        let told = client
            .resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&r.conn);
        match r.ending {
            Ending::MarkedDown => self.discarded += holes + tail,
            Ending::Reset => {
                self.sessions_reset += 1;
                self.lost += holes;
                if told {
                    self.lost_across_resets += tail;
                } else {
                    self.resets_unreported += 1;
                    self.lost += tail;
                }
            }
        }
    }
}

/// A small xorshift generator (deterministic from --seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A message size: 80% under 4 KiB, 18% under 256 KiB, 2% up to `max`.
fn size(rng: &mut Rng, max: usize) -> usize {
    let r = rng.below(100);
    let cap = if r < 80 {
        4096
    } else if r < 98 {
        256 << 10
    } else {
        max
    };
    rng.below(cap.min(max) as u64 + 1) as usize
}

/// One client session: its connection, its client's nonce, and its stream.
struct Session {
    conn: ConnectionRef,
    nonce: u32,
    stream: u64,
    sent: u64,
    /// (sequence number, bytes) of messages not yet acknowledged, oldest first.
    unacked: std::collections::VecDeque<(u64, u64)>,
    unacked_bytes: u64,
}

/// Resident memory of this process now and at its peak, KiB (0 if unknown).
fn memory() -> (u64, u64) {
    msgr::procstat::memory_kib().unwrap_or((0, 0))
}

fn build(
    plan: &Plan,
    ty: EntityType,
    nonce: u32,
    policy: Policy,
    net: Option<&stack::memlink::Switch>,
    ip: u8,
) -> Messenger {
    let options = msgr::proto::Options {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    };
    let mut b = Messenger::builder(EntityName::new(ty, 0), nonce)
        .transport(plan.transport)
        .workers(1)
        .options(options)
        .inject_socket_failures(plan.inject);
    if let Some(sw) = net {
        let mut cfg = msgr::messenger::UserspaceConfig::new(
            msgr::messenger::Backend::Switch(sw.port()),
            std::net::Ipv4Addr::new(10, 67, 0, ip),
            24,
        );
        cfg.idle = stack::IdlePolicy::Yield { spins: 64 };
        b = b.userspace(cfg);
    }
    let m = b.build();
    m.set_default_policy(policy);
    m
}

/// Runs the soak; the report (text or JSON) and whether it passed.
pub(crate) fn run(plan: &Plan) -> Result<(String, bool), String> {
    let started = Instant::now();
    let (rss0, _) = memory();
    let switch =
        (plan.transport == TransportKind::Dpdk).then(|| stack::memlink::Switch::new(1 << 16));
    let (server_policy, client_policy) = if plan.lossy {
        (Policy::stateless_server(0), Policy::lossy_client(0))
    } else {
        (Policy::stateful_server(0), Policy::lossless_client(0))
    };
    let server = build(plan, EntityType::OSD, 1, server_policy, switch.as_ref(), 1);
    let sd = Arc::new(Server {
        check: Mutex::new(Checker::default()),
    });
    server.add_dispatcher_tail(Arc::clone(&sd) as _);
    let bind = if switch.is_some() {
        "10.67.0.1:6800"
    } else {
        "127.0.0.1:0"
    };
    let addr: EntityAddr = server
        .bind(bind.parse().map_err(|e| format!("{e}"))?)
        .map_err(|e| format!("server bind: {e}"))?;
    server.start().map_err(|e| format!("server start: {e}"))?;
    let client = build(
        plan,
        EntityType::CLIENT,
        2,
        client_policy,
        switch.as_ref(),
        2,
    );
    let cd = Arc::new(Client {
        check: Mutex::new(Checker::default()),
        acked: AtomicU64::new(0),
        resets: Mutex::new(HashSet::new()),
    });
    client.add_dispatcher_tail(Arc::clone(&cd) as _);
    client.start().map_err(|e| format!("client start: {e}"))?;

    let mut rng = Rng(plan.seed | 1);
    let mut next_stream = 1u64;
    let mut next_nonce = 1000u32;
    // A client's session; a client that marked its session down comes back with the same
    // identity and a new session (the server sees the peer reset and drops the old one).
    let open = |next_stream: &mut u64, nonce: u32| {
        let conn = client.connect_as(
            addr,
            EntityType::OSD,
            EntityName::new(EntityType::CLIENT, i64::from(nonce)),
            nonce,
        );
        *next_stream += 1;
        Session {
            conn,
            nonce,
            stream: *next_stream,
            sent: 0,
            unacked: Default::default(),
            unacked_bytes: 0,
        }
    };
    let mut live: Vec<Session> = (0..plan.conns.max(1))
        .map(|_| {
            next_nonce += 1;
            open(&mut next_stream, next_nonce)
        })
        .collect();
    // Sessions that left the run (marked down; lossy: reset, or refused a send as
    // closed), oldest first, settled SETTLE_AFTER later. Only ids and counts: holding the
    // connection would keep its engine, and the unacknowledged messages it keeps for
    // replay, alive for the rest of the run. What is settled is forgotten, so the soak's
    // own books stay as small as the live sessions, however many come and go.
    let mut retired: std::collections::VecDeque<Retired> = Default::default();
    let mut books = Books::default();
    // A bounded window: messages and bytes sent and not yet acknowledged.
    const WINDOW: u64 = 256;
    const WINDOW_BYTES: u64 = 64 << 20;
    let mut pool = BytesMut::zeroed(plan.max_size.max(1) + 4096);
    for (i, b) in pool.iter_mut().enumerate() {
        *b = (i as u64).wrapping_mul(0x9e37_79b9) as u8;
    }
    let pool = pool.freeze();
    let deadline = started + Duration::from_secs_f64(plan.seconds);
    let (mut sent, mut sent_bytes, mut marks) = (0u64, 0u64, 0u64);
    // Resident memory once a second: (seconds since the start, KiB).
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let mut last_progress = (Instant::now(), 0u64);
    // The longest time the client waited for any acknowledgement while some were due.
    let mut longest_wait = Duration::ZERO;
    let mut last_report = Instant::now();
    let mut stalled = None;
    let mut log = String::new();
    while Instant::now() < deadline && (plan.messages == 0 || sent < plan.messages) {
        if plan.lossy {
            // Sessions reset since the last turn end; each client opens a new one.
            let gone: Vec<usize> = {
                let r = cd.resets.lock().unwrap_or_else(|e| e.into_inner());
                (0..live.len())
                    .filter(|&i| r.contains(&live[i].conn.id()))
                    .collect()
            };
            for &k in gone.iter().rev() {
                let s = live.swap_remove(k);
                retired.push_back(Retired::of(&s, Ending::Reset));
                live.push(open(&mut next_stream, s.nonce));
            }
        }
        while retired
            .front()
            .is_some_and(|r| r.at.elapsed() >= SETTLE_AFTER)
        {
            if let Some(r) = retired.pop_front() {
                books.settle(&r, &sd, &cd);
            }
        }
        // What each live session has outstanding (its acknowledgements so far).
        let (mut outstanding, mut outstanding_bytes) = (0u64, 0u64);
        {
            let c = cd.check.lock().unwrap_or_else(|e| e.into_inner());
            for s in &mut live {
                let got = c.received(s.stream);
                while s.unacked.front().is_some_and(|&(seq, _)| seq < got) {
                    if let Some((_, b)) = s.unacked.pop_front() {
                        s.unacked_bytes -= b;
                    }
                }
                outstanding += s.unacked.len() as u64;
                outstanding_bytes += s.unacked_bytes;
            }
        }
        let acked = cd.acked.load(Ordering::Relaxed);
        if acked != last_progress.1 {
            last_progress = (Instant::now(), acked);
        } else if outstanding > 0 {
            longest_wait = longest_wait.max(last_progress.0.elapsed());
            if last_progress.0.elapsed() > Duration::from_secs(60) {
                let stuck: Vec<String> = live
                    .iter()
                    .filter(|s| !s.unacked.is_empty())
                    .map(|s| {
                        format!(
                            "client {} (conn {}): {} unacked, phase {:?}, backlog {:?}, {:?}",
                            s.nonce,
                            s.conn.id(),
                            s.unacked.len(),
                            s.conn.phase(),
                            s.conn.backlog(),
                            s.conn.stats()
                        )
                    })
                    .collect();
                stalled = Some(format!(
                    "no acknowledgement for 60 s ({sent} sent, {acked} acknowledged, \
                     {outstanding} outstanding): {}",
                    stuck.join("; ")
                ));
                break;
            }
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            samples.push((started.elapsed().as_secs_f64(), memory().0));
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let (rss, _) = memory();
            let line = format!(
                "soak {}: {:.0} s, {sent} sent, {acked} acknowledged, {marks} marked down, RSS {} MiB",
                plan.transport.name(),
                started.elapsed().as_secs_f64(),
                rss / 1024
            );
            eprintln!("{line}");
        }
        // Window: wait while too much is unacknowledged.
        if outstanding >= WINDOW || outstanding_bytes >= WINDOW_BYTES {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        if plan.mark_down_every > 0 && sent > 0 && sent % plan.mark_down_every == 0 {
            let k = rng.below(live.len() as u64) as usize;
            let s = live.swap_remove(k);
            s.conn.mark_down();
            let nonce = s.nonce;
            retired.push_back(Retired::of(&s, Ending::MarkedDown));
            live.push(open(&mut next_stream, nonce));
            marks += 1;
        }
        let k = rng.below(live.len() as u64) as usize;
        let len = size(&mut rng, plan.max_size);
        let at = rng.below(4096) as usize;
        let s = &mut live[k];
        let m = message(s.stream, s.sent, pool.slice(at..at + len));
        match s.conn.send_message(m) {
            Ok(()) => {
                s.unacked.push_back((s.sent, len as u64));
                s.unacked_bytes += len as u64;
                s.sent += 1;
                sent += 1;
                sent_bytes += len as u64;
            }
            Err(msgr::proto::SendError::QueueFull(_)) => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(msgr::proto::SendError::Closed(_)) if plan.lossy => {
                // Reset under our feet: its dispatcher is told (checked when settled).
                let s = live.swap_remove(k);
                retired.push_back(Retired::of(&s, Ending::Reset));
                live.push(open(&mut next_stream, s.nonce));
            }
            Err(e) => return Err(format!("send on a live lossless session failed: {e:?}")),
        }
    }
    // Drain: every live session's messages acknowledged (bounded).
    let drain_until = Instant::now() + Duration::from_secs(60);
    // (Lossy: a session may still be reset while draining, which also ends its wait.)
    let all_acked = |cd: &Client, live: &[Session]| {
        let c = cd.check.lock().unwrap_or_else(|e| e.into_inner());
        live.iter()
            .all(|s| c.received(s.stream) >= s.sent || (plan.lossy && cd.was_reset(s.conn.id())))
    };
    while !all_acked(&cd, &live) && Instant::now() < drain_until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = all_acked(&cd, &live);
    if plan.lossy {
        let mut k = 0;
        while k < live.len() {
            if cd.was_reset(live[k].conn.id()) {
                let s = live.swap_remove(k);
                retired.push_back(Retired::of(&s, Ending::Reset));
            } else {
                k += 1;
            }
        }
    }
    if !drained {
        let c = cd.check.lock().unwrap_or_else(|e| e.into_inner());
        for s in live.iter().filter(|s| c.received(s.stream) < s.sent) {
            eprintln!(
                "soak: not drained: client {} (conn {}): {} of {} acknowledged, phase {:?}, \
                 backlog {:?}, {:?}",
                s.nonce,
                s.conn.id(),
                c.received(s.stream),
                s.sent,
                s.conn.phase(),
                s.conn.backlog(),
                s.conn.stats()
            );
        }
    }
    let elapsed = started.elapsed();
    let (rss_end, rss_peak) = memory();
    let sp = server.perf_dump();
    let cp = client.perf_dump();
    client.shutdown();
    server.shutdown();
    client.wait();
    server.wait();

    // Everything has stopped: what is still retiring settles now.
    for r in retired.drain(..) {
        books.settle(&r, &sd, &cd);
    }
    let srv = sd.check.lock().unwrap_or_else(|e| e.into_inner());
    let cli = cd.check.lock().unwrap_or_else(|e| e.into_inner());
    let lost: u64 = books.lost + live.iter().map(|s| srv.lost(s.stream, s.sent)).sum::<u64>();
    let Books {
        discarded,
        sessions_reset,
        lost_across_resets,
        resets_unreported,
        ..
    } = books;
    let acks_lost: u64 = live
        .iter()
        .map(|s| cli.lost(s.stream, srv.received(s.stream)))
        .sum();
    let faults = |p: &serde_json::Value| p["msgr"]["faults"].clone();
    let counter = |p: &serde_json::Value, k: &str| p["msgr"][k].as_u64().unwrap_or(0);
    let reconnects = counter(&cp, "reconnects");
    let injected = counter(&cp, "injected_failures") + counter(&sp, "injected_failures");
    // After the warm-up: the highest resident memory of the second half against that of
    // the first (what is in flight moves single samples by tens of MiB; a leak moves the
    // halves apart). Judged when at least a minute follows the warm-up.
    let (halves, growth) = memory_growth(&samples, plan.warmup.as_secs_f64());
    let t = srv.tally;
    let ok = lost == 0
        && t.duplicated == 0
        && t.reordered == 0
        && t.corrupt == 0
        && t.late == 0
        && cli.tally.late == 0
        && cli.tally.duplicated == 0
        && cli.tally.reordered == 0
        && acks_lost == 0
        && drained
        && stalled.is_none()
        && growth.is_none_or(|g| g <= 10.0);
    let v = json!({
        "transport": plan.transport.name(),
        "policy": if plan.lossy { "lossy" } else { "lossless" },
        "seconds": elapsed.as_secs_f64(),
        "sessions": plan.conns,
        "inject_every": plan.inject,
        "mark_down_every": plan.mark_down_every,
        "sent": sent,
        "sent_bytes": sent_bytes,
        "delivered": t.delivered,
        "delivered_bytes": t.bytes,
        "lost": lost,
        "duplicated": t.duplicated,
        "reordered": t.reordered,
        "corrupt": t.corrupt,
        "discarded_by_mark_down": discarded,
        "sessions_reset": sessions_reset,
        "late": t.late + cli.tally.late,
        "lost_across_resets": lost_across_resets,
        "resets_unreported": resets_unreported,
        "marked_down": marks,
        "acks": {"delivered": cli.tally.delivered, "lost": acks_lost,
                 "duplicated": cli.tally.duplicated, "reordered": cli.tally.reordered},
        "reconnects": reconnects,
        "connections_at_end": {"client": counter(&cp, "connections"), "server": counter(&sp, "connections")},
        "injected_failures": injected,
        "faults": {"client": faults(&cp), "server": faults(&sp)},
        "rss_kib": {"start": rss0, "end": rss_end, "peak": rss_peak,
                    "max_first_half_after_warmup": halves.map(|h| h.0),
                    "max_second_half_after_warmup": halves.map(|h| h.1)},
        "rss_growth_after_warmup_pct": growth,
        "drained": drained,
        "longest_ack_wait_s": longest_wait.as_secs_f64(),
        "stalled": stalled,
        "passed": ok,
    });
    if plan.json {
        return Ok((v.to_string(), ok));
    }
    let _ = writeln!(
        log,
        "soak {} ({}) for {:.0} s, {} sessions, socket failure every {} ops, mark_down every {} messages",
        plan.transport.name(),
        if plan.lossy { "lossy" } else { "lossless" },
        elapsed.as_secs_f64(),
        plan.conns,
        plan.inject,
        plan.mark_down_every
    );
    let _ = writeln!(
        log,
        "  sent {sent} ({:.1} MB), delivered {} ({:.1} MB): lost {lost}, duplicated {}, \
         reordered {}, corrupt {}; discarded by mark_down {discarded} ({marks} marked down)",
        sent_bytes as f64 / 1e6,
        t.delivered,
        t.bytes as f64 / 1e6,
        t.duplicated,
        t.reordered,
        t.corrupt
    );
    if plan.lossy {
        let _ = writeln!(
            log,
            "  sessions reset {}: {lost_across_resets} messages lost across a reset its \
             dispatcher was told of; resets not reported {resets_unreported}",
            sessions_reset
        );
    }
    let _ = writeln!(
        log,
        "  acks: delivered {}, lost {acks_lost}, duplicated {}, reordered {}",
        cli.tally.delivered, cli.tally.duplicated, cli.tally.reordered
    );
    let _ = writeln!(
        log,
        "  reconnects {reconnects}, injected socket failures {injected}; faults: client {}, server {}",
        compact(&faults(&cp)),
        compact(&faults(&sp))
    );
    let _ = writeln!(
        log,
        "  connections at the end: client {}, server {} ({} sessions)",
        counter(&cp, "connections"),
        counter(&sp, "connections"),
        plan.conns
    );
    let _ = writeln!(
        log,
        "  RSS: start {} MiB, end {} MiB, peak {} MiB; after the warm-up, highest {}{}",
        rss0 / 1024,
        rss_end / 1024,
        rss_peak / 1024,
        halves.map_or_else(
            || "- (too short: memory not judged)".to_owned(),
            |(a, b)| format!(
                "{} MiB in the first half, {} MiB in the second",
                a / 1024,
                b / 1024
            )
        ),
        growth.map_or_else(String::new, |g| format!(" ({g:+.1}%)"))
    );
    let _ = writeln!(
        log,
        "  longest wait for an acknowledgement: {:.3} s",
        longest_wait.as_secs_f64()
    );
    if let Some(s) = &stalled {
        let _ = writeln!(log, "  STALLED: {s}");
    }
    if !drained {
        let _ = writeln!(
            log,
            "  NOT DRAINED: live sessions still had unacknowledged messages after 60 s"
        );
    }
    if !ok && plan.transport == TransportKind::Dpdk {
        // The userspace stacks' counters and what they held at the end (sockets,
        // handshakes, listeners): where a stuck session's packets went.
        for (side, p) in [("client", &cp), ("server", &sp)] {
            let _ = writeln!(log, "  {side} dpdk workers: {}", p["dpdk"]);
        }
    }
    let _ = writeln!(log, "  {}", if ok { "PASSED" } else { "FAILED" });
    Ok((log, ok))
}

/// The highest sample of each half of the run after `warmup` seconds, and the growth from
/// the first to the second (percent); `None` unless a minute or more follows the warm-up.
pub(crate) fn memory_growth(
    samples: &[(f64, u64)],
    warmup: f64,
) -> (Option<(u64, u64)>, Option<f64>) {
    let end = samples.last().map_or(0.0, |s| s.0);
    if end < warmup + 60.0 {
        return (None, None);
    }
    let mid = (warmup + end) / 2.0;
    let max = |lo: f64, hi: f64| {
        samples
            .iter()
            .filter(|s| s.0 >= lo && s.0 <= hi)
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
    };
    let (a, b) = (max(warmup, mid), max(mid, end));
    (
        Some((a, b)),
        Some(100.0 * (b as f64 - a as f64) / a.max(1) as f64),
    )
}

/// Non-zero counters of a faults object, as "eof 3, io 2".
fn compact(v: &serde_json::Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| n.as_u64().filter(|&n| n > 0).map(|n| format!("{k} {n}")))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_tells_loss_duplication_and_reordering_apart() {
        let mut c = Checker::default();
        for s in [0, 1, 2, 5, 3, 3, 6] {
            c.saw(7, s);
        }
        // 4 never came; 3 came late (reordered) and then again (duplicate).
        assert_eq!(c.tally.delivered, 6);
        assert_eq!(c.tally.reordered, 1);
        assert_eq!(c.tally.duplicated, 1);
        assert_eq!(c.lost(7, 7), 1);
        assert_eq!(c.lost(7, 9), 3, "8 and 9 not yet");
        assert_eq!(c.lost(8, 2), 2, "a stream never seen lost all");
        assert_eq!(c.received(7), 6);
    }

    #[test]
    fn settled_streams_are_forgotten_and_late_ones_counted() {
        let mut c = Checker::default();
        for stream in 1..=1000 {
            for seq in [0, 1, 3] {
                c.saw(stream, seq);
            }
        }
        // Streams 1..=1000 sent 6 each: 2 was skipped (a hole), 4 and 5 never came.
        for stream in 1..=1000 {
            assert_eq!(c.settle(stream, 6), (1, 2));
        }
        assert!(c.streams.is_empty());
        assert_eq!(c.settled.0.len(), 1, "one range: {:?}", c.settled);
        c.saw(500, 4);
        assert_eq!(c.tally.late, 1);
        c.saw(1001, 0);
        assert_eq!(c.tally.late, 1, "a new stream is not late");
    }

    #[test]
    fn ranges_merge() {
        let mut r = Ranges::default();
        for x in [5, 7, 6, 1, 2, 9] {
            r.insert(x);
        }
        assert_eq!(
            r.0.iter().map(|(&a, &b)| (a, b)).collect::<Vec<_>>(),
            [(1, 3), (5, 8), (9, 10)]
        );
        assert!(
            r.contains(6) && r.contains(9) && !r.contains(8) && !r.contains(0) && !r.contains(3)
        );
        r.insert(8);
        r.insert(3);
        r.insert(4);
        assert_eq!(r.0.len(), 1);
    }

    #[test]
    fn messages_carry_their_checks() {
        let data = Bytes::from_static(b"some data");
        let m = message(3, 9, data);
        assert_eq!(parse(&m), Some((3, 9, true)));
        let mut bad = m.clone();
        bad.data = Bytes::from_static(b"some dAta");
        assert_eq!(parse(&bad), Some((3, 9, false)));
        let a = ack(3, 9);
        assert_eq!(parse(&a).map(|p| (p.0, p.1)), Some((3, 9)));
        let empty = Message::new(
            MessageHeader::new(SOAK, 1, 1),
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
        );
        assert_eq!(parse(&empty), None);
    }

    #[test]
    fn memory_judged_by_halves_after_the_warm_up() {
        // Flat with in-flight noise: passes; a leak: caught; too short: not judged.
        let flat: Vec<(f64, u64)> = (0..300)
            .map(|t| (f64::from(t), 100 + (t as u64 * 7) % 20))
            .collect();
        let (h, g) = memory_growth(&flat, 120.0);
        assert!(h.is_some() && g.unwrap() <= 10.0, "{h:?} {g:?}");
        let leak: Vec<(f64, u64)> = (0..300).map(|t| (f64::from(t), 100 + t as u64)).collect();
        let (_, g) = memory_growth(&leak, 120.0);
        assert!(g.unwrap() > 10.0, "{g:?}");
        assert_eq!(memory_growth(&flat[..150], 120.0), (None, None));
    }

    #[test]
    fn sizes_stay_under_the_cap() {
        let mut r = Rng(42);
        let v: Vec<usize> = (0..10_000).map(|_| size(&mut r, 4 << 20)).collect();
        assert!(v.iter().all(|&s| s <= 4 << 20));
        assert!(v.iter().filter(|&&s| s < 4096).count() > 7000);
        assert!(v.iter().any(|&s| s > 256 << 10), "some large ones");
        let mut r = Rng(1);
        assert!((0..1000).all(|_| size(&mut r, 100) <= 100));
    }
}

//! Shared helpers for the messenger scenario tests over real loopback TCP
//! (`tests/messenger.rs`): test messages that carry their own identity, a recording
//! dispatcher, messenger set-up and teardown, and bounded waits.
//!
//! * **Messages** ([`data_msg`], [`Stamp`]): every test message carries, in its front, the
//!   stream it belongs to (one per sending connection), its sequence number in that stream,
//!   and the seed and length of its data segment (a slice of a shared pseudo-random corpus,
//!   or a generated pattern). A receiver compares the data byte for byte with what the seed
//!   names, and checks that each stream's sequence numbers arrive strictly in order — so
//!   loss, duplication, reordering and corruption are all visible to the receiver alone.
//! * **[`Recorder`]**: a dispatcher that logs every callback with the connection id, keeps
//!   each stream's received sequence numbers, optionally echoes data messages back (the echo
//!   is a message of the reply kind on the stream `stream | REPLY`), optionally takes messages
//!   on the fast path, and can be stalled (blocks in `ms_dispatch` until released).
//! * **[`NodeBuilder`] / [`Node`]**: a messenger with a recorder, bound to 127.0.0.1 (only
//!   loopback traffic), started; [`shutdown_all`] shuts down and waits, bounded.
//! * **Waits**: [`wait_for`] polls a condition and fails with the given description after a
//!   timeout; [`Watchdog`] aborts the test binary if a test hangs outright (a deadlock
//!   would otherwise stall the whole suite).
#![allow(dead_code)]
// A test driver: it reads the clock to bound its waits (clippy.toml bans
// `Instant::now` for the sans-IO core, not for drivers and tests).
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::{Message, MessageHeader, MsgType};
use msgr::proto::{Options, Policy, SendError};

// ---------------------------------------------------------------------------------------
// Test-wide plumbing
// ---------------------------------------------------------------------------------------

static GATE: RwLock<()> = RwLock::new(());

/// Runs alongside other shared tests.
pub(crate) fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs alone in the process (heavy tests, and tests that measure the process's memory).
pub(crate) fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// Logs to stderr when `RUST_LOG` is set (captured per test by the harness).
pub(crate) fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Aborts the process if the test it guards has not finished within `limit` — a deadlock
/// must fail the suite, not hang it.
pub(crate) struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn new(name: &str, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let name = name.to_string();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "WATCHDOG: test {name} still running after {limit:?} (deadlock?); aborting"
                );
                std::process::abort();
            }
        });
        Self {
            done: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a test holds for its duration: the gate and the watchdog.
pub(crate) struct TestGuard {
    _watchdog: Watchdog,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

/// Starts a test that may run in parallel with other shared tests.
pub(crate) fn begin(name: &str, limit: Duration) -> TestGuard {
    init_tracing();
    let g = shared();
    TestGuard {
        _watchdog: Watchdog::new(name, limit),
        _shared: Some(g),
        _exclusive: None,
    }
}

/// Starts a test that runs alone in the process.
pub(crate) fn begin_exclusive(name: &str, limit: Duration) -> TestGuard {
    init_tracing();
    let g = exclusive();
    TestGuard {
        _watchdog: Watchdog::new(name, limit),
        _shared: None,
        _exclusive: Some(g),
    }
}

/// Polls `cond` every 2 ms until it holds; panics with `what` (and `detail()`) after
/// `timeout`. Returns the time it took.
#[track_caller]
pub(crate) fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    wait_for_detail(what, timeout, &mut cond, String::new)
}

/// [`wait_for`] with a diagnostic printed on timeout.
#[track_caller]
pub(crate) fn wait_for_detail(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    detail: impl FnOnce() -> String,
) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond() {
            return t0.elapsed();
        }
        if t0.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                detail()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The process's resident set size in bytes (Linux `/proc/self/status`, `VmRSS`).
pub(crate) fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .expect("VmRSS value");
            return kb * 1024;
        }
    }
    panic!("no VmRSS in /proc/self/status");
}

/// The soft limit on open files (`/proc/self/limits`), if it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// A deterministic PRNG (SplitMix64): seeds, sizes, choices
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `pct` percent.
    pub(crate) fn percent(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------
// Test messages
// ---------------------------------------------------------------------------------------

/// Type code of test data messages (not a Ceph type: delivered raw).
pub(crate) const T_DATA: MsgType = MsgType(0x7e01);
/// Type code of echoes.
pub(crate) const T_REPLY: MsgType = MsgType(0x7e02);
/// Stream-id bit marking an echo stream.
pub(crate) const REPLY: u64 = 1 << 63;
const MAGIC: u32 = 0x6d74_6573; // "setm"
/// Bytes of the stamp at the start of a test message's front.
pub(crate) const STAMP_LEN: usize = 4 + 8 + 8 + 8 + 4;

/// What a test message says about itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp {
    /// The stream (one per sending connection; `| REPLY` for echoes).
    pub(crate) stream: u64,
    /// Position in the stream, from 0.
    pub(crate) seq: u64,
    /// The data segment is `pattern(seed, len)`.
    pub(crate) seed: u64,
    pub(crate) len: u32,
}

/// The data segment for `seed`: `len` bytes of a keyed pseudo-random pattern.
pub(crate) fn pattern(seed: u64, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    let mut i = 0u64;
    while b.len() + 8 <= len {
        b.put_u64_le(mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)));
        i += 1;
    }
    let last = mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes();
    let rest = len - b.len();
    b.put_slice(&last[..rest]);
    b.freeze()
}

/// Whether `data` is exactly `pattern(seed, data.len())`.
pub(crate) fn pattern_ok(seed: u64, data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(8);
    let mut i = 0u64;
    for c in chunks.by_ref() {
        let want = mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes();
        if c != want {
            return false;
        }
        i += 1;
    }
    let rest = chunks.remainder();
    let want = mix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes();
    rest == &want[..rest.len()]
}

/// The default data seed of message `seq` of `stream`.
pub(crate) fn seed_of(stream: u64, seq: u64) -> u64 {
    mix(stream.wrapping_mul(0x1000_0000_01b3) ^ seq)
}

/// Seeds with this bit set name a slice of the shared corpus instead of a generated pattern:
/// `CORPUS_SEED | buffer << 32 | offset`. Senders then pass slices of one allocation
/// (zero-copy, as Ceph's synthetic workload reuses its random buffers) and receivers compare
/// with `memcmp` — both cheap even for hundreds of MiB in a debug build.
pub(crate) const CORPUS_SEED: u64 = 1 << 63;
const CORPUS_BUFS: usize = 4;
/// Each corpus buffer: any slice of up to 4 MiB at any offset up to 4 MiB.
const CORPUS_LEN: usize = 8 << 20;
/// The largest data segment [`data_msg`] can carry.
pub(crate) const MAX_DATA: usize = 4 << 20;

fn corpus() -> &'static [Bytes] {
    static CORPUS: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        (0..CORPUS_BUFS)
            .map(|i| pattern(0xc0_7b05 + i as u64, CORPUS_LEN))
            .collect()
    })
}

/// The corpus slice a corpus seed names (`None` if out of range).
fn corpus_slice(seed: u64, len: usize) -> Option<Bytes> {
    let buf = ((seed >> 32) & 0x7fff_ffff) as usize;
    let off = (seed & 0xffff_ffff) as usize;
    let b = corpus().get(buf)?;
    (off + len <= b.len()).then(|| b.slice(off..off + len))
}

/// Data of `len` bytes (at most [`MAX_DATA`]) for message `seq` of `stream`: a slice of the
/// corpus at a position derived from both. Returns the seed that names it.
pub(crate) fn corpus_data(stream: u64, seq: u64, len: usize) -> (u64, Bytes) {
    assert!(len <= MAX_DATA, "test data of {len} bytes");
    let h = seed_of(stream, seq);
    let buf = (h % CORPUS_BUFS as u64) as usize;
    let off = ((h >> 8) as usize) % (CORPUS_LEN - MAX_DATA);
    let seed = CORPUS_SEED | (buf as u64) << 32 | off as u64;
    (seed, corpus_slice(seed, len).expect("in range"))
}

/// Whether `data` is what `seed` names.
pub(crate) fn data_ok(seed: u64, data: &[u8]) -> bool {
    if seed & CORPUS_SEED != 0 {
        corpus_slice(seed, data.len()).is_some_and(|want| want[..] == data[..])
    } else {
        pattern_ok(seed, data)
    }
}

fn stamp_front(s: &Stamp, extra_front: &[u8]) -> Bytes {
    let mut f = BytesMut::with_capacity(STAMP_LEN + extra_front.len());
    f.put_u32_le(MAGIC);
    f.put_u64_le(s.stream);
    f.put_u64_le(s.seq);
    f.put_u64_le(s.seed);
    f.put_u32_le(s.len);
    f.put_slice(extra_front);
    f.freeze()
}

/// A data message of `stream`/`seq` whose data segment is the given (pattern) bytes.
pub(crate) fn msg_with(ty: MsgType, stream: u64, seq: u64, seed: u64, data: Bytes) -> Message {
    let s = Stamp {
        stream,
        seq,
        seed,
        len: data.len() as u32,
    };
    Message::new(
        MessageHeader::new(ty, 1, 1),
        stamp_front(&s, &[]),
        Bytes::new(),
        data,
    )
    .with_tid(seq)
}

/// A data message of `len` data bytes (corpus data, zero-copy).
pub(crate) fn data_msg(stream: u64, seq: u64, len: usize) -> Message {
    let (seed, data) = corpus_data(stream, seq, len);
    msg_with(T_DATA, stream, seq, seed, data)
}

/// Reads and checks a test message: the stamp, and the data against its pattern.
pub(crate) fn verify(m: &Message) -> Result<Stamp, String> {
    if m.front.len() < STAMP_LEN {
        return Err(format!(
            "type {:#x}: front of {} bytes has no stamp",
            m.ty().0,
            m.front.len()
        ));
    }
    let mut f = &m.front[..STAMP_LEN];
    if f.get_u32_le() != MAGIC {
        return Err(format!("type {:#x}: bad stamp magic", m.ty().0));
    }
    let s = Stamp {
        stream: f.get_u64_le(),
        seq: f.get_u64_le(),
        seed: f.get_u64_le(),
        len: f.get_u32_le(),
    };
    if m.data.len() != s.len as usize {
        return Err(format!(
            "stream {:#x} seq {}: data of {} bytes, stamp says {}",
            s.stream,
            s.seq,
            m.data.len(),
            s.len
        ));
    }
    if !data_ok(s.seed, &m.data) {
        return Err(format!(
            "stream {:#x} seq {}: data bytes differ from what was sent",
            s.stream, s.seq
        ));
    }
    Ok(s)
}

/// Sends, retrying while the transport pushes back (`QueueFull`) for up to 20 s. Returns
/// false if the connection is closed.
pub(crate) fn send_retry(conn: &ConnectionRef, mut m: Message) -> bool {
    let t0 = Instant::now();
    loop {
        match conn.send_message(m) {
            Ok(()) => return true,
            Err(SendError::Closed(_)) => return false,
            Err(SendError::QueueFull(back)) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "send queue full for 20 s on {conn:?}"
                );
                m = *back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send failed: {e}"),
        }
    }
}

/// A sending side of one connection: its stream id and the next sequence number.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) conn: ConnectionRef,
    pub(crate) id: u64,
    pub(crate) next: u64,
}

static NEXT_STREAM: AtomicU64 = AtomicU64::new(1);

impl Stream {
    pub(crate) fn new(conn: ConnectionRef) -> Self {
        Self {
            conn,
            id: NEXT_STREAM.fetch_add(1, Ordering::Relaxed) << 8,
            next: 0,
        }
    }

    /// Sends the next message with `len` data bytes; false if the connection is closed.
    pub(crate) fn send(&mut self, len: usize) -> bool {
        let m = data_msg(self.id, self.next, len);
        let ok = send_retry(&self.conn, m);
        if ok {
            self.next += 1;
        }
        ok
    }
}

// ---------------------------------------------------------------------------------------
// The recording dispatcher
// ---------------------------------------------------------------------------------------

/// One dispatcher callback, with the connection id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    Connect(u64),
    Accept(u64),
    FastConnect(u64),
    FastAccept(u64),
    Reset(u64),
    RemoteReset(u64),
    Refused(u64),
    Msg {
        conn: u64,
        ty: u16,
        stream: u64,
        seq: u64,
        len: usize,
    },
}

impl Ev {
    pub(crate) fn conn(&self) -> u64 {
        match *self {
            Self::Connect(c)
            | Self::Accept(c)
            | Self::FastConnect(c)
            | Self::FastAccept(c)
            | Self::Reset(c)
            | Self::RemoteReset(c)
            | Self::Refused(c) => c,
            Self::Msg { conn, .. } => conn,
        }
    }
}

/// What one stream delivered.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamLog {
    /// Sequence numbers in arrival order.
    pub(crate) seqs: Vec<u64>,
    /// The receiving connection of each message (ids).
    pub(crate) conns: Vec<u64>,
    pub(crate) bytes: u64,
}

impl StreamLog {
    /// `Ok` if exactly `0..n` arrived, in order.
    pub(crate) fn exactly(&self, n: u64) -> Result<(), String> {
        if self.seqs.len() as u64 == n && self.seqs.iter().copied().eq(0..n) {
            return Ok(());
        }
        let dups = self.seqs.len() - {
            let mut s = self.seqs.clone();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        let reordered = self.seqs.windows(2).filter(|w| w[1] <= w[0]).count();
        let missing: Vec<u64> = (0..n).filter(|i| !self.seqs.contains(i)).take(10).collect();
        let first_bad = self
            .seqs
            .iter()
            .enumerate()
            .position(|(i, &s)| s != i as u64)
            .unwrap_or(self.seqs.len());
        let lo = first_bad.saturating_sub(3);
        let hi = (first_bad + 5).min(self.seqs.len());
        Err(format!(
            "expected 0..{n}, got {} messages: {dups} duplicated, {reordered} out of order, \
             missing (first 10) {missing:?}, last {:?}; around index {first_bad}: seqs {:?} \
             on conns {:?}",
            self.seqs.len(),
            self.seqs.last(),
            &self.seqs[lo..hi],
            &self.conns[lo..hi],
        ))
    }

    /// `Ok` if sequence numbers only increase (no duplicate, no reordering; gaps allowed).
    pub(crate) fn increasing(&self) -> Result<(), String> {
        if self.seqs.windows(2).all(|w| w[0] < w[1]) {
            Ok(())
        } else {
            Err(format!(
                "duplicated or reordered: {:?} on conns {:?}",
                self.seqs, self.conns
            ))
        }
    }

    /// `Ok` if what arrived is a strictly increasing prefix `0..k` (lossy tail allowed).
    pub(crate) fn prefix(&self) -> Result<(), String> {
        if self.seqs.iter().copied().eq(0..self.seqs.len() as u64) {
            Ok(())
        } else {
            Err(format!(
                "not an in-order prefix: {:?} on conns {:?}",
                self.seqs, self.conns
            ))
        }
    }
}

/// Blocks `ms_dispatch` while closed.
#[derive(Default)]
pub(crate) struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
    /// Callers currently held.
    pub(crate) waiting: AtomicU64,
}

impl Gate {
    pub(crate) fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }

    pub(crate) fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.cv.notify_all();
    }

    fn pass(&self) {
        let mut c = self.closed.lock().unwrap();
        if *c {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            while *c {
                // Bounded: a test that forgets to open the gate must not hang the suite.
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "dispatch gate closed for 60 s"
                );
                c = self
                    .cv
                    .wait_timeout(c, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

type Hook = Box<dyn Fn(&Incoming) + Send + Sync>;

/// The recording dispatcher (see the module docs).
pub(crate) struct Recorder {
    pub(crate) name: String,
    log: Mutex<Vec<Ev>>,
    conns: Mutex<HashMap<u64, ConnectionRef>>,
    streams: Mutex<BTreeMap<u64, StreamLog>>,
    errors: Mutex<Vec<String>>,
    /// Echo data messages back on their connection.
    pub(crate) echo: AtomicBool,
    /// Claim test messages on the fast path (the network thread).
    pub(crate) fast: bool,
    /// Stalls `ms_dispatch` while closed.
    pub(crate) gate: Gate,
    /// Called for each test message after it is recorded (before the echo).
    hook: Mutex<Option<Arc<Hook>>>,
    pub(crate) msgs: AtomicU64,
    /// Messages that are not test messages.
    pub(crate) others: AtomicU64,
}

impl Recorder {
    pub(crate) fn new(name: &str, echo: bool, fast: bool) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            log: Mutex::default(),
            conns: Mutex::default(),
            streams: Mutex::default(),
            errors: Mutex::default(),
            echo: AtomicBool::new(echo),
            fast,
            gate: Gate::default(),
            hook: Mutex::new(None),
            msgs: AtomicU64::new(0),
            others: AtomicU64::new(0),
        })
    }

    pub(crate) fn set_hook(&self, f: impl Fn(&Incoming) + Send + Sync + 'static) {
        *self.hook.lock().unwrap() = Some(Arc::new(Box::new(f)));
    }

    fn push(&self, ev: Ev, con: &ConnectionRef) {
        self.conns.lock().unwrap().insert(con.id(), con.clone());
        self.log.lock().unwrap().push(ev);
    }

    /// A snapshot of the callback log.
    pub(crate) fn log(&self) -> Vec<Ev> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|e| f(e)).count()
    }

    pub(crate) fn has(&self, ev: &Ev) -> bool {
        self.log.lock().unwrap().contains(ev)
    }

    /// A connection this recorder has seen, by id.
    pub(crate) fn conn(&self, id: u64) -> Option<ConnectionRef> {
        self.conns.lock().unwrap().get(&id).cloned()
    }

    /// Connections accepted so far (ids, in order).
    pub(crate) fn accepted(&self) -> Vec<u64> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Ev::Accept(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn streams(&self) -> MutexGuard<'_, BTreeMap<u64, StreamLog>> {
        self.streams.lock().unwrap()
    }

    pub(crate) fn stream(&self, id: u64) -> StreamLog {
        self.streams().get(&id).cloned().unwrap_or_default()
    }

    /// How many messages of `stream` arrived.
    pub(crate) fn got(&self, stream: u64) -> usize {
        self.streams().get(&stream).map_or(0, |s| s.seqs.len())
    }

    /// Integrity errors seen (bad stamps, corrupted data, out-of-order or duplicate
    /// sequence numbers within a stream).
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    #[track_caller]
    pub(crate) fn assert_clean(&self) {
        let e = self.errors();
        assert!(e.is_empty(), "{}: integrity errors: {e:#?}", self.name);
    }

    fn record(&self, m: &Incoming) {
        self.msgs.fetch_add(1, Ordering::Relaxed);
        let conn = m.conn.id();
        match verify(&m.msg) {
            Ok(s) => {
                let mut streams = self.streams.lock().unwrap();
                let log = streams.entry(s.stream).or_default();
                if let Some(&last) = log.seqs.last() {
                    if s.seq <= last {
                        self.errors.lock().unwrap().push(format!(
                            "{}: stream {:#x}: seq {} after {} (duplicate or reordered) on conn {conn}",
                            self.name, s.stream, s.seq, last
                        ));
                    }
                }
                log.seqs.push(s.seq);
                log.conns.push(conn);
                log.bytes += m.msg.data.len() as u64;
                drop(streams);
                self.push(
                    Ev::Msg {
                        conn,
                        ty: m.msg.ty().0,
                        stream: s.stream,
                        seq: s.seq,
                        len: m.msg.data.len(),
                    },
                    &m.conn,
                );
            }
            Err(e) => {
                self.errors
                    .lock()
                    .unwrap()
                    .push(format!("{}: conn {conn}: {e}", self.name));
                self.push(
                    Ev::Msg {
                        conn,
                        ty: m.msg.ty().0,
                        stream: u64::MAX,
                        seq: u64::MAX,
                        len: m.msg.data.len(),
                    },
                    &m.conn,
                );
            }
        }
    }

    fn handle(&self, m: &Incoming) {
        self.record(m);
        let hook = self.hook.lock().unwrap().clone();
        if let Some(h) = hook {
            h(m);
        }
        if self.echo.load(Ordering::Relaxed) && m.msg.ty() == T_DATA {
            if let Ok(s) = verify(&m.msg) {
                let r = msg_with(T_REPLY, s.stream | REPLY, s.seq, s.seed, m.msg.data.clone());
                // A closed connection drops the echo (the peer's session is gone).
                let _ = send_retry(&m.conn, r);
            }
        }
    }

    fn is_test_msg(m: &Message) -> bool {
        m.ty() == T_DATA || m.ty() == T_REPLY
    }
}

impl Dispatcher for Recorder {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        self.fast
    }
    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        self.fast && Self::is_test_msg(m)
    }
    fn ms_fast_dispatch(&self, m: Incoming) {
        self.handle(&m);
    }
    fn ms_dispatch(&self, m: &Incoming) -> bool {
        if !Self::is_test_msg(&m.msg) {
            // Other traffic (the stress test's MCommands at priority 200) is only counted.
            self.others.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.gate.pass();
        self.handle(m);
        true
    }
    fn ms_handle_connect(&self, con: &ConnectionRef) {
        self.push(Ev::Connect(con.id()), con);
    }
    fn ms_handle_fast_connect(&self, con: &ConnectionRef) {
        self.push(Ev::FastConnect(con.id()), con);
    }
    fn ms_handle_accept(&self, con: &ConnectionRef) {
        self.push(Ev::Accept(con.id()), con);
    }
    fn ms_handle_fast_accept(&self, con: &ConnectionRef) {
        self.push(Ev::FastAccept(con.id()), con);
    }
    fn ms_handle_reset(&self, con: &ConnectionRef) -> bool {
        self.push(Ev::Reset(con.id()), con);
        true
    }
    fn ms_handle_remote_reset(&self, con: &ConnectionRef) {
        self.push(Ev::RemoteReset(con.id()), con);
    }
    fn ms_handle_refused(&self, con: &ConnectionRef) -> bool {
        self.push(Ev::Refused(con.id()), con);
        true
    }
}

/// Collects messages of some types, and optionally sends each back verbatim on its
/// connection (for byte-exact round trips of whole messages: front, middle and data).
pub(crate) struct Collector {
    types: Vec<MsgType>,
    echo: bool,
    got: Mutex<Vec<Message>>,
}

impl Collector {
    pub(crate) fn new(types: &[MsgType], echo: bool) -> Arc<Self> {
        Arc::new(Self {
            types: types.to_vec(),
            echo,
            got: Mutex::default(),
        })
    }

    pub(crate) fn got(&self) -> Vec<Message> {
        self.got.lock().unwrap().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

impl Dispatcher for Collector {
    fn ms_dispatch(&self, m: &Incoming) -> bool {
        if !self.types.contains(&m.msg.ty()) {
            return false;
        }
        self.got.lock().unwrap().push(m.msg.clone());
        if self.echo {
            let _ = send_retry(&m.conn, m.msg.clone());
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// Messengers
// ---------------------------------------------------------------------------------------

static NONCE: AtomicU32 = AtomicU32::new(0);

fn next_nonce() -> u32 {
    // Distinct per messenger in this process, and unlikely to match another process's.
    (std::process::id() << 12) ^ (NONCE.fetch_add(1, Ordering::Relaxed) + 1)
}

/// A started messenger with its recorder.
pub(crate) struct Node {
    pub(crate) m: Messenger,
    pub(crate) rec: Arc<Recorder>,
    /// Our address (bound, or blank until learned when not bound).
    pub(crate) addr: EntityAddr,
    pub(crate) ty: EntityType,
}

impl Node {
    pub(crate) fn connect(&self, to: &Self) -> ConnectionRef {
        self.m.connect_to(to.addr, to.ty)
    }

    /// A counter from `perf_dump()["msgr"]`, by path ("faults.eof", "accepts"...).
    pub(crate) fn perf(&self, path: &str) -> u64 {
        let d = self.m.perf_dump();
        let mut v = &d["msgr"];
        for p in path.split('.') {
            v = &v[p];
        }
        v.as_u64()
            .or_else(|| v.as_i64().map(|x| x.max(0) as u64))
            .unwrap_or_else(|| panic!("no counter {path} in {d}"))
    }

    /// Every connection with its phase and backlog, for failure messages.
    pub(crate) fn describe(&self) -> String {
        self.m
            .connections()
            .iter()
            .map(|c| {
                format!(
                    "#{} {:?} backlog {:?} stats {:?}",
                    c.id(),
                    c.phase(),
                    c.backlog(),
                    c.stats()
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }

    /// Open connections of this messenger.
    pub(crate) fn open_conns(&self) -> Vec<ConnectionRef> {
        self.m
            .connections()
            .into_iter()
            .filter(|c| c.is_connected())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A test that fails with the dispatcher stalled must not hang its teardown.
        self.rec.gate.open();
    }
}

/// Builds a [`Node`].
pub(crate) struct NodeBuilder {
    kind: TransportKind,
    name: EntityName,
    default_policy: Policy,
    policies: Vec<(EntityType, Policy)>,
    options: Options,
    bind: bool,
    inject: u64,
    dispatch_throttle: Option<u64>,
    workers: usize,
    echo: bool,
    fast: bool,
    label: String,
    head: Vec<Arc<dyn Dispatcher>>,
    /// The dpdk transport's network (default: a port of the process-wide switch).
    userspace: Option<msgr::messenger::UserspaceConfig>,
    dispatch_panic: msgr::messenger::DispatchPanic,
}

impl NodeBuilder {
    pub(crate) fn new(kind: TransportKind, ty: EntityType, num: i64) -> Self {
        // Ceph's test_msgr runs with ms_max_backoff=1.
        let options = Options {
            max_backoff: Duration::from_secs(1),
            ..Options::default()
        };
        Self {
            kind,
            name: EntityName::new(ty, num),
            default_policy: Policy::default(),
            policies: Vec::new(),
            options,
            bind: true,
            inject: 0,
            dispatch_throttle: None,
            workers: 2,
            echo: false,
            fast: false,
            label: format!("{}.{num}", ty.name().unwrap_or("?")),
            head: Vec::new(),
            userspace: None,
            dispatch_panic: msgr::messenger::DispatchPanic::default(),
        }
    }

    /// A server (OSD) that echoes.
    pub(crate) fn server(kind: TransportKind, policy: Policy) -> Self {
        Self::new(kind, EntityType::OSD, 0)
            .policy(policy)
            .echo(true)
    }

    /// An unbound client.
    pub(crate) fn client(kind: TransportKind, policy: Policy) -> Self {
        Self::new(kind, EntityType::CLIENT, -1)
            .policy(policy)
            .bind(false)
    }

    pub(crate) fn policy(mut self, p: Policy) -> Self {
        self.default_policy = p;
        self
    }
    pub(crate) fn policy_for(mut self, t: EntityType, p: Policy) -> Self {
        self.policies.push((t, p));
        self
    }
    pub(crate) fn options(mut self, f: impl FnOnce(&mut Options)) -> Self {
        f(&mut self.options);
        self
    }
    pub(crate) fn bind(mut self, b: bool) -> Self {
        self.bind = b;
        self
    }
    pub(crate) fn inject(mut self, every: u64) -> Self {
        self.inject = every;
        self
    }
    pub(crate) fn dispatch_throttle(mut self, bytes: u64) -> Self {
        self.dispatch_throttle = Some(bytes);
        self
    }
    pub(crate) fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    pub(crate) fn echo(mut self, e: bool) -> Self {
        self.echo = e;
        self
    }
    pub(crate) fn fast(mut self, f: bool) -> Self {
        self.fast = f;
        self
    }
    pub(crate) fn label(mut self, l: &str) -> Self {
        self.label = l.to_string();
        self
    }
    /// Adds a dispatcher ahead of the recorder.
    pub(crate) fn head(mut self, d: Arc<dyn Dispatcher>) -> Self {
        self.head.push(d);
        self
    }
    /// The dpdk transport on this network instead of the process-wide switch (a test that
    /// injects faults on its links brings a switch of its own).
    pub(crate) fn userspace(mut self, cfg: msgr::messenger::UserspaceConfig) -> Self {
        self.userspace = Some(cfg);
        self
    }

    pub(crate) fn dispatch_panic(mut self, p: msgr::messenger::DispatchPanic) -> Self {
        self.dispatch_panic = p;
        self
    }

    pub(crate) fn start(self) -> Node {
        let mut b = Messenger::builder(self.name, next_nonce())
            .dispatch_panic(self.dispatch_panic)
            .transport(self.kind)
            .workers(self.workers)
            .options(self.options)
            .inject_socket_failures(self.inject);
        if self.kind == TransportKind::Dpdk {
            b = b.userspace(self.userspace.unwrap_or_else(switch_node));
        }
        if let Some(t) = self.dispatch_throttle {
            b = b.dispatch_throttle_bytes(t);
        }
        let m = b.build();
        m.set_default_policy(self.default_policy);
        for (t, p) in self.policies {
            m.set_policy(t, p);
        }
        let rec = Recorder::new(&self.label, self.echo, self.fast);
        for d in self.head {
            m.add_dispatcher_head(d);
        }
        m.add_dispatcher_tail(rec.clone());
        if self.bind {
            let any = if self.kind == TransportKind::Dpdk {
                "0.0.0.0:0" // the stack's own address
            } else {
                "127.0.0.1:0"
            };
            m.bind(any.parse().unwrap()).expect("bind");
        }
        m.start().expect("start");
        let addr = m.my_addr();
        Node {
            m,
            rec,
            addr,
            ty: self.name.ty,
        }
    }
}

/// Shuts every node down, then waits for each; fails if that takes over 15 s.
#[track_caller]
pub(crate) fn shutdown_all(nodes: &[&Node]) {
    let t0 = Instant::now();
    for n in nodes {
        n.m.shutdown();
    }
    for n in nodes {
        n.m.wait();
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
}

/// The in-process network of the dpdk transport's tests: one in-memory Ethernet switch,
/// a port and an address (10.66.0.0/16) per node.
fn switch_node() -> msgr::messenger::UserspaceConfig {
    use msgr::messenger::{Backend, UserspaceConfig};
    use std::sync::OnceLock;
    static SWITCH: OnceLock<stack::memlink::Switch> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let sw = SWITCH.get_or_init(|| stack::memlink::Switch::new(1 << 16));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ip = std::net::Ipv4Addr::new(10, 66, (n >> 8) as u8, n as u8);
    UserspaceConfig::new(Backend::Switch(sw.port()), ip, 16)
}

/// The dpdk transport's instances of scenario functions (on the in-memory switch, see
/// `switch_node`): `dpdk_transport! { scenario => scenario_dpdk; }`.
#[macro_export]
macro_rules! dpdk_transport {
    ($($f:ident => $name:ident;)*) => {
        $(
            #[test]
            fn $name() {
                $f(msgr::messenger::TransportKind::Dpdk)
            }
        )*
    };
}

/// Instantiates scenario functions taking a [`TransportKind`] as one test per transport:
/// `both_transports! { scenario => scenario_posix, scenario_simple; }`.
#[macro_export]
macro_rules! both_transports {
    ($($f:ident => $posix:ident, $simple:ident;)*) => {
        $(
            #[test]
            fn $posix() {
                $f(msgr::messenger::TransportKind::Posix)
            }
            #[test]
            fn $simple() {
                $f(msgr::messenger::TransportKind::Simple)
            }
        )*
    };
}

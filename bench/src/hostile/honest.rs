//! The honest client of `bench hostile`: what the daemon must keep serving while it is
//! attacked.
//!
//! Two kinds of honest traffic run side by side, on one client messenger (posix, one
//! worker, lossy as Ceph's clients are):
//! - a **steady session**: MPing round trips one at a time, a fixed pause after each
//!   reply, every round trip timed into the histogram of the phase it started in (a ping
//!   unanswered within the timeout is counted as lost);
//! - **newcomers**: every so often a new client (another name and nonce) opens a session,
//!   sends one ping and hangs up, retrying up to [`NEWCOMER_TRIES`] times as a real client
//!   would after a reset: a daemon that serves its old sessions but lets nobody new in
//!   fails this.
//!
//! Replies are told apart by tid: steady pings count up from 1, newcomers' from
//! [`NEWCOMER_TID`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{Dispatcher, Incoming, Messenger, TransportKind};
use msgr::msg::{MPing, Message, MsgType, TypedMessage};
use msgr::proto::Policy;

/// Newcomers' pings carry tids from here up.
const NEWCOMER_TID: u64 = 1 << 40;
/// Sessions a newcomer opens before it counts as turned away.
pub(crate) const NEWCOMER_TRIES: u32 = 3;
/// Bytes in each ping's data segment (echoed by the daemon).
const PING_BYTES: usize = 64;

/// How the honest client behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Pause after each steady reply.
    pub(crate) interval: Duration,
    /// A ping (or a newcomer's session and ping) unanswered this long is lost.
    pub(crate) timeout: Duration,
    /// Time between newcomers.
    pub(crate) newcomer_every: Duration,
}

/// What the honest client saw in one phase.
pub(crate) struct PhaseStats {
    /// Round-trip times of the steady session, nanoseconds.
    pub(crate) hist: Histogram<u64>,
    /// Steady pings with no reply within the timeout.
    pub(crate) lost: u64,
    /// Newcomers that got their reply.
    pub(crate) newcomers_ok: u64,
    /// Newcomers turned away (every try failed).
    pub(crate) newcomers_failed: u64,
    /// Newcomer sessions that failed (a newcomer may need more than one).
    pub(crate) newcomer_tries_failed: u64,
    /// The slowest successful newcomer: session set up and first reply, nanoseconds.
    pub(crate) newcomer_max_ns: u64,
}

impl PhaseStats {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            lost: 0,
            newcomers_ok: 0,
            newcomers_failed: 0,
            newcomer_tries_failed: 0,
            newcomer_max_ns: 0,
        }
    }

    /// `q`-quantile of the round trips in microseconds (NaN when there were none).
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

/// One reply awaited by one thread.
#[derive(Default)]
struct Slot {
    want: Mutex<Option<u64>>,
    cv: Condvar,
}

impl Slot {
    fn arm(&self, tid: u64) {
        *self.want.lock().unwrap_or_else(|e| e.into_inner()) = Some(tid);
    }

    fn arrived(&self, tid: u64) {
        let mut w = self.want.lock().unwrap_or_else(|e| e.into_inner());
        if *w == Some(tid) {
            *w = None;
            self.cv.notify_all();
        }
    }

    /// Whether the armed reply came within `timeout` (disarmed either way).
    fn wait(&self, timeout: Duration) -> bool {
        let w = self.want.lock().unwrap_or_else(|e| e.into_inner());
        let (mut w, _) = self
            .cv
            .wait_timeout_while(w, timeout, |w| w.is_some())
            .unwrap_or_else(|e| e.into_inner());
        w.take().is_none()
    }
}

/// State shared by the client's threads and its dispatcher.
struct Shared {
    steady: Slot,
    newcomer: Slot,
    /// Index of the phase being recorded.
    phase: AtomicUsize,
    stats: Mutex<Vec<PhaseStats>>,
    stop: AtomicBool,
}

impl Shared {
    fn record(&self, f: impl FnOnce(&mut PhaseStats)) {
        let i = self.phase.load(Ordering::Acquire);
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = st.get_mut(i) {
            f(p);
        }
    }
}

/// Routes ping replies to the thread waiting for them (on the network thread).
struct Replies(Arc<Shared>);

impl Dispatcher for Replies {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }

    fn ms_can_fast_dispatch(&self, m: &Message) -> bool {
        m.ty() == MsgType::PING
    }

    fn ms_fast_dispatch(&self, m: Incoming) {
        let tid = m.msg.header.tid;
        if tid >= NEWCOMER_TID {
            self.0.newcomer.arrived(tid);
        } else {
            self.0.steady.arrived(tid);
        }
    }
}

/// The running honest client.
pub(crate) struct Honest {
    msgr: Arc<Messenger>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn ping(tid: u64, data: &Bytes, features: u64) -> Message {
    MPing {
        payload: None,
        data: data.clone(),
    }
    .to_message(features)
    .with_tid(tid)
}

impl Honest {
    /// Starts the client against `addr` with `phases` phases to record (phase 0 first);
    /// returns once the steady session answered a first ping.
    pub(crate) fn start(addr: EntityAddr, phases: usize, pace: Pace) -> Result<Self, String> {
        let nonce = std::process::id().wrapping_mul(2_654_435_761) | 1;
        let msgr = Arc::new(
            Messenger::builder(EntityName::new(EntityType::CLIENT, 4242), nonce)
                .transport(TransportKind::Posix)
                .workers(1)
                .build(),
        );
        msgr.set_default_policy(Policy::lossy_client(0));
        let shared = Arc::new(Shared {
            steady: Slot::default(),
            newcomer: Slot::default(),
            phase: AtomicUsize::new(0),
            stats: Mutex::new((0..phases.max(1)).map(|_| PhaseStats::new()).collect()),
            stop: AtomicBool::new(false),
        });
        msgr.add_dispatcher_tail(Arc::new(Replies(Arc::clone(&shared))));
        msgr.start().map_err(|e| format!("honest client: {e}"))?;
        let data = Bytes::from(vec![0x68; PING_BYTES]);
        // The first round trip opens the session: not measured, but it must come.
        let conn = msgr.connect_to(addr, EntityType::OSD);
        shared.steady.arm(0);
        conn.send_message(ping(0, &data, conn.features()))
            .map_err(|e| format!("honest client: {e}"))?;
        if !shared.steady.wait(Duration::from_secs(20)) {
            msgr.shutdown();
            return Err(format!("honest client: no answer from {addr} within 20 s"));
        }
        let mut threads = Vec::new();
        {
            let (msgr, shared, data) = (Arc::clone(&msgr), Arc::clone(&shared), data.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("honest-steady".into())
                    .spawn(move || steady(&msgr, addr, &shared, &data, pace))
                    .map_err(|e| e.to_string())?,
            );
        }
        {
            let (msgr, shared) = (Arc::clone(&msgr), Arc::clone(&shared));
            threads.push(
                std::thread::Builder::new()
                    .name("honest-newcomers".into())
                    .spawn(move || newcomers(&msgr, addr, &shared, &data, pace, nonce))
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Self {
            msgr,
            shared,
            threads,
        })
    }

    /// Records from now on into phase `i`.
    pub(crate) fn set_phase(&self, i: usize) {
        self.shared.phase.store(i, Ordering::Release);
    }

    /// Stops the client; what it saw, by phase.
    pub(crate) fn finish(mut self) -> Vec<PhaseStats> {
        self.shared.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.msgr.shutdown();
        self.msgr.wait();
        std::mem::take(&mut *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The steady session: one ping at a time until stopped.
fn steady(msgr: &Messenger, addr: EntityAddr, sh: &Shared, data: &Bytes, pace: Pace) {
    let mut tid = 0u64;
    while !sh.stop.load(Ordering::Acquire) {
        tid += 1;
        // The registered session, or a new one if the lossy session was reset.
        let conn = msgr.connect_to(addr, EntityType::OSD);
        let phase = sh.phase.load(Ordering::Acquire);
        sh.steady.arm(tid);
        let t0 = Instant::now();
        let ok = conn.send_message(ping(tid, data, conn.features())).is_ok()
            && sh.steady.wait(pace.timeout);
        let rtt = t0.elapsed();
        // Counted in the phase the ping started in (a phase change mid-flight is rare).
        let mut st = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = st.get_mut(phase) {
            if ok {
                let _ = p.hist.record(rtt.as_nanos().max(1) as u64);
            } else {
                p.lost += 1;
            }
        }
        drop(st);
        std::thread::sleep(pace.interval);
    }
}

/// Newcomers: a new client every `pace.newcomer_every` until stopped.
fn newcomers(
    msgr: &Messenger,
    addr: EntityAddr,
    sh: &Shared,
    data: &Bytes,
    pace: Pace,
    nonce: u32,
) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut next_at = Instant::now();
    while !sh.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next_at {
            std::thread::sleep((next_at - now).min(Duration::from_millis(50)));
            continue;
        }
        next_at = now + pace.newcomer_every;
        let mut failed_tries = 0;
        let mut took = None;
        for _ in 0..NEWCOMER_TRIES {
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = EntityName::new(EntityType::CLIENT, 10_000 + n as i64);
            let conn = msgr.connect_as(
                addr,
                EntityType::OSD,
                name,
                nonce.wrapping_add(1 + n as u32),
            );
            let tid = NEWCOMER_TID + n;
            sh.newcomer.arm(tid);
            let t0 = Instant::now();
            let ok = conn.send_message(ping(tid, data, conn.features())).is_ok()
                && sh.newcomer.wait(pace.timeout);
            conn.mark_down();
            if ok {
                took = Some(t0.elapsed());
                break;
            }
            failed_tries += 1;
        }
        sh.record(|p| {
            p.newcomer_tries_failed += failed_tries;
            match took {
                Some(t) => {
                    p.newcomers_ok += 1;
                    p.newcomer_max_ns = p.newcomer_max_ns.max(t.as_nanos() as u64);
                }
                None => p.newcomers_failed += 1,
            }
        });
    }
}

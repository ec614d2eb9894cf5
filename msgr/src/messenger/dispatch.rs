//! Dispatchers and the dispatch queue (docs/ceph-msgr-wire.md §4).
//!
//! A received message first goes to every dispatcher's `ms_fast_preprocess`; if any
//! dispatcher claims it (`ms_can_fast_dispatch`), the first that does gets it through
//! `ms_fast_dispatch` **on the thread that read it** (a posix worker, a simple reader
//! thread). Otherwise it enters the [`DispatchQueue`], served by one dispatch thread that
//! offers it to `ms_dispatch` of each dispatcher in chain order until one takes it.
//!
//! Connection events (connect, accept, reset, remote reset, refused) travel through the same
//! queue, so each reaches the dispatchers in order with the queued messages of its
//! connection. Ordering rule of the queue: **per connection, strictly FIFO** (messages and
//! events); **across connections, the highest-priority head first**, round-robin among
//! connections whose heads share a priority. (Ceph's PrioritizedQueue also reorders one
//! connection's messages by priority; the sender's out-queue already orders by priority, and
//! keeping a connection FIFO is what makes its events land between the right messages.)
//!
//! The queue's byte budget (`ms_dispatch_throttle_bytes`) is the engine's dispatch throttle:
//! a message holds its share until its [`Incoming`] is dropped, which is after dispatch.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use tracing::{debug, error};

use super::conn::{ConnShared, ConnectionRef};
use super::idmap::IdMap;
use crate::msg::{priority, Message};
use crate::proto::ThrottleGuard;

/// A received message, with the connection it came on. Dropping it releases the throttle
/// budget it holds.
#[derive(Debug)]
pub struct Incoming {
    /// The message.
    pub msg: Message,
    /// The connection it arrived on (reply with `conn.send_message`).
    pub conn: ConnectionRef,
    /// The session's negotiated features when it arrived (encode replies with these).
    pub features: u64,
    pub(crate) _throttle: Option<ThrottleGuard>,
}

/// The callbacks a messenger delivers to (Ceph's `Dispatcher`). Every method has a default
/// that declines or ignores, so a dispatcher implements only what it handles.
///
/// Fast callbacks run on network threads and must not block; the others run on the dispatch
/// thread, one at a time, in queue order.
pub trait Dispatcher: Send + Sync {
    /// Whether this dispatcher may ever fast-dispatch (decided once, at registration).
    fn ms_can_fast_dispatch_any(&self) -> bool {
        false
    }
    /// Whether `m` should be fast-dispatched to this dispatcher. Must depend on the message
    /// only, not on state: it may be asked more than once.
    fn ms_can_fast_dispatch(&self, _m: &Message) -> bool {
        false
    }
    /// Handles a claimed message on the network thread that read it.
    fn ms_fast_dispatch(&self, _m: Incoming) {}
    /// Sees every message before the fast/slow decision (lock-free work only).
    fn ms_fast_preprocess(&self, _m: &Message) {}
    /// Handles a queued message on the dispatch thread. `true` if consumed.
    fn ms_dispatch(&self, _m: &Incoming) -> bool {
        false
    }
    /// An outgoing session is (re)established (queued, in order).
    fn ms_handle_connect(&self, _con: &ConnectionRef) {}
    /// Same, synchronously on the network thread, before any message of the session.
    fn ms_handle_fast_connect(&self, _con: &ConnectionRef) {}
    /// An incoming session was accepted (queued, in order).
    fn ms_handle_accept(&self, _con: &ConnectionRef) {}
    /// Same, synchronously on the network thread.
    fn ms_handle_fast_accept(&self, _con: &ConnectionRef) {}
    /// A lossy session failed or was replaced: its queued messages are gone. `true` if
    /// handled (the next dispatchers are then not asked).
    fn ms_handle_reset(&self, _con: &ConnectionRef) -> bool {
        false
    }
    /// The peer reset the session (it restarted, or told us to): delivered to all.
    fn ms_handle_remote_reset(&self, _con: &ConnectionRef) {}
    /// An outgoing connect was refused. `true` if handled.
    fn ms_handle_refused(&self, _con: &ConnectionRef) -> bool {
        false
    }
}

/// A connection event, queued in order with messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ConnEvent {
    Connect,
    Accept,
    Reset,
    RemoteReset,
    Refused,
}

/// What a panic in a dispatcher callback does (`MessengerBuilder::dispatch_panic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DispatchPanic {
    /// The panic is caught and logged, and the connection whose message or event it was is
    /// marked down: its peer sees the session end (a lossless peer reconnects and finds
    /// it reset), every other session carries on. Counted as `dispatch_panics`.
    #[default]
    Contain,
    /// The panic is logged with the connection it happened on, then the process aborts:
    /// for a daemon whose supervisor restarts it (Ceph asserts the same way).
    Abort,
}

/// The dispatcher chain (`add_dispatcher_head` / `add_dispatcher_tail`).
#[derive(Default)]
pub(crate) struct Dispatchers {
    all: RwLock<Vec<Arc<dyn Dispatcher>>>,
    fast: RwLock<Vec<Arc<dyn Dispatcher>>>,
    /// Queued messages no dispatcher took.
    pub(crate) unhandled: AtomicU64,
    /// Dispatcher callbacks that panicked (and were contained).
    pub(crate) panics: AtomicU64,
    abort_on_panic: AtomicBool,
}

impl Dispatchers {
    pub(crate) fn add(&self, d: Arc<dyn Dispatcher>, head: bool) {
        let fast = d.ms_can_fast_dispatch_any();
        let mut all = self.all.write().unwrap_or_else(|e| e.into_inner());
        let mut f = self.fast.write().unwrap_or_else(|e| e.into_inner());
        if head {
            all.insert(0, Arc::clone(&d));
            if fast {
                f.insert(0, d);
            }
        } else {
            all.push(Arc::clone(&d));
            if fast {
                f.push(d);
            }
        }
    }

    pub(crate) fn set_panic_policy(&self, p: DispatchPanic) {
        self.abort_on_panic
            .store(p == DispatchPanic::Abort, Ordering::Relaxed);
    }

    /// Runs a dispatcher callback for `con`, applying the panic policy if it panics.
    fn guarded<R>(&self, what: &str, conn: &Arc<ConnShared>, f: impl FnOnce() -> R) -> Option<R> {
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(payload) => {
                let con = ConnectionRef(Arc::clone(conn));
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                let peer = con
                    .peer_addr()
                    .map_or_else(|| "?".to_owned(), |a| a.to_string());
                if self.abort_on_panic.load(Ordering::Relaxed) {
                    error!(conn = con.id(), %peer, what, %why, "dispatcher panicked: aborting (dispatch panic policy: abort)");
                    eprintln!(
                        "msgr: a dispatcher panicked in {what} on connection {} (peer {peer}): \
                         {why}; aborting (dispatch panic policy: abort)",
                        con.id()
                    );
                    std::process::abort();
                }
                self.panics.fetch_add(1, Ordering::Relaxed);
                error!(conn = con.id(), %peer, what, %why, "dispatcher panicked: connection marked down");
                con.mark_down();
                None
            }
        }
    }

    fn all(&self) -> Vec<Arc<dyn Dispatcher>> {
        self.all.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Preprocess, then fast dispatch if claimed. Returns the message back if nobody claimed
    /// it (it goes to the queue). `con` is the message's connection (`m.conn`), lent for
    /// the panic policy.
    pub(crate) fn try_fast(&self, m: Incoming, con: &Arc<ConnShared>) -> Option<Incoming> {
        let fast = self.fast.read().unwrap_or_else(|e| e.into_inner());
        let claimed = self.guarded("ms_fast_preprocess", con, || {
            for d in fast.iter() {
                d.ms_fast_preprocess(&m.msg);
            }
            fast.iter()
                .find(|d| d.ms_can_fast_dispatch(&m.msg))
                .map(Arc::clone)
        });
        drop(fast);
        match claimed {
            Some(Some(d)) => {
                self.guarded("ms_fast_dispatch", con, || d.ms_fast_dispatch(m));
                None
            }
            Some(None) => Some(m),
            // The preprocessing panicked: the connection is gone, and so is the message.
            None => None,
        }
    }

    /// The synchronous connect/accept notifications.
    pub(crate) fn fast_event(&self, con: &ConnectionRef, ev: ConnEvent) {
        for d in self.all() {
            self.guarded("ms_handle_fast_connect/accept", &con.0, || match ev {
                ConnEvent::Connect => d.ms_handle_fast_connect(con),
                ConnEvent::Accept => d.ms_handle_fast_accept(con),
                _ => {}
            });
        }
    }

    fn dispatch(&self, item: Item) {
        let ds = self.all();
        match item {
            Item::Msg(m) => {
                let conn = Arc::clone(&m.conn.0);
                let taken = self.guarded("ms_dispatch", &conn, || {
                    ds.iter().any(|d| d.ms_dispatch(&m))
                });
                if taken == Some(false) {
                    // A peer can send any type: log quietly and count (perf dump), so an
                    // unwanted message cannot flood the log.
                    debug!(ty = m.msg.ty().0, peer = ?m.conn.peer_addr(), "unhandled message");
                    self.unhandled.fetch_add(1, Ordering::Relaxed);
                }
            }
            Item::Event(con, ev) => {
                self.guarded("a connection event handler", &con.0, || match ev {
                    ConnEvent::Connect => ds.iter().for_each(|d| d.ms_handle_connect(&con)),
                    ConnEvent::Accept => ds.iter().for_each(|d| d.ms_handle_accept(&con)),
                    ConnEvent::RemoteReset => {
                        ds.iter().for_each(|d| d.ms_handle_remote_reset(&con));
                    }
                    ConnEvent::Reset => {
                        let _ = ds.iter().any(|d| d.ms_handle_reset(&con));
                    }
                    ConnEvent::Refused => {
                        let _ = ds.iter().any(|d| d.ms_handle_refused(&con));
                    }
                });
            }
        }
    }
}

// Messages are the common item; boxing them to shrink the rare event variant would cost an
// allocation per queued message.
#[allow(clippy::large_enum_variant)]
enum Item {
    Msg(Incoming),
    Event(ConnectionRef, ConnEvent),
}

impl Item {
    fn priority(&self) -> u16 {
        match self {
            Self::Msg(m) => m.msg.header.priority,
            Self::Event(..) => priority::HIGHEST,
        }
    }
}

#[derive(Default)]
struct QueueState {
    /// Per connection, FIFO.
    per_conn: IdMap<u64, VecDeque<Item>>,
    /// Connections with a non-empty queue, by the priority of their head; FIFO within a
    /// priority gives the round-robin.
    ready: BTreeMap<u16, VecDeque<u64>>,
    len: usize,
    stopping: bool,
}

impl QueueState {
    fn schedule(&mut self, conn: u64) {
        if let Some(head) = self.per_conn.get(&conn).and_then(VecDeque::front) {
            self.ready
                .entry(head.priority())
                .or_default()
                .push_back(conn);
        }
    }

    fn push(&mut self, conn: u64, item: Item) {
        let q = self.per_conn.entry(conn).or_default();
        let was_empty = q.is_empty();
        q.push_back(item);
        self.len += 1;
        if was_empty {
            self.schedule(conn);
        }
    }

    fn pop(&mut self) -> Option<Item> {
        let mut entry = self.ready.last_entry()?;
        let conn = entry.get_mut().pop_front()?;
        if entry.get().is_empty() {
            entry.remove();
        }
        let q = self.per_conn.get_mut(&conn)?;
        let item = q.pop_front()?;
        if q.is_empty() {
            self.per_conn.remove(&conn);
        } else {
            self.schedule(conn);
        }
        self.len -= 1;
        Some(item)
    }

    /// Drops everything queued for `conn` (Ceph's `discard_queue`).
    fn discard(&mut self, conn: u64) -> usize {
        let n = self.per_conn.remove(&conn).map_or(0, |q| q.len());
        self.len -= n;
        for q in self.ready.values_mut() {
            q.retain(|&c| c != conn);
        }
        self.ready.retain(|_, q| !q.is_empty());
        n
    }
}

/// The queue between network threads and the dispatch thread.
pub(crate) struct DispatchQueue {
    state: Mutex<QueueState>,
    cv: Condvar,
    /// Items dispatched so far (for counters).
    pub(crate) dispatched: AtomicU64,
    /// Peak queue length.
    pub(crate) peak: AtomicUsize,
}

impl DispatchQueue {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::default(),
            cv: Condvar::new(),
            dispatched: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn enqueue(&self, m: Incoming) {
        let id = m.conn.id();
        self.push(id, Item::Msg(m));
    }

    pub(crate) fn event(&self, con: ConnectionRef, ev: ConnEvent) {
        let id = con.id();
        self.push(id, Item::Event(con, ev));
    }

    fn push(&self, conn: u64, item: Item) {
        let mut s = self.lock();
        if s.stopping {
            return;
        }
        s.push(conn, item);
        self.peak.fetch_max(s.len, Ordering::Relaxed);
        drop(s);
        self.cv.notify_one();
    }

    /// Drops what is queued for a connection (its session was reset or marked down).
    pub(crate) fn discard(&self, conn: u64) -> usize {
        self.lock().discard(conn)
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }

    /// Serves the queue until [`DispatchQueue::stop`]; run on the dispatch thread.
    pub(crate) fn run(&self, dispatchers: &Dispatchers) {
        loop {
            let item = {
                let mut s = self.lock();
                loop {
                    if let Some(i) = s.pop() {
                        break i;
                    }
                    if s.stopping {
                        return;
                    }
                    s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            };
            dispatchers.dispatch(item);
            self.dispatched.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops the dispatch thread once the queue is empty... or at once, dropping the rest
    /// when `drain` is false.
    pub(crate) fn stop(&self, drain: bool) {
        let mut s = self.lock();
        if !drain {
            s.per_conn.clear();
            s.ready.clear();
            s.len = 0;
        }
        s.stopping = true;
        drop(s);
        self.cv.notify_all();
        debug!("dispatch queue stopping");
    }
}

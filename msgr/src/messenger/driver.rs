//! What the worker transports (`posix`, `dpdk`) share: a worker owns its connections and
//! drives their engines on its own thread; other threads reach a connection through its
//! owner's [`Mailbox`]; a fast-dispatch callback running on the owner queues its reply on
//! the engine directly and has it written when the callback returns ([`defer`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use mio::Waker;

use super::conn::ConnShared;
use super::core::Core;
use crate::msg::Message;
use crate::proto::{AcceptOutcome, Connection, Event, SendError};
use crate::time::Instant;

thread_local! {
    /// (messenger id, worker index) of the worker running on this thread.
    static CURRENT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    /// Connections the running worker must pump after the current callback returns.
    static DIRTY: RefCell<Vec<Arc<ConnShared>>> = const { RefCell::new(Vec::new()) };
}

fn core_id(core: &Arc<Core>) -> usize {
    Arc::as_ptr(core) as usize
}

/// Marks this thread as worker `idx` of `core` (`None`: no worker any more).
pub(crate) fn enter(core: &Arc<Core>, idx: Option<usize>) {
    CURRENT.with(|c| c.set(idx.map(|i| (core_id(core), i))));
}

/// Whether the calling thread is worker `idx` of `core`.
pub(crate) fn on_worker(core: &Arc<Core>, idx: usize) -> bool {
    CURRENT.with(Cell::get) == Some((core_id(core), idx))
}

/// Has the running worker service `conn` once the current callback returns.
pub(crate) fn defer(conn: &Arc<ConnShared>) {
    DIRTY.with(|d| d.borrow_mut().push(Arc::clone(conn)));
}

/// The connections [`defer`]red since the last call.
pub(crate) fn take_deferred() -> Vec<Arc<ConnShared>> {
    DIRTY.with(|d| std::mem::take(&mut *d.borrow_mut()))
}

/// Per-connection state of a worker transport: the worker that owns the connection.
pub(crate) struct OwnerIo(AtomicUsize);

impl OwnerIo {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }
}

/// The worker that owns `conn` (0 for a transport without workers).
pub(crate) fn owner(conn: &ConnShared) -> usize {
    conn.io.worker().map_or(0, |o| o.0.load(Ordering::Acquire))
}

/// Hands `conn` to worker `w`.
pub(crate) fn set_owner(conn: &ConnShared, w: usize) {
    if let Some(o) = conn.io.worker() {
        o.0.store(w, Ordering::Release);
    }
}

/// Sends `cmd` about `conn` to the worker that owns it (from another worker: no waiting).
pub(crate) fn forward<A: Orphan>(
    core: &Core,
    peers: &[Arc<Mailbox<A>>],
    conn: &ConnShared,
    cmd: Cmd<A>,
) {
    if let Some(m) = peers.get(owner(conn)) {
        let _ = m.push(core, cmd);
    }
}

/// A command for a worker; `A` is the transport's own kind (taking charge of a connection).
// `Send` (a whole Message) is the big and the common variant. Boxing it would shrink the
// queue's slots but cost an allocation in the sending thread and a free in the worker — a
// cross-thread free, the slow path of glibc's allocator.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd<A> {
    Own(A),
    /// Queue a message.
    Send(Posted),
    /// Send a keepalive.
    Keepalive(Arc<ConnShared>),
    /// Run the connection: its engine changed under another thread (an accept decision
    /// on another worker reset it or queued a reply for it).
    Service(Arc<ConnShared>),
    /// The engine was stopped (mark_down): drop the connection.
    Closed(Arc<ConnShared>),
    Shutdown,
}

/// A message on its way to its connection's engine through a mailbox, counted in the
/// connection's `posted_*` until it is queued on the engine ([`Posted::enqueue`]) or
/// dropped (a worker gone, a session closed): the senders' limit sees it all along.
pub(crate) struct Posted {
    conn: Arc<ConnShared>,
    msg: Option<Message>,
}

impl Posted {
    /// Counts `msg` against `conn` if the session has room for it (`QueueFull` if not).
    fn reserve(conn: &Arc<ConnShared>, msg: Message) -> Result<Self, SendError> {
        let len = msg.payload_len();
        {
            let engine = conn.engine();
            let msgs = conn.posted_msgs.load(Ordering::Acquire);
            let bytes = conn.posted_bytes.load(Ordering::Acquire);
            if !engine.has_room(len, msgs, bytes) {
                return Err(SendError::QueueFull(Box::new(msg)));
            }
            conn.posted_msgs.fetch_add(1, Ordering::AcqRel);
            conn.posted_bytes.fetch_add(len, Ordering::AcqRel);
        }
        Ok(Self {
            conn: Arc::clone(conn),
            msg: Some(msg),
        })
    }

    pub(crate) fn conn(&self) -> &Arc<ConnShared> {
        &self.conn
    }

    /// Queues the message on the engine (under its lock, so that the count moves from
    /// posted to held at once). A closed session drops it.
    pub(crate) fn enqueue(mut self, now: Instant) -> Result<(), SendError> {
        let mut engine = self.conn.engine();
        let Some(m) = self.msg.take() else {
            return Ok(());
        };
        self.release(m.payload_len());
        engine.send_reserved(now, m)
    }

    fn release(&self, len: usize) {
        self.conn.posted_msgs.fetch_sub(1, Ordering::AcqRel);
        self.conn.posted_bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// The message back, uncounted (a post that failed).
    fn into_message(mut self) -> Option<Message> {
        let m = self.msg.take()?;
        self.release(m.payload_len());
        Some(m)
    }
}

impl Drop for Posted {
    fn drop(&mut self) {
        if let Some(m) = self.msg.take() {
            self.release(m.payload_len());
        }
    }
}

/// What a transport's own commands leave behind when no worker will ever serve them.
pub(crate) trait Orphan {
    /// The connection to close and forget (one still waiting to be taken over), if any.
    fn orphaned(self) -> Option<Arc<ConnShared>>;
}

/// One worker's command queue, load and state, shared with every thread.
pub(crate) struct Mailbox<A> {
    queue: ArrayQueue<Cmd<A>>,
    /// Connections owned.
    pub(crate) load: AtomicUsize,
    /// The worker has exited: nothing will serve its queue again.
    stopped: AtomicBool,
    /// The worker is (about to be) blocked in `epoll_wait`: posting must wake it. While it
    /// runs, it drains the queue before sleeping anyway, so posters skip the wake-up
    /// syscall. Polling workers never set it.
    sleeping: AtomicBool,
    pub(crate) waker: OnceLock<Waker>,
}

impl<A: Orphan> Mailbox<A> {
    pub(crate) fn new(depth: usize) -> Self {
        Self {
            queue: ArrayQueue::new(depth),
            load: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            waker: OnceLock::new(),
        }
    }

    pub(crate) fn wake(&self) {
        if let Some(w) = self.waker.get() {
            let _ = w.wake();
        }
    }

    /// Queues a command for the worker and wakes it if it sleeps. If the worker has already
    /// exited (a shutdown in progress), the command is discarded at once instead of sitting
    /// in a queue nobody serves — an accepted socket would otherwise stay open, unanswered,
    /// until its peer's handshake timed out.
    #[allow(clippy::result_large_err)] // the command comes back to its sender on failure
    pub(crate) fn push(&self, core: &Core, cmd: Cmd<A>) -> Result<(), Cmd<A>> {
        self.queue.push(cmd)?;
        // Pairs with the worker's `sleeping` store + fence + queue check (Dekker): either
        // it sees our command before sleeping, or we see it asleep and wake it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
        // SeqCst pairs with the worker's store-then-drain at exit: either it drains after
        // our push, or we see the flag and drain ourselves.
        if self.stopped.load(Ordering::SeqCst) {
            self.discard_queued(core);
        }
        Ok(())
    }

    /// [`Mailbox::push`], pushing back (briefly) while the queue is full; gives up after
    /// about 100 ms and counts it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn post(&self, core: &Core, mut cmd: Cmd<A>) -> Result<(), Cmd<A>> {
        for attempt in 0..2000 {
            match self.push(core, cmd) {
                Ok(()) => return Ok(()),
                Err(c) => {
                    cmd = c;
                    self.wake();
                    if attempt > 10 {
                        std::thread::sleep(Duration::from_micros(50));
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        core.perf.send_queue_full.fetch_add(1, Ordering::Relaxed);
        Err(cmd)
    }

    /// The next command, if any.
    pub(crate) fn pop(&self) -> Option<Cmd<A>> {
        self.queue.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Before blocking: whether the worker may sleep (nothing queued); posters wake it from
    /// here on. Pair with [`Mailbox::awake`].
    pub(crate) fn may_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.queue.is_empty()
    }

    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The worker exits: whatever is queued now or later is discarded.
    pub(crate) fn close(&self, core: &Core) {
        self.stopped.store(true, Ordering::SeqCst);
        self.discard_queued(core);
    }

    /// Drops every queued command; connections still waiting to be taken over are closed.
    fn discard_queued(&self, core: &Core) {
        while let Some(cmd) = self.queue.pop() {
            if let Cmd::Own(own) = cmd {
                if let Some(conn) = own.orphaned() {
                    conn.engine().mark_down();
                    core.forget(&conn);
                }
            }
        }
    }
}

/// The workers of a posix or dpdk transport as the core reaches them: their mailboxes, the
/// placement of new connections (least loaded), and the `Transport` calls the two share.
/// Derefs to the mailboxes.
pub(crate) struct WorkerSet<A: Orphan>(Vec<Arc<Mailbox<A>>>);

impl<A: Orphan> std::ops::Deref for WorkerSet<A> {
    type Target = [Arc<Mailbox<A>>];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<A: Orphan> WorkerSet<A> {
    /// `n` workers (at least one), each with a queue of `depth` commands.
    pub(crate) fn new(n: usize, depth: usize) -> Self {
        Self(
            (0..n.max(1))
                .map(|_| Arc::new(Mailbox::new(depth)))
                .collect(),
        )
    }

    /// `Transport::assign`: the least loaded worker takes the connection.
    pub(crate) fn assign(&self, conn: &ConnShared) {
        let w = (0..self.len())
            .min_by_key(|&i| self[i].load.load(Ordering::Relaxed))
            .unwrap_or(0);
        set_owner(conn, w);
        self[w].load.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues `cmd` for worker `w` (dropped, and counted, if its queue stays full).
    pub(crate) fn post(&self, core: &Core, w: usize, cmd: Cmd<A>) {
        let _ = self[w].post(core, cmd);
    }

    /// `Transport::connect`: `start` (the transport's own command) to the owner.
    pub(crate) fn start(&self, core: &Core, conn: &ConnShared, start: Cmd<A>) {
        if self[owner(conn)].post(core, start).is_err() {
            tracing::warn!(
                conn = conn.id(),
                "worker queue full: connection not started"
            );
        }
    }

    /// `Transport::send`.
    pub(crate) fn send(
        &self,
        core: &Arc<Core>,
        conn: &Arc<ConnShared>,
        m: Message,
    ) -> Result<(), SendError> {
        let w = owner(conn);
        send(core, conn, w, &self[w], m)
    }

    /// `Transport::keepalive`.
    pub(crate) fn keepalive(&self, core: &Core, conn: &Arc<ConnShared>) {
        self.post(core, owner(conn), Cmd::Keepalive(Arc::clone(conn)));
    }

    /// `Transport::closed` (`started`: the transport's workers ran at all).
    pub(crate) fn closed(&self, core: &Core, conn: &Arc<ConnShared>, started: bool) {
        if !core.stopping.load(Ordering::Acquire) || started {
            self.post(core, owner(conn), Cmd::Closed(Arc::clone(conn)));
        }
    }

    /// `Transport::shutdown`: every worker stops.
    pub(crate) fn shutdown(&self, core: &Core) {
        for w in 0..self.len() {
            self.post(core, w, Cmd::Shutdown);
        }
    }
}

/// `Transport::send` of a worker transport: straight onto the engine from a callback on
/// the owning worker (written when the callback returns), else through the owner's queue.
pub(crate) fn send<A: Orphan>(
    core: &Arc<Core>,
    conn: &Arc<ConnShared>,
    owner: usize,
    mailbox: &Mailbox<A>,
    m: Message,
) -> Result<(), SendError> {
    if on_worker(core, owner) {
        let r = conn.engine().send_message(core.now(), m);
        defer(conn);
        return r;
    }
    if conn.closed.load(Ordering::Acquire) {
        return Err(SendError::Closed(Box::new(m)));
    }
    let cmd = Cmd::Send(Posted::reserve(conn, m)?);
    match mailbox.post(core, cmd) {
        Ok(()) => Ok(()),
        Err(Cmd::Send(p)) => match p.into_message() {
            Some(msg) => Err(SendError::QueueFull(Box::new(msg))),
            None => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// Takes the engine's events into `events`, applying an accept decision on the way (the
/// engine's own step, under its lock); returns the accept outcome and the existing session
/// involved, if there was one.
pub(crate) fn drain_events(
    core: &Core,
    conn: &Arc<ConnShared>,
    engine: &mut Connection,
    now: Instant,
    events: &mut Vec<Event>,
) -> Option<(AcceptOutcome, Option<Arc<ConnShared>>)> {
    let mut accept = None;
    while let Some(ev) = engine.poll_event() {
        if let Event::AcceptRequest = ev {
            accept = Some(core.resolve_accept(conn, engine, now));
            continue;
        }
        events.push(ev);
    }
    conn.note_handshake(engine);
    accept
}

/// Moves connection `t`'s entry in a worker's timer set from `*slot` to `deadline`.
pub(crate) fn set_deadline(
    timers: &mut BTreeSet<(Instant, usize)>,
    t: usize,
    slot: &mut Option<Instant>,
    deadline: Option<Instant>,
) {
    if *slot == deadline {
        return;
    }
    if let Some(d) = *slot {
        timers.remove(&(d, t));
    }
    if let Some(d) = deadline {
        timers.insert((d, t));
    }
    *slot = deadline;
}

/// Removes and returns the earliest timer due at `now`, if any.
pub(crate) fn pop_due(
    timers: &mut BTreeSet<(Instant, usize)>,
    now: Instant,
) -> Option<(Instant, usize)> {
    match timers.first() {
        Some(&(d, _)) if d <= now => timers.pop_first(),
        _ => None,
    }
}

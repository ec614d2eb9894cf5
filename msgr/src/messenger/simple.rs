//! Transport `simple`: Ceph's SimpleMessenger shape over kernel TCP.
//!
//! An accepter thread takes incoming sockets; every session has a **writer thread** for
//! its whole life (it dials, runs the engine's timers and writes what the engine yields,
//! with blocking writes) and, per socket, a **reader thread** (blocking reads fed to the
//! engine). Ceph's Pipe reader / Pipe writer, in other words, around the same sans-IO
//! engine the posix transport drives. Before a session exists, fewer threads: the
//! accepter writes the server's hello and keeps the socket (registered with its poll, its
//! ready timeout run by the accepter) until the peer speaks; then the socket gets its
//! reader, which writes the rest of the handshake and runs its timers (as Ceph's
//! `Pipe::accept` does in the reader); the session's writer starts when the session opens.
//! A connection flood costs no threads, a peer that never completes a handshake one.
//!
//! Locks: the engine lock and a session's socket state (`SimpleIo::st`) are never held
//! together, and neither is held during socket I/O or dispatch. The session's outbox lock
//! (below) nests inside the engine lock, or is taken alone.
//!
//! Several threads touch one session's engine (its reader, its writer, and any thread that
//! sends on it), so several may find events in it. Events are therefore never delivered
//! straight from `poll_event`: whoever holds the engine lock moves them, in order, to the
//! session's [`Outbox`] (engine lock → outbox lock, held for the move only), and one thread
//! at a time delivers the outbox front to back, without any lock held. A message can thus
//! never overtake an earlier message or event of its session on its way to the dispatchers.
//! Two events are not delivered but acted on: `Dial` wakes the writer (which dials), and
//! `AcceptRequest` is left for the reader, the only thread that resolves accepts (it owns the
//! socket that may move to another session).

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, trace, warn};

use super::conn::ConnShared;
use super::core::Core;
use super::transport::{ConnIo, Transport};
use crate::msg::Message;
use crate::proto::{AcceptOutcome, Event, Fault, InputStatus, SendError, TransportError};
use crate::time::Instant;
use crate::wire::banner::CLIENT_HELLO_LEN;

const LISTEN: Token = Token(0);
const WAKE: Token = Token(1);
/// Chunks written per `writev`.
const IOV_MAX: usize = 64;
/// Largest single read.
const READ_CHUNK: usize = 64 * 1024;
/// How often an idle reader checks that its socket is still the session's.
const READ_TICK: Duration = Duration::from_millis(500);

/// Per-session state of the simple transport.
pub(crate) struct SimpleIo {
    st: Mutex<IoState>,
    cv: Condvar,
    out: Mutex<Outbox>,
}

/// Events taken from the engine and not yet delivered, in engine order.
#[derive(Default)]
struct Outbox {
    q: std::collections::VecDeque<Event>,
    /// A thread is delivering `q`; others only append.
    delivering: bool,
    /// The engine asked for an accept decision (for the reader to take).
    accept_pending: bool,
    /// The engine asked for a dial, not yet passed to the writer.
    dial_pending: bool,
}

#[derive(Default)]
struct IoState {
    /// The session's current socket and its generation.
    sock: Option<(Arc<TcpStream>, u64)>,
    /// The writer should dial.
    dial: bool,
    /// The writer should look at the engine (input, a send, a keepalive).
    kick: bool,
    /// The engine's next deadline, as last seen.
    deadline: Option<Instant>,
    /// The session is over: the writer exits.
    closed: bool,
    /// A writer thread runs for this session.
    writer: bool,
}

impl SimpleIo {
    fn lock(&self) -> MutexGuard<'_, IoState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick(&self, deadline: Option<Instant>, dial: bool) {
        let mut st = self.lock();
        st.kick = true;
        st.dial |= dial;
        st.deadline = deadline;
        drop(st);
        self.cv.notify_one();
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        if let Some((s, _)) = st.sock.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(st);
        self.cv.notify_all();
    }
}

fn io_of(conn: &ConnShared) -> &SimpleIo {
    conn.io.simple().expect("a simple-transport session")
}

pub(crate) struct Simple {
    listener: Mutex<Option<std::net::TcpListener>>,
    waker: Mutex<Option<Arc<Waker>>>,
    threads: Arc<Threads>,
    stopping: Arc<AtomicBool>,
}

/// How long a reader or writer thread whose connection ended waits for another's.
const THREAD_IDLE: Duration = Duration::from_secs(10);
/// Most threads waiting for work at once; beyond, an ending thread exits.
const THREADS_IDLE_MAX: usize = 256;

type Job = Box<dyn FnOnce() + Send>;

/// The transport's reader and writer threads, reused. A thread whose connection ends does
/// not exit: it waits up to [`THREAD_IDLE`] for the next connection's reader or writer
/// (at most [`THREADS_IDLE_MAX`] wait at once). A stream of short connections — clients
/// that come and go, or a flood of handshakes — would otherwise create and destroy two
/// threads each: clone, a kernel stack, its cgroup accounting, which were most of what
/// such a stream cost the accepting CPU.
#[derive(Default)]
pub(crate) struct Threads {
    handles: Mutex<Vec<JoinHandle<()>>>,
    jobs: Mutex<Jobs>,
    cv: Condvar,
    /// Threads alive, and readers and writers running (perf dump's `simple` section).
    alive: AtomicUsize,
    readers: AtomicUsize,
    writers: AtomicUsize,
}

#[derive(Default)]
struct Jobs {
    queue: std::collections::VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    closed: bool,
}

impl Threads {
    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on a waiting thread, or on a new one.
    fn run(self: &Arc<Self>, job: Job) {
        {
            let mut j = self.jobs();
            if !j.closed && j.idle > j.queue.len() {
                j.queue.push_back(job);
                self.cv.notify_one();
                return;
            }
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ms_pipe".into())
            .spawn(move || me.serve(job));
        self.keep(spawned);
    }

    /// Runs `f` on a thread of its own, named `name` (the accepter).
    fn run_alone(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
        self.keep(spawned);
    }

    fn keep(&self, spawned: io::Result<JoinHandle<()>>) {
        match spawned {
            Ok(h) => {
                let mut ts = self.handles.lock().unwrap_or_else(|e| e.into_inner());
                ts.retain(|t| !t.is_finished());
                ts.push(h);
            }
            Err(e) => warn!(error = %e, "could not spawn a thread"),
        }
    }

    /// A pooled thread: its first job, then others as they come, until it has waited
    /// [`THREAD_IDLE`] for one, enough others wait, or the transport shuts down.
    fn serve(&self, first: Job) {
        // Counted while it runs, however it ends (a job's panic included).
        let _alive = Counted::new(&self.alive);
        first();
        loop {
            let job = {
                let mut j = self.jobs();
                if j.closed || j.idle >= THREADS_IDLE_MAX {
                    break;
                }
                j.idle += 1;
                let (mut j, _) = self
                    .cv
                    .wait_timeout_while(j, THREAD_IDLE, |j| j.queue.is_empty() && !j.closed)
                    .unwrap_or_else(|e| e.into_inner());
                j.idle -= 1;
                // A job queued for the waiting threads is taken even at a timeout.
                match j.queue.pop_front() {
                    Some(job) => job,
                    None => break,
                }
            };
            job();
        }
    }

    /// Waiting threads exit; jobs still queued run first.
    fn close(&self) {
        self.jobs().closed = true;
        self.cv.notify_all();
    }

    fn gauges(&self) -> serde_json::Value {
        serde_json::json!({
            "threads": self.alive.load(Ordering::Relaxed),
            "idle_threads": self.jobs().idle,
            "readers": self.readers.load(Ordering::Relaxed),
            "writers": self.writers.load(Ordering::Relaxed),
        })
    }
}

/// Counts one in a gauge of [`Threads`] while alive (a thread, a reader, a writer).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(g: &'a AtomicUsize) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Simple {
    pub(crate) fn new() -> Self {
        Self {
            listener: Mutex::new(None),
            waker: Mutex::new(None),
            threads: Arc::default(),
            stopping: Arc::default(),
        }
    }
}

impl Transport for Simple {
    fn new_io(&self) -> ConnIo {
        ConnIo::Simple(SimpleIo {
            st: Mutex::default(),
            cv: Condvar::new(),
            out: Mutex::default(),
        })
    }

    fn bind(&self, _core: &Arc<Core>, addr: SocketAddr) -> io::Result<SocketAddr> {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let bound = l.local_addr()?;
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
        Ok(bound)
    }

    fn start(&self, core: &Arc<Core>) -> io::Result<()> {
        let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        let mut listener = TcpListener::from_std(l);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTEN, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
        let core = Arc::clone(core);
        let threads = Arc::clone(&self.threads);
        let stopping = Arc::clone(&self.stopping);
        self.threads.run_alone("ms_accepter", move || {
            accepter(core, poll, listener, threads, stopping)
        });
        Ok(())
    }

    fn connect(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        start_writer(core, conn, &self.threads);
        // The engine emitted Dial at creation: hand it to the writer.
        pump(core, conn, &self.threads);
    }

    fn send(&self, core: &Arc<Core>, conn: &Arc<ConnShared>, m: Message) -> Result<(), SendError> {
        let r = conn.engine().send_message(core.now(), m);
        pump(core, conn, &self.threads);
        r
    }

    fn keepalive(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        conn.engine().send_keepalive();
        pump(core, conn, &self.threads);
    }

    fn closed(&self, _core: &Arc<Core>, conn: &Arc<ConnShared>) {
        io_of(conn).close();
    }

    fn shutdown(&self, _core: &Arc<Core>) {
        self.stopping.store(true, Ordering::Release);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = w.wake();
        }
    }

    fn perf_section(&self) -> Option<(&'static str, serde_json::Value)> {
        Some(("simple", self.threads.gauges()))
    }

    fn join(&self) {
        self.threads.close();
        loop {
            let ts = std::mem::take(
                &mut *self
                    .threads
                    .handles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if ts.is_empty() {
                return;
            }
            for t in ts {
                let _ = t.join();
            }
        }
    }
}

/// An accepted socket whose peer has not said its hello yet: the accepter waits for it
/// (no thread of its own until then), reads what comes without blocking, has the engine
/// judge it, and runs its handshake timer. The socket is non-blocking until a reader
/// takes it.
struct Quiet {
    conn: Arc<ConnShared>,
    sock: Arc<TcpStream>,
    deadline: Option<Instant>,
    /// What came so far (less than a client hello).
    rx: BytesMut,
}

/// What became of a quiet socket that turned readable.
enum Heard {
    /// Still short of a client hello: keep waiting.
    Wait,
    /// A good hello, all of it taken by the engine (no more is read here): a reader thread
    /// takes the socket.
    Hello,
    /// Closed (EOF, an error, or the engine refused what came): nothing left to do.
    Gone,
}

/// A quiet socket turned readable: reads what came, without blocking, up to a client
/// hello, and has the engine judge it. A wrong banner or address (most garbage) is
/// refused here, without a thread.
fn hear(core: &Arc<Core>, q: &mut Quiet, threads: &Arc<Threads>) -> Heard {
    if q.conn.gen() != 0 || io_of(&q.conn).lock().closed {
        return Heard::Gone;
    }
    let mut buf = [0u8; CLIENT_HELLO_LEN];
    let mut ended = None;
    while q.rx.len() < CLIENT_HELLO_LEN {
        let want = CLIENT_HELLO_LEN - q.rx.len();
        match (&*q.sock).read(&mut buf[..want]) {
            Ok(0) => {
                ended = Some(TransportError::Eof);
                break;
            }
            Ok(n) => {
                core.perf.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                q.rx.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                trace!(conn = q.conn.id(), error = %e, "read failed");
                ended = Some(TransportError::Io);
                break;
            }
        }
    }
    if !q.rx.is_empty() {
        let status = {
            let mut e = q.conn.engine();
            if q.conn.gen() != 0 {
                return Heard::Gone;
            }
            feed(&mut e, core.now(), &mut q.rx)
        };
        match status {
            Err(f) => {
                faulted(core, &q.conn, 0, &q.sock, threads, f);
                return Heard::Gone;
            }
            // The engine took the whole hello: the handshake goes on on a thread.
            Ok(_) if q.rx.is_empty() => return Heard::Hello,
            Ok(_) => {}
        }
    }
    match ended {
        Some(e) => {
            lost(core, &q.conn, 0, e);
            pump(core, &q.conn, threads);
            Heard::Gone
        }
        None => Heard::Wait,
    }
}

/// The first token of the quiet sockets (after the listener's and the waker's).
const FIRST_QUIET: usize = 2;

fn accepter(
    core: Arc<Core>,
    mut poll: Poll,
    listener: TcpListener,
    threads: Arc<Threads>,
    stopping: Arc<AtomicBool>,
) {
    let mut events = Events::with_capacity(64);
    let mut quiet: HashMap<Token, Quiet> = HashMap::new();
    let mut next_token = FIRST_QUIET;
    while !stopping.load(Ordering::Acquire) {
        let wait =
            quiet
                .values()
                .filter_map(|q| q.deadline)
                .min()
                .map_or(Duration::from_secs(1), |d| {
                    core.until(d)
                        .clamp(Duration::from_millis(1), Duration::from_secs(1))
                });
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                warn!(error = %e, "accepter poll failed");
            }
            continue;
        }
        for ev in events.iter() {
            let t = ev.token();
            if t.0 < FIRST_QUIET {
                continue;
            }
            let Some(mut q) = quiet.remove(&t) else {
                continue;
            };
            match hear(&core, &mut q, &threads) {
                Heard::Wait => {
                    quiet.insert(t, q);
                    continue;
                }
                Heard::Hello => {
                    let fd = q.sock.as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    // This transport blocks from here on.
                    if let Err(e) = q.sock.set_nonblocking(false) {
                        warn!(error = %e, "accepted socket unusable");
                        lost(&core, &q.conn, 0, TransportError::Io);
                        pump(&core, &q.conn, &threads);
                        continue;
                    }
                    start_reader(&core, &q.conn, q.sock, 0, &threads);
                }
                Heard::Gone => {
                    let fd = q.sock.as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    drop_socket(io_of(&q.conn), &q.conn);
                }
            }
        }
        // Handshake timers of the quiet sockets.
        let now = core.now();
        let due: Vec<Token> = quiet
            .iter()
            .filter(|(_, q)| q.deadline.is_some_and(|d| d <= now) || q.conn.gen() != 0)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            let Some(mut q) = quiet.remove(&t) else {
                continue;
            };
            let step = write_step(&core, &q.conn, &threads, Some(&(Arc::clone(&q.sock), 0)));
            match step {
                Some(st) if q.conn.gen() == 0 => {
                    q.deadline = st.deadline;
                    quiet.insert(t, q);
                }
                _ => {
                    let fd = q.sock.as_raw_fd();
                    let _ = poll.registry().deregister(&mut SourceFd(&fd));
                    drop_socket(io_of(&q.conn), &q.conn);
                }
            }
        }
        loop {
            match listener.accept() {
                Ok((sock, peer)) => {
                    // Non-blocking (as mio hands it out) while quiet; a reader thread that
                    // takes it makes it blocking.
                    let std_sock = TcpStream::from(sock);
                    if let Err(e) = std_sock.set_nodelay(true) {
                        warn!(error = %e, "accepted socket unusable");
                        continue;
                    }
                    let conn = core.accepted(peer);
                    let sock = Arc::new(std_sock);
                    io_of(&conn).lock().sock = Some((Arc::clone(&sock), 0));
                    if core.stopping.load(Ordering::Acquire) {
                        // Accepted while the messenger shuts down, after its sweep of the
                        // live connections (`accepted` tracked it first, so a later sweep
                        // would have seen it): close it here.
                        core.mark_down_conn(&conn);
                        continue;
                    }
                    // The server's hello (a few hundred bytes into an empty socket
                    // buffer: the write cannot block), then the socket waits here, without
                    // a thread, for its peer's hello. A peer that never sends it (a flood,
                    // a scanner, a slowloris) or sends garbage costs a registration and its
                    // handshake timer, no thread; one whose hello is good gets a reader,
                    // which writes the rest of the handshake (as Ceph's Pipe::accept), and
                    // a session gets its writer when it opens.
                    let current = Some((Arc::clone(&sock), 0));
                    let Some(step) = write_step(&core, &conn, &threads, current.as_ref()) else {
                        continue;
                    };
                    if conn.gen() != 0 {
                        drop_socket(io_of(&conn), &conn);
                        continue;
                    }
                    let token = Token(next_token);
                    next_token = if next_token == usize::MAX {
                        FIRST_QUIET
                    } else {
                        next_token + 1
                    };
                    let fd = sock.as_raw_fd();
                    if let Err(e) =
                        poll.registry()
                            .register(&mut SourceFd(&fd), token, Interest::READABLE)
                    {
                        // Not watchable: a reader thread waits for it instead.
                        debug!(error = %e, "quiet socket not registered");
                        if sock.set_nonblocking(false).is_ok() {
                            start_reader(&core, &conn, sock, 0, &threads);
                        } else {
                            lost(&core, &conn, 0, TransportError::Io);
                            pump(&core, &conn, &threads);
                        }
                        continue;
                    }
                    quiet.insert(
                        token,
                        Quiet {
                            conn,
                            sock,
                            deadline: step.deadline,
                            rx: BytesMut::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    core.perf.accept_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
    // Still quiet at shutdown: the messenger's sweep closes their sessions.
    for q in quiet.into_values() {
        core.mark_down_conn(&q.conn);
    }
    debug!("accepter stopped");
}

fn start_writer(core: &Arc<Core>, conn: &Arc<ConnShared>, threads: &Arc<Threads>) {
    {
        let mut st = io_of(conn).lock();
        if st.writer {
            return;
        }
        st.writer = true;
        // Whatever was asked of a writer before this one ran.
        st.kick = true;
    }
    let (core, conn, ts) = (Arc::clone(core), Arc::clone(conn), Arc::clone(threads));
    threads.run(Box::new(move || writer(core, conn, ts)));
}

fn start_reader(
    core: &Arc<Core>,
    conn: &Arc<ConnShared>,
    sock: Arc<TcpStream>,
    gen: u64,
    threads: &Arc<Threads>,
) {
    let (core, conn, ts) = (Arc::clone(core), Arc::clone(conn), Arc::clone(threads));
    threads.run(Box::new(move || reader(core, conn, sock, gen, ts)));
}

/// Drains a session's events after someone touched its engine (without its lock), and has
/// its writer look at it.
fn pump(core: &Arc<Core>, conn: &Arc<ConnShared>, _threads: &Arc<Threads>) {
    let (dial, deadline, closed) = {
        let mut e = conn.engine();
        let dial = drain(conn, &mut e);
        (dial, e.poll_timeout(), e.is_closed())
    };
    deliver_pending(core, conn);
    if closed {
        io_of(conn).close();
        core.forget(conn);
    } else {
        io_of(conn).kick(deadline, dial);
    }
}

/// Moves the engine's events to the session's outbox, in order; call with the engine
/// locked. Returns whether a dial is pending (the flag is cleared: the caller must pass it
/// to the writer).
fn drain(conn: &ConnShared, engine: &mut crate::proto::Connection) -> bool {
    let mut out = io_of(conn).outbox();
    while let Some(ev) = engine.poll_event() {
        match ev {
            // The writer dials (and counts it).
            Event::Dial => out.dial_pending = true,
            Event::AcceptRequest => out.accept_pending = true,
            ev => out.q.push_back(ev),
        }
    }
    let dial = std::mem::take(&mut out.dial_pending);
    drop(out);
    conn.note_handshake(engine);
    dial
}

/// Delivers the session's outbox, front to back, unless another thread already is (it
/// then delivers what we added too).
fn deliver_pending(core: &Arc<Core>, conn: &Arc<ConnShared>) {
    let io = io_of(conn);
    {
        let mut out = io.outbox();
        if out.delivering {
            return;
        }
        out.delivering = true;
    }
    /// Hands the outbox back if a dispatcher panics mid-delivery.
    struct Unwind<'a>(&'a SimpleIo);
    impl Drop for Unwind<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.outbox().delivering = false;
            }
        }
    }
    let _unwind = Unwind(io);
    loop {
        let ev = {
            let mut out = io.outbox();
            match out.q.pop_front() {
                Some(ev) => ev,
                None => {
                    // Checked and released under one lock: an event added after this is
                    // delivered by the thread that adds it.
                    out.delivering = false;
                    return;
                }
            }
        };
        core.deliver(conn, ev);
    }
}

/// The session thread: dials, runs timers, writes.
fn writer(core: Arc<Core>, conn: Arc<ConnShared>, threads: Arc<Threads>) {
    let _running = Counted::new(&threads.writers);
    let io = io_of(&conn);
    loop {
        let (dial, sock) = {
            let mut st = io.lock();
            loop {
                if st.closed {
                    st.writer = false;
                    trace!(conn = conn.id(), "writer exits");
                    return;
                }
                if st.kick || st.dial {
                    break;
                }
                let wait = st
                    .deadline
                    .map_or(Duration::from_secs(1), |d| core.until(d));
                if wait.is_zero() {
                    break;
                }
                let (guard, res) = io
                    .cv
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if res.timed_out() {
                    // Look at the engine itself: its timers may have moved since the
                    // deadline we were given.
                    break;
                }
            }
            st.kick = false;
            (std::mem::take(&mut st.dial), st.sock.clone())
        };
        if dial {
            do_dial(&core, &conn, &threads);
            continue;
        }
        if let Some(Step {
            deadline,
            dial,
            more,
        }) = write_step(&core, &conn, &threads, sock.as_ref())
        {
            let mut st = io.lock();
            st.deadline = deadline;
            st.dial |= dial;
            st.kick |= more;
        }
    }
}

/// What a [`write_step`] leaves for the next one.
struct Step {
    deadline: Option<Instant>,
    dial: bool,
    /// Output is left (a `writev`'s worth was written).
    more: bool,
}

/// The writer's work, once: the engine's timers, then its output to `sock` (the session's
/// socket as last seen). Run by the session's writer, or by an accepted socket's reader
/// until the handshake opens a session (never by both: the reader starts the writer).
/// `None`: the session is over.
fn write_step(
    core: &Arc<Core>,
    conn: &Arc<ConnShared>,
    threads: &Arc<Threads>,
    sock: Option<&(Arc<TcpStream>, u64)>,
) -> Option<Step> {
    let io = io_of(conn);
    let now = core.now();
    let mut chunks: Vec<Bytes> = Vec::new();
    let (dial, deadline, closed, fault) = {
        let mut e = conn.engine();
        let fault = if e.poll_timeout().is_some_and(|t| t <= now) {
            e.handle_timeout(now).err()
        } else {
            None
        };
        if fault.is_some() {
            // The engine gave this socket up (handshake or idle timeout): it is stale
            // from here on, for the reader too.
            conn.next_gen();
        }
        let current = sock.filter(|(_, g)| *g == conn.gen());
        if current.is_some() {
            while chunks.len() < IOV_MAX {
                match e.poll_transmit(now) {
                    Some(b) => chunks.push(b),
                    None => break,
                }
            }
        }
        let dial = drain(conn, &mut e);
        (dial, e.poll_timeout(), e.is_closed(), fault)
    };
    if let Some(f) = fault {
        core.fault(conn, &f);
        drop_socket(io, conn);
    }
    let more = chunks.len() == IOV_MAX;
    if let (false, Some((s, gen))) = (chunks.is_empty(), sock) {
        if let Err(err) = write_chunks(core, s, chunks) {
            trace!(conn = conn.id(), error = %err, "write failed");
            lost(core, conn, *gen, TransportError::Io);
            // The engine reacted (redial, standby...): deliver and act on that too.
            pump(core, conn, threads);
        }
    }
    deliver_pending(core, conn);
    if closed || conn.engine().is_closed() {
        io.close();
        core.forget(conn);
        return None;
    }
    Some(Step {
        deadline,
        dial,
        more,
    })
}

fn write_chunks(core: &Core, sock: &TcpStream, mut chunks: Vec<Bytes>) -> io::Result<()> {
    let mut at = 0;
    while at < chunks.len() {
        let iov: Vec<IoSlice<'_>> = chunks[at..].iter().map(|b| IoSlice::new(b)).collect();
        if core.inject.fail_now() {
            core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::other("injected socket failure"));
        }
        let mut n = match (&*sock).write_vectored(&iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        core.perf.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        while n > 0 && at < chunks.len() {
            let c = &mut chunks[at];
            if n >= c.len() {
                n -= c.len();
                at += 1;
            } else {
                c.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// The socket of generation `gen` failed: tell the engine (if it is still the session's).
fn lost(core: &Arc<Core>, conn: &Arc<ConnShared>, gen: u64, e: TransportError) {
    let now = core.now();
    {
        let mut eng = conn.engine();
        if conn.gen() != gen {
            return;
        }
        // A new generation: whatever the engine does next, this socket is done.
        conn.next_gen();
        eng.handle_transport_error(now, e);
    }
    core.fault(conn, &Fault::Transport(e));
    drop_socket(io_of(conn), conn);
}

/// Makes `sock` (of transport generation `gen`) the session's socket, unless a socket of a
/// later generation is already installed: a dial that completes while the session adopts
/// another socket (a replace) must not overwrite the adopted one. The socket that loses is
/// shut down. Returns whether `sock` was installed.
fn install_socket(io: &SimpleIo, sock: &Arc<TcpStream>, gen: u64) -> bool {
    let mut st = io.lock();
    if st.sock.as_ref().is_some_and(|(_, g)| *g > gen) {
        drop(st);
        let _ = sock.shutdown(Shutdown::Both);
        return false;
    }
    if let Some((old, _)) = st.sock.replace((Arc::clone(sock), gen)) {
        if !Arc::ptr_eq(&old, sock) {
            let _ = old.shutdown(Shutdown::Both);
        }
    }
    true
}

fn drop_socket(io: &SimpleIo, conn: &ConnShared) {
    let mut st = io.lock();
    if let Some((s, g)) = st.sock.take() {
        if g == conn.gen() {
            st.sock = Some((s, g));
        } else {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn do_dial(core: &Arc<Core>, conn: &Arc<ConnShared>, threads: &Arc<Threads>) {
    core.deliver(conn, Event::Dial);
    // The transport generation the dial is for: an accept that makes the session adopt
    // another socket meanwhile (a connection race the peer wins) moves it on.
    let (target, timeout, dial_gen) = {
        let e = conn.engine();
        (
            e.peer_addr().and_then(|a| a.addr),
            core.config().options.ready_timeout,
            conn.gen(),
        )
    };
    let now = core.now();
    let Some(addr) = target else {
        conn.engine()
            .handle_transport_error(now, TransportError::ConnectFailed);
        pump(core, conn, threads);
        return;
    };
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => {
            let _ = s.set_nodelay(true);
            let sock = Arc::new(s);
            let gen = {
                let mut e = conn.engine();
                if conn.gen() != dial_gen
                    || e.phase() != crate::proto::Phase::Connecting
                    || e.is_open()
                {
                    // Replaced (the session adopted another socket) or marked down while
                    // we dialed. The writer spent its wakeup
                    // on this dial: have it look at the engine again (an adopted socket
                    // may have a reply to write).
                    drop(e);
                    let _ = sock.shutdown(Shutdown::Both);
                    pump(core, conn, threads);
                    return;
                }
                let g = conn.next_gen();
                e.handle_connected(core.now());
                g
            };
            if install_socket(io_of(conn), &sock, gen) {
                start_reader(core, conn, sock, gen, threads);
            }
        }
        Err(err) => {
            let kind = if err.kind() == io::ErrorKind::ConnectionRefused {
                TransportError::Refused
            } else {
                TransportError::ConnectFailed
            };
            debug!(conn = conn.id(), error = %err, "connect failed");
            conn.engine().handle_transport_error(core.now(), kind);
            core.fault(conn, &Fault::Transport(kind));
        }
    }
    pump(core, conn, threads);
}

/// A socket's reader thread. After a replace it may go on serving another session.
fn reader(
    core: Arc<Core>,
    mut conn: Arc<ConnShared>,
    sock: Arc<TcpStream>,
    mut gen: u64,
    threads: Arc<Threads>,
) {
    let counted = Arc::clone(&threads);
    let _running = Counted::new(&counted.readers);
    let mut tick = READ_TICK;
    let _ = sock.set_read_timeout(Some(tick));
    let mut rx = BytesMut::new();
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut blocked = false;
    // Until the session has its writer (an accepted socket before its session opens), this
    // thread writes the handshake and runs its timers, reading no longer than the next
    // deadline. Once a writer runs it stays (a replace hands the reader a session that has
    // one), so the check costs nothing on an open session's reads.
    let mut pre_session = !io_of(&conn).lock().writer;
    loop {
        if conn.gen() != gen || core.stopping.load(Ordering::Acquire) {
            break;
        }
        if pre_session {
            pre_session = !io_of(&conn).lock().writer;
            if pre_session && conn.engine().is_open() {
                // A session now (however its accept was decided): its writer takes over.
                start_writer(&core, &conn, &threads);
                pre_session = false;
            }
        }
        let want_tick = if pre_session {
            let current = io_of(&conn).lock().sock.clone();
            let Some(step) = write_step(&core, &conn, &threads, current.as_ref()) else {
                break;
            };
            if step.dial {
                // Not a handshake's work: the writer's.
                io_of(&conn).lock().dial = true;
                start_writer(&core, &conn, &threads);
                pre_session = false;
            }
            if conn.gen() != gen {
                break;
            }
            if step.more && pre_session {
                continue;
            }
            step.deadline.map_or(READ_TICK, |d| {
                core.until(d).clamp(Duration::from_millis(1), READ_TICK)
            })
        } else {
            READ_TICK
        };
        if want_tick != tick {
            tick = want_tick;
            let _ = sock.set_read_timeout(Some(tick));
        }
        let now = core.now();
        let status;
        if blocked {
            // A throttle holds this session: retry every millisecond (Ceph's rule), reading
            // nothing meanwhile so TCP pushes back on the sender.
            std::thread::sleep(Duration::from_millis(1));
            let mut e = conn.engine();
            if conn.gen() != gen {
                break;
            }
            status = feed(&mut e, now, &mut rx);
        } else {
            // Read into this thread's scratch buffer (zeroed once; its pages are only
            // touched as data lands), then append what came, instead of zeroing a whole
            // read buffer per `recv`.
            let want = conn
                .engine()
                .rx_hint()
                .clamp(scratch.len(), READ_CHUNK)
                .min(scratch.len());
            let r = if core.inject.fail_now() {
                core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
                Err(io::Error::other("injected socket failure"))
            } else {
                (&*sock).read(&mut scratch[..want])
            };
            match r {
                Ok(0) => {
                    lost(&core, &conn, gen, TransportError::Eof);
                    pump(&core, &conn, &threads);
                    break;
                }
                Ok(n) => {
                    rx.extend_from_slice(&scratch[..n]);
                    core.perf.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    let mut e = conn.engine();
                    if conn.gen() != gen {
                        break;
                    }
                    status = feed(&mut e, now, &mut rx);
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(err) => {
                    trace!(conn = conn.id(), error = %err, "read failed");
                    lost(&core, &conn, gen, TransportError::Io);
                    pump(&core, &conn, &threads);
                    break;
                }
            }
        }
        match status {
            Ok(InputStatus::Blocked) => {
                if !blocked {
                    core.perf.throttle_waits.fetch_add(1, Ordering::Relaxed);
                }
                blocked = true;
            }
            Ok(_) => blocked = false,
            Err(f) => {
                faulted(&core, &conn, gen, &sock, &threads, f);
                break;
            }
        }
        // An accept decision is the engine's own step: take it now.
        match accept_step(&core, &conn, &sock, gen, &threads) {
            Some((next, g)) => {
                conn = next;
                gen = g;
            }
            None => break,
        }
        pump(&core, &conn, &threads);
        if rx.is_empty() && rx.capacity() > READ_CHUNK {
            rx = BytesMut::new();
        }
    }
    trace!(conn = conn.id(), "reader exits");
}

/// The engine refused input on `sock` (of generation `gen`) with `f` and has reacted: the
/// socket is done.
fn faulted(
    core: &Arc<Core>,
    conn: &Arc<ConnShared>,
    gen: u64,
    sock: &TcpStream,
    threads: &Arc<Threads>,
    f: Fault,
) {
    core.fault(conn, &f);
    {
        let _e = conn.engine();
        if conn.gen() == gen {
            conn.next_gen();
        }
    }
    drop_socket(io_of(conn), conn);
    let _ = sock.shutdown(Shutdown::Both);
    pump(core, conn, threads);
}

fn feed(
    engine: &mut crate::proto::Connection,
    now: Instant,
    rx: &mut BytesMut,
) -> Result<InputStatus, Fault> {
    loop {
        match engine.handle_input(now, rx)? {
            InputStatus::Budget => continue,
            s => return Ok(s),
        }
    }
}

/// Resolves a pending accept, if the engine asked for one. Returns the session this reader
/// serves from now on (itself, or the existing session that adopted the socket), or `None`
/// if the reader should stop.
fn accept_step(
    core: &Arc<Core>,
    conn: &Arc<ConnShared>,
    sock: &Arc<TcpStream>,
    gen: u64,
    threads: &Arc<Threads>,
) -> Option<(Arc<ConnShared>, u64)> {
    let now = core.now();
    let (outcome, existing) = {
        let mut e = conn.engine();
        if drain(conn, &mut e) {
            // Not ours to act on: leave it for the pump that follows.
            io_of(conn).outbox().dial_pending = true;
        }
        let pending = std::mem::take(&mut io_of(conn).outbox().accept_pending);
        if pending {
            let (o, ex) = core.resolve_accept(conn, &mut e, now);
            if o == AcceptOutcome::Adopted {
                // The socket leaves this connection before its engine lock is released:
                // this connection's writer closes its io (shutting down the socket in it)
                // as soon as it sees the engine stopped, and the existing session is
                // taking that socket.
                io_of(conn).lock().sock = None;
            }
            (Some(o), ex)
        } else {
            (None, None)
        }
    };
    deliver_pending(core, conn);
    match (outcome, existing) {
        (Some(AcceptOutcome::Adopted), Some(ex)) => {
            // The existing session takes this socket (detached above); this connection is
            // gone.
            io_of(conn).close();
            core.forget(conn);
            let g = ex.gen();
            if !install_socket(io_of(&ex), sock, g) {
                pump(core, &ex, threads);
                return None;
            }
            start_writer(core, &ex, threads);
            pump(core, &ex, threads);
            Some((ex, g))
        }
        (outcome, existing) => {
            if let Some(ex) = existing {
                pump(core, &ex, threads);
            }
            if matches!(
                outcome,
                Some(AcceptOutcome::Opened | AcceptOutcome::ReplacedLossy)
            ) {
                // A session now: its writer takes over the output from this reader.
                start_writer(core, conn, threads);
            }
            Some((Arc::clone(conn), gen))
        }
    }
}

//! Transport `posix`: Ceph's AsyncMessenger shape over kernel TCP.
//!
//! A fixed set of worker threads, each an epoll loop (mio) that owns its connections: it
//! reads their sockets, runs their engines, writes what they yield and fires their timers.
//! Worker 0 also owns the listener and hands each accepted socket to the least-loaded
//! worker. Other threads reach a connection through its owner's bounded command queue plus
//! a waker; a dispatcher replying from a fast-dispatch callback (which runs on the owner)
//! skips the queue and writes on the same turn — no thread hop.
//!
//! Sockets are non-blocking and edge-triggered: a worker reads until `WouldBlock` (or a
//! per-turn budget, after which the connection is revisited on the next turn), and keeps
//! the unsent tail of what the engine gave it until the socket is writable again. A
//! throttled connection is simply not read (TCP pushes back on the sender) until its
//! engine's retry timer fires.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, trace, warn};

use super::conn::ConnShared;
use super::core::Core;
use super::driver::{self, Mailbox, Orphan, OwnerIo};
use super::idmap::IdMap;
use super::transport::{ConnIo, Transport};
use crate::msg::Message;
use crate::proto::{AcceptOutcome, Event, Fault, InputStatus, SendError, TransportError};
use crate::time::Instant;

use super::rxbuf::{ReadEnd, RxBuf};

const WAKE: Token = Token(usize::MAX);
const LISTEN: Token = Token(usize::MAX - 1);
/// Commands a worker queue holds before senders are pushed back.
const QUEUE_DEPTH: usize = 4096;
/// Reads per connection per turn before yielding to the others.
const READ_BUDGET: usize = 16;
/// Smallest read: many small messages come in with one syscall (a 4 KiB-message stream
/// otherwise costs one `recv` per message).
const READ_MIN: usize = 64 * 1024;
/// Largest single read.
const READ_CHUNK: usize = 1024 * 1024;
/// A read at least this large marks a connection as streaming: its next reads go straight
/// into its buffer (no copy, a few more `recv`s); smaller ones read once into the worker's
/// scratch and copy (one `recv`, a short copy: the ping-pong case).
const BULK_READ: usize = 32 * 1024;
/// Chunks per `writev`.
const IOV_MAX: usize = 64;
/// An empty receive buffer larger than this is released once its connection has been
/// quiet for [`RX_IDLE`]: busy connections keep (and reuse) theirs, idle ones hold none.
const RX_KEEP: usize = 8 * 1024;
/// How long a connection must go without reads before its buffer is released.
const RX_IDLE: Duration = Duration::from_secs(1);

/// A connected socket. std's stream rather than mio's: std receives into uninitialized
/// memory (`Read::read_to_end`, see [`RxBuf`]), mio's stream would zero it first. mio
/// watches it by its descriptor.
struct Sock(std::net::TcpStream);

impl From<mio::net::TcpStream> for Sock {
    fn from(s: mio::net::TcpStream) -> Self {
        Self(s.into())
    }
}

impl std::ops::Deref for Sock {
    type Target = std::net::TcpStream;

    fn deref(&self) -> &std::net::TcpStream {
        &self.0
    }
}

impl mio::event::Source for Sock {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(registry)
    }
}

/// Take charge of a connection, with the socket it now uses (if any).
struct Adopt {
    conn: Arc<ConnShared>,
    sock: Option<Sock>,
    rx: BytesMut,
    gen: u64,
}

impl Orphan for Adopt {
    /// The socket (if any) closes as the command drops.
    fn orphaned(self) -> Option<Arc<ConnShared>> {
        Some(self.conn)
    }
}

type Cmd = driver::Cmd<Adopt>;
type WorkerShared = Mailbox<Adopt>;

pub(crate) struct Posix {
    workers: driver::WorkerSet<Adopt>,
    listener: Mutex<Option<std::net::TcpListener>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    started: AtomicBool,
}

impl Posix {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            workers: driver::WorkerSet::new(workers, QUEUE_DEPTH),
            listener: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
        }
    }
}

impl Transport for Posix {
    fn new_io(&self) -> ConnIo {
        ConnIo::Worker(OwnerIo::new())
    }

    fn bind(&self, _core: &Arc<Core>, addr: SocketAddr) -> io::Result<SocketAddr> {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let bound = l.local_addr()?;
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
        Ok(bound)
    }

    fn start(&self, core: &Arc<Core>) -> io::Result<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(TcpListener::from_std);
        let mut listener = listener;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for (i, ws) in self.workers.iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKE)?;
            let _ = ws.waker.set(waker);
            let mut l = if i == 0 { listener.take() } else { None };
            if let Some(l) = l.as_mut() {
                poll.registry().register(l, LISTEN, Interest::READABLE)?;
            }
            let w = Worker {
                idx: i,
                poll,
                core: Arc::clone(core),
                me: Arc::clone(ws),
                peers: self.workers.to_vec(),
                listener: l,
                conns: IdMap::default(),
                scratch: vec![0; READ_CHUNK],
                next_sweep: Instant::ZERO,
                spare_events: Vec::new(),
                now: Instant::ZERO,
                touched: Vec::new(),
                next_token: 0,
                by_id: IdMap::default(),
                timers: BTreeSet::new(),
                pending_read: Vec::new(),
                stop: false,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ms-{}-w{i}", core.config().name))
                    .spawn(move || w.run())?,
            );
        }
        Ok(())
    }

    fn assign(&self, conn: &Arc<ConnShared>) {
        self.workers.assign(conn);
    }

    fn connect(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        let start = Cmd::Own(Adopt {
            conn: Arc::clone(conn),
            sock: None,
            rx: BytesMut::new(),
            gen: conn.gen(),
        });
        self.workers.start(core, conn, start);
    }

    fn send(&self, core: &Arc<Core>, conn: &Arc<ConnShared>, m: Message) -> Result<(), SendError> {
        self.workers.send(core, conn, m)
    }

    fn keepalive(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        self.workers.keepalive(core, conn);
    }

    fn closed(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        self.workers
            .closed(core, conn, self.started.load(Ordering::Acquire));
    }

    fn shutdown(&self, core: &Arc<Core>) {
        self.workers.shutdown(core);
    }

    fn join(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One connection as a worker holds it.
struct Entry {
    conn: Arc<ConnShared>,
    sock: Option<Sock>,
    /// The socket's transport generation (see `ConnShared::gen`).
    gen: u64,
    /// A non-blocking connect is in progress.
    connecting: bool,
    rx: RxBuf,
    /// The last read was large: read straight into `rx` (see [`BULK_READ`]).
    bulk: bool,
    /// Chunks taken from the engine and not yet fully written.
    tx: VecDeque<Bytes>,
    /// Input is held back by a throttle.
    blocked: bool,
    deadline: Option<Instant>,
    /// Queued for a service pass after the current command drain.
    touched: bool,
    /// The peer closed its side (or the socket errored): read until EOF or EAGAIN.
    read_to_end: bool,
    /// When the socket was last read (for releasing idle receive buffers).
    last_read: Instant,
}

struct Worker {
    idx: usize,
    poll: Poll,
    core: Arc<Core>,
    me: Arc<WorkerShared>,
    peers: Vec<Arc<WorkerShared>>,
    listener: Option<TcpListener>,
    conns: IdMap<usize, Entry>,
    /// Where reads land before they are appended to a connection's buffer.
    scratch: Vec<u8>,
    /// Next release of idle receive buffers.
    next_sweep: Instant,
    /// A cleared event vector, reused by the next pass.
    spare_events: Vec<Event>,
    /// The clock, read once per loop turn (STYLE.md R2).
    now: Instant,
    /// Connections commands touched, serviced once after the drain.
    touched: Vec<usize>,
    next_token: usize,
    by_id: IdMap<u64, usize>,
    timers: BTreeSet<(Instant, usize)>,
    /// Connections whose read budget ran out with data possibly left.
    pending_read: Vec<usize>,
    stop: bool,
}

/// What one service pass found, handled after the engine lock is released.
struct Pass {
    events: Vec<Event>,
    /// The transport must close the socket (engine fault, stale generation).
    close_sock: bool,
    /// An accept was resolved: outcome and the existing session it involved.
    accept: Option<(AcceptOutcome, Option<Arc<ConnShared>>)>,
}

impl Worker {
    fn run(mut self) {
        driver::enter(&self.core, Some(self.idx));
        let mut events = Events::with_capacity(1024);
        debug!(worker = self.idx, "worker started");
        while !self.stop {
            let timeout = if self.pending_read.is_empty() {
                // Wake at the next engine timer, and at least once per RX_IDLE so that the
                // sweep of idle receive buffers runs.
                let t = self
                    .timers
                    .first()
                    .map(|(t, _)| self.core.until(*t) + Duration::from_micros(1));
                Some(t.map_or(RX_IDLE, |t| t.min(RX_IDLE)))
            } else {
                Some(Duration::ZERO)
            };
            let mut timeout = timeout;
            if timeout != Some(Duration::ZERO) && !self.me.may_sleep() {
                timeout = Some(Duration::ZERO);
            }
            let polled = self.poll.poll(&mut events, timeout);
            self.me.awake();
            self.now = self.core.now();
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!(worker = self.idx, error = %e, "poll failed");
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKE => {}
                    LISTEN => self.accept_all(),
                    Token(t) => {
                        if ev.is_writable() {
                            self.writable(t);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            if ev.is_read_closed() || ev.is_error() {
                                // The peer's FIN (or an error) is already here: read on to
                                // the end of the stream, short reads or not.
                                if let Some(e) = self.conns.get_mut(&t) {
                                    e.read_to_end = true;
                                }
                            }
                            self.service(t, true);
                        }
                    }
                }
            }
            for t in std::mem::take(&mut self.pending_read) {
                self.service(t, true);
            }
            self.commands();
            self.fire_timers();
            self.sweep_buffers();
        }
        self.close_all();
        debug!(worker = self.idx, "worker stopped");
    }

    fn accept_all(&mut self) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((sock, peer)) => {
                    if self.core.stopping.load(Ordering::Acquire) {
                        // Shutting down: refuse (close) rather than start a session that no
                        // worker may be left to serve.
                        drop(sock);
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    let conn = self.core.accepted(peer);
                    let w = (0..self.peers.len())
                        .min_by_key(|&i| self.peers[i].load.load(Ordering::Relaxed))
                        .unwrap_or(self.idx);
                    driver::set_owner(&conn, w);
                    self.peers[w].load.fetch_add(1, Ordering::Relaxed);
                    trace!(worker = self.idx, to = w, %peer, conn = conn.id(), "accepted");
                    let cmd = Cmd::Own(Adopt {
                        conn,
                        sock: Some(Sock::from(sock)),
                        rx: BytesMut::new(),
                        gen: 0,
                    });
                    if w == self.idx {
                        self.handle(cmd);
                    } else if let Err(Cmd::Own(Adopt { conn, .. })) =
                        self.peers[w].push(&self.core, cmd)
                    {
                        warn!(
                            conn = conn.id(),
                            "worker queue full: dropping accepted socket"
                        );
                        self.core.mark_down_conn(&conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: stop accepting this turn; the flood drains.
                    self.core.perf.accept_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    fn commands(&mut self) {
        // Bounded: commands posted while we drain wait for the next turn. Sends only queue
        // on their engines here; each touched connection is then serviced once, so a burst
        // of sends leaves in one `writev`, not one per message.
        for _ in 0..QUEUE_DEPTH {
            let Some(cmd) = self.me.pop() else {
                break;
            };
            self.handle(cmd);
        }
        for t in std::mem::take(&mut self.touched) {
            if let Some(e) = self.conns.get_mut(&t) {
                e.touched = false;
                self.service(t, false);
            }
        }
        if !self.me.is_empty() {
            self.me.wake();
        }
    }

    /// Marks a connection for one service pass at the end of the command drain.
    fn touch(&mut self, t: usize) {
        if let Some(e) = self.conns.get_mut(&t) {
            if !e.touched {
                e.touched = true;
                self.touched.push(t);
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Own(Adopt {
                conn,
                sock,
                rx,
                gen,
            }) => self.adopt(conn, sock, rx, gen),
            Cmd::Send(posted) => {
                let conn = Arc::clone(posted.conn());
                if let Some(&t) = self.by_id.get(&conn.id()) {
                    if posted.enqueue(self.now).is_err() {
                        trace!(conn = conn.id(), "send on a closed connection dropped");
                    }
                    self.touch(t);
                } else if driver::owner(&conn) != self.idx {
                    driver::forward(&self.core, &self.peers, &conn, Cmd::Send(posted));
                }
            }
            Cmd::Keepalive(conn) => {
                if let Some(t) = self.route(&conn, || Cmd::Keepalive(Arc::clone(&conn))) {
                    conn.engine().send_keepalive();
                    self.touch(t);
                }
            }
            Cmd::Service(conn) => {
                if let Some(t) = self.route(&conn, || Cmd::Service(Arc::clone(&conn))) {
                    self.touch(t);
                }
            }
            Cmd::Closed(conn) => {
                if let Some(&t) = self.by_id.get(&conn.id()) {
                    self.drop_entry(t);
                }
            }
            Cmd::Shutdown => self.stop = true,
        }
    }

    /// The token of a connection this worker owns, or forwards `again()` to its owner.
    fn route(&mut self, conn: &Arc<ConnShared>, again: impl FnOnce() -> Cmd) -> Option<usize> {
        if let Some(&t) = self.by_id.get(&conn.id()) {
            return Some(t);
        }
        if driver::owner(conn) != self.idx {
            driver::forward(&self.core, &self.peers, conn, again());
        }
        None
    }

    fn adopt(&mut self, conn: Arc<ConnShared>, sock: Option<Sock>, rx: BytesMut, gen: u64) {
        if sock.is_none() && self.by_id.contains_key(&conn.id()) {
            // The start of a new outgoing connection that an accept reached first (it
            // adopted a socket for the session): already running.
            return;
        }
        if let Some(&t) = self.by_id.get(&conn.id()) {
            // The session takes over another socket (a replace): the old one goes.
            let e = self.conns.get_mut(&t).expect("by_id and conns agree");
            if let Some(mut old) = e.sock.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            e.sock = sock;
            e.gen = gen;
            e.rx = RxBuf::from_bytes(rx);
            e.bulk = false;
            e.tx.clear();
            e.connecting = false;
            e.blocked = false;
            e.read_to_end = false;
            if let Some(s) = e.sock.as_mut() {
                let _ = self.poll.registry().register(
                    s,
                    Token(t),
                    Interest::READABLE | Interest::WRITABLE,
                );
            }
            self.service(t, true);
            return;
        }
        let t = self.next_token;
        self.next_token += 1;
        let mut e = Entry {
            conn,
            sock,
            gen,
            connecting: false,
            rx: RxBuf::from_bytes(rx),
            bulk: false,
            tx: VecDeque::new(),
            blocked: false,
            deadline: None,
            touched: false,
            read_to_end: false,
            last_read: self.now,
        };
        if let Some(s) = e.sock.as_mut() {
            if let Err(err) =
                self.poll
                    .registry()
                    .register(s, Token(t), Interest::READABLE | Interest::WRITABLE)
            {
                warn!(error = %err, "register failed");
            }
        }
        self.by_id.insert(e.conn.id(), t);
        self.conns.insert(t, e);
        self.service(t, true);
    }

    fn writable(&mut self, t: usize) {
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        if e.connecting {
            self.finish_connect(t);
            return;
        }
        self.service(t, false);
    }

    fn finish_connect(&mut self, t: usize) {
        let now = self.now;
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        let Some(sock) = e.sock.as_mut() else { return };
        let result = match sock.take_error() {
            Ok(Some(err)) | Err(err) => Err(err),
            Ok(None) => sock.peer_addr().map(drop),
        };
        match result {
            Ok(()) => {
                e.connecting = false;
                let _ = sock.set_nodelay(true);
                let conn = Arc::clone(&e.conn);
                let mut engine = conn.engine();
                if conn.gen() != e.gen {
                    // The session took another socket (a replace) while this one connected.
                    drop(engine);
                    self.close_sock(t);
                    return;
                }
                e.gen = conn.next_gen();
                engine.handle_connected(now);
                drop(engine);
                self.service(t, true);
            }
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {} // not yet: wait
            Err(err) => {
                let kind = if err.kind() == io::ErrorKind::ConnectionRefused {
                    TransportError::Refused
                } else {
                    TransportError::ConnectFailed
                };
                debug!(conn = e.conn.id(), error = %err, "connect failed");
                e.connecting = false;
                self.close_sock(t);
                let e = self.conns.get_mut(&t).expect("still here");
                e.conn.engine().handle_transport_error(now, kind);
                self.core.fault(&e.conn.clone(), &Fault::Transport(kind));
                self.service(t, false);
            }
        }
    }

    fn dial(&mut self, t: usize) {
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        self.core.deliver(&e.conn, Event::Dial);
        let target = e.conn.engine().peer_addr().and_then(|a| a.addr);
        let now = self.now;
        let Some(addr) = target else {
            e.conn
                .engine()
                .handle_transport_error(now, TransportError::ConnectFailed);
            return;
        };
        if let Some(mut old) = e.sock.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        match mio::net::TcpStream::connect(addr) {
            Ok(s) => {
                let mut s = Sock::from(s);
                if let Err(err) = self.poll.registry().register(
                    &mut s,
                    Token(t),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    warn!(error = %err, "register failed");
                }
                e.sock = Some(s);
                e.gen = e.conn.gen();
                e.connecting = true;
                e.read_to_end = false;
                e.rx.clear();
                e.tx.clear();
            }
            Err(err) => {
                let kind = if err.kind() == io::ErrorKind::ConnectionRefused {
                    TransportError::Refused
                } else {
                    TransportError::ConnectFailed
                };
                e.conn.engine().handle_transport_error(now, kind);
            }
        }
    }

    fn close_sock(&mut self, t: usize) {
        if let Some(e) = self.conns.get_mut(&t) {
            if let Some(mut s) = e.sock.take() {
                let _ = self.poll.registry().deregister(&mut s);
                let _ = s.0.shutdown(std::net::Shutdown::Both);
            }
            e.rx.clear();
            e.bulk = false;
            e.tx.clear();
            e.blocked = false;
            e.connecting = false;
            e.read_to_end = false;
        }
    }

    fn drop_entry(&mut self, t: usize) {
        self.close_sock(t);
        if let Some(e) = self.conns.remove(&t) {
            self.by_id.remove(&e.conn.id());
            if let Some(d) = e.deadline {
                self.timers.remove(&(d, t));
            }
            self.me.load.fetch_sub(1, Ordering::Relaxed);
            self.core.forget(&e.conn);
        }
    }

    /// Once a second, releases the empty receive buffers of connections that went quiet.
    fn sweep_buffers(&mut self) {
        let now = self.now;
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + RX_IDLE;
        for e in self.conns.values_mut() {
            if e.rx.is_empty()
                && e.rx.capacity() > RX_KEEP
                && now.saturating_duration_since(e.last_read) >= RX_IDLE
            {
                e.rx.clear();
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((_, t)) = driver::pop_due(&mut self.timers, now) {
            if let Some(e) = self.conns.get_mut(&t) {
                e.deadline = None;
                let r = e.conn.engine().handle_timeout(now);
                if let Err(f) = r {
                    let conn = Arc::clone(&e.conn);
                    self.core.fault(&conn, &f);
                    self.close_sock(t);
                }
                let e = self.conns.get_mut(&t).expect("still here");
                let was_blocked = std::mem::take(&mut e.blocked);
                self.service(t, was_blocked);
            }
        }
    }

    /// Runs a connection: input (if `read`), engine events, output, timers. Loops until
    /// the engine has nothing more to do for now.
    fn service(&mut self, t: usize, read: bool) {
        let mut read = read;
        for _ in 0..8 {
            let Some(pass) = self.pass(t, read) else {
                return;
            };
            read = false;
            let again = self.after_pass(t, pass);
            if !again {
                break;
            }
        }
        self.flush_dirty();
    }

    /// One locked step over a connection's engine.
    fn pass(&mut self, t: usize, read: bool) -> Option<Pass> {
        let now = self.now;
        let core = Arc::clone(&self.core);
        let e = self.conns.get_mut(&t)?;
        let conn = Arc::clone(&e.conn);
        let mut engine = conn.engine();
        let mut pass = Pass {
            events: std::mem::take(&mut self.spare_events),
            close_sock: false,
            accept: None,
        };
        if e.sock.is_some() && e.gen != conn.gen() {
            // Another socket took this session over (replace): this one is stale.
            pass.close_sock = true;
        }
        // Input: first what is already buffered (a throttle retry, a resolved accept), and
        // only if the engine takes it, more from the socket. A throttled connection must
        // not read at all: what it read would pile up in `rx`, unbounded, for as long as
        // the dispatcher is stalled.
        let buffered = if !pass.close_sock && !e.connecting && !e.blocked && e.sock.is_some() {
            e.rx.input(engine.rx_hint())
        } else {
            None
        };
        if let Some(buf) = buffered {
            match feed(&mut engine, now, buf) {
                Ok(InputStatus::Blocked) => {
                    e.blocked = true;
                    core.perf.throttle_waits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(f) => {
                    core.perf.fault(&f);
                    pass.close_sock = true;
                }
            }
        }
        if let (true, false, false, Some(_), false) = (
            read,
            pass.close_sock,
            e.connecting,
            e.sock.as_ref(),
            e.blocked,
        ) {
            let mut reads = 0;
            loop {
                if reads == READ_BUDGET {
                    self.pending_read.push(t);
                    break;
                }
                reads += 1;
                let need = engine.rx_hint();
                let Some(sock) = e.sock.as_ref() else { break };
                let bulk = e.bulk;
                let r = if core.inject.fail_now() {
                    core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
                    Err(io::Error::other("injected socket failure"))
                } else if bulk {
                    e.rx.read_from(&sock.0, need, READ_MIN, READ_CHUNK)
                } else {
                    let want = need.clamp(READ_MIN, READ_CHUNK).min(self.scratch.len());
                    e.rx.read_once(&sock.0, &mut self.scratch[..want])
                };
                match r {
                    Ok((n, end)) => {
                        core.perf.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        e.bulk = n >= BULK_READ || (e.bulk && end == ReadEnd::Limit);
                        let gathering = e.rx.gathering();
                        if let Some(buf) = e.rx.input(need) {
                            match feed(&mut engine, now, buf) {
                                Ok(InputStatus::Blocked) => {
                                    e.blocked = true;
                                    core.perf.throttle_waits.fetch_add(1, Ordering::Relaxed);
                                    // An end of stream is seen again on the retry's read.
                                    break;
                                }
                                Ok(_) => {}
                                Err(f) => {
                                    core.perf.fault(&f);
                                    pass.close_sock = true;
                                    break;
                                }
                            }
                        } else {
                            // A large frame gathers: it is arriving all the same.
                            engine.note_unoffered(gathering);
                        }
                        match end {
                            ReadEnd::Eof => {
                                engine.handle_transport_error(now, TransportError::Eof);
                                core.perf.fault(&Fault::Transport(TransportError::Eof));
                                pass.close_sock = true;
                                break;
                            }
                            ReadEnd::Limit if bulk => {
                                // More is waiting. Read it in the next pass, after this
                                // one's messages were delivered: if they are gone by then,
                                // the buffer they were cut from is reused (a new one per
                                // read costs page faults).
                                self.pending_read.push(t);
                                break;
                            }
                            ReadEnd::Limit => {}
                            // Read to `WouldBlock`: the socket is empty.
                            ReadEnd::Drained if e.bulk => break,
                            // A short read emptied the socket's receive queue: anything
                            // arriving later (data, or the peer's FIN) raises a new edge, so
                            // skip the EAGAIN read. If the FIN had already arrived when the
                            // event was reported, `read_to_end` makes us read on.
                            ReadEnd::Drained if !e.read_to_end => break,
                            ReadEnd::Drained => {}
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        trace!(conn = conn.id(), error = %err, "read failed");
                        engine.handle_transport_error(now, TransportError::Io);
                        core.perf.fault(&Fault::Transport(TransportError::Io));
                        pass.close_sock = true;
                        break;
                    }
                }
            }
        }
        // Events (accept decisions are the engine's own step: taken under its lock).
        pass.accept = driver::drain_events(&core, &conn, &mut engine, now, &mut pass.events);
        // Output: take from the engine only what the socket can take now.
        if !pass.close_sock && !e.connecting {
            if let Some(sock) = e.sock.as_mut() {
                if let Err(err) = write_out(&sock.0, &mut e.tx, &mut engine, now, &core) {
                    trace!(conn = conn.id(), error = %err, "write failed");
                    engine.handle_transport_error(now, TransportError::Io);
                    core.perf.fault(&Fault::Transport(TransportError::Io));
                    pass.close_sock = true;
                    while let Some(ev) = engine.poll_event() {
                        pass.events.push(ev);
                    }
                }
            }
        }
        if read {
            e.last_read = now;
        }
        // Timer.
        driver::set_deadline(&mut self.timers, t, &mut e.deadline, engine.poll_timeout());
        if engine.is_closed() {
            pass.close_sock = true;
        }
        Some(pass)
    }

    /// Handles what a pass found, without the engine lock. Returns whether the connection
    /// should be serviced again (new work appeared).
    fn after_pass(&mut self, t: usize, pass: Pass) -> bool {
        let Some(conn) = self.conns.get(&t).map(|e| Arc::clone(&e.conn)) else {
            return false;
        };
        let mut again = false;
        // An adopted socket moves to the existing session (whose engine answers on it);
        // this connection's engine is stopped, which must not close the socket it hands
        // over.
        let adopted = matches!(pass.accept, Some((AcceptOutcome::Adopted, Some(_))));
        if pass.close_sock && !adopted {
            self.close_sock(t);
        }
        if let Some((outcome, existing)) = pass.accept {
            again |= self.accept_outcome(t, outcome, existing);
            if !self.conns.contains_key(&t) {
                // Adopted: this connection's events (none of interest) die with it.
                return false;
            }
        }
        let mut events = pass.events;
        for ev in events.drain(..) {
            match ev {
                Event::Dial => {
                    self.dial(t);
                    again = true;
                }
                ev => self.core.deliver(&conn, ev),
            }
        }
        // The (empty) vector serves the next pass: no allocation per message.
        self.spare_events = events;
        if conn.engine().is_closed() {
            self.drop_entry(t);
            return false;
        }
        again
    }

    /// Applies an accept outcome to the transport.
    fn accept_outcome(
        &mut self,
        t: usize,
        outcome: AcceptOutcome,
        existing: Option<Arc<ConnShared>>,
    ) -> bool {
        match (outcome, existing) {
            (AcceptOutcome::Adopted, Some(ex)) => {
                // The existing session takes this socket; this connection is gone.
                let Some(mut e) = self.conns.remove(&t) else {
                    return false;
                };
                self.by_id.remove(&e.conn.id());
                if let Some(d) = e.deadline {
                    self.timers.remove(&(d, t));
                }
                self.me.load.fetch_sub(1, Ordering::Relaxed);
                self.core.forget(&e.conn);
                let mut sock = e.sock.take();
                if let Some(s) = sock.as_mut() {
                    let _ = self.poll.registry().deregister(s);
                }
                let gen = ex.gen();
                let owner = driver::owner(&ex);
                let rx = e.rx.take();
                let cmd = Cmd::Own(Adopt {
                    conn: ex,
                    sock,
                    rx,
                    gen,
                });
                if owner == self.idx {
                    self.handle(cmd);
                } else if self.peers[owner].push(&self.core, cmd).is_err() {
                    warn!("worker queue full: replace failed");
                }
                false
            }
            (AcceptOutcome::ReplacedLossy, Some(ex)) | (AcceptOutcome::Replied(_), Some(ex)) => {
                // Its engine changed (stopped, or asked for a keepalive): its owner pumps it.
                self.kick(&ex);
                true
            }
            _ => true,
        }
    }

    /// Has a connection's owner service it (its engine changed under someone else).
    fn kick(&mut self, conn: &Arc<ConnShared>) {
        if let Some(&t) = self.by_id.get(&conn.id()) {
            self.service(t, false);
            return;
        }
        driver::forward(
            &self.core,
            &self.peers,
            conn,
            Cmd::Service(Arc::clone(conn)),
        );
    }

    /// Services connections that fast-dispatch callbacks wrote to.
    fn flush_dirty(&mut self) {
        loop {
            let dirty = driver::take_deferred();
            if dirty.is_empty() {
                return;
            }
            for c in dirty {
                if let Some(&t) = self.by_id.get(&c.id()) {
                    if let Some(pass) = self.pass(t, false) {
                        self.after_pass(t, pass);
                    }
                }
            }
        }
    }

    fn close_all(&mut self) {
        let tokens: Vec<usize> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(e) = self.conns.get(&t) {
                e.conn.engine().mark_down();
            }
            self.drop_entry(t);
        }
        // From here on, whoever queues a command for this worker discards it (see
        // `WorkerShared::push`); what is queued already is discarded now.
        self.me.close(&self.core);
        // Stop listening as the worker exits (not when the messenger is dropped).
        self.listener = None;
    }
}

/// Feeds the receive buffer to the engine until it stops making progress.
pub(super) fn feed(
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

/// Writes pending chunks, then asks the engine for more while the socket takes them.
/// Unsent bytes stay in `tx` (the front chunk advanced past what was written).
fn write_out(
    mut sock: &std::net::TcpStream,
    tx: &mut VecDeque<Bytes>,
    engine: &mut crate::proto::Connection,
    now: Instant,
    core: &Core,
) -> io::Result<()> {
    loop {
        if tx.is_empty() {
            while tx.len() < IOV_MAX {
                match engine.poll_transmit(now) {
                    Some(b) => tx.push_back(b),
                    None => break,
                }
            }
            if tx.is_empty() {
                return Ok(());
            }
        }
        let mut iov = [IoSlice::new(&[]); IOV_MAX];
        let mut k = 0;
        for (slot, b) in iov.iter_mut().zip(tx.iter()) {
            *slot = IoSlice::new(b);
            k += 1;
        }
        let iov = &iov[..k];
        let r = if core.inject.fail_now() {
            core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
            Err(io::Error::other("injected socket failure"))
        } else {
            sock.write_vectored(iov)
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                core.perf.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                while n > 0 {
                    let Some(front) = tx.front_mut() else { break };
                    if n >= front.len() {
                        n -= front.len();
                        tx.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

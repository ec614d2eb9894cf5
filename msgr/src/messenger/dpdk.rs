//! Transport `dpdk`: the messenger on the userspace TCP/IP stack (crate `stack`), Ceph's
//! AsyncMessenger shape with the kernel taken out of the data path.
//!
//! Each worker is one run-to-completion loop over one queue pair of the device: receive
//! burst → the worker's `NetStack` → this module's handler → the connection's sans-IO engine
//! → fast dispatch (inline, on the same lcore) → the reply queued on the engine → written to
//! the stack → transmit burst, all in one turn, with no system call and no thread hop. A
//! connection lives on the worker whose stack holds its TCP flow (the queue the device
//! steers it to; outbound connections pick a local port that steers back to their worker):
//! a flow cannot move between stacks, so neither can its session — except when an accept
//! on another worker replaces it (Ceph's lossless replace), where the session follows the
//! new socket to that worker.
//!
//! Other threads (the application, the DispatchQueue thread replying to queued messages)
//! reach a connection through its owner's bounded command queue, which the worker drains
//! every turn; the worker's idle policy bounds how long a command waits (busy-polling: not
//! at all; sleeping: at most the nap).
//!
//! The device is a [`Backend`]: DPDK (EAL arguments, a port, N queues, workers on lcores),
//! or an in-memory switch port for in-process tests of the same code.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use stack::netstack::StackError;
use stack::smoltcp::time::Instant as StackInstant;
use stack::smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};
use stack::worker::{Clock, Handler, MonotonicClock};
use stack::{ConnId, IdlePolicy, NetStack, Port, StackConfig, StackEvent};
use tracing::{debug, trace, warn};

use super::conn::ConnShared;
use super::core::Core;
use super::driver::{self, Mailbox, Orphan, OwnerIo};
use super::idmap::IdMap;
use super::transport::{ConnIo, Transport};
use crate::msg::Message;
use crate::proto::{AcceptOutcome, Event, Fault, InputStatus, SendError, TransportError};
use crate::time::Instant;

/// Commands a worker queue holds before senders are pushed back.
const QUEUE_DEPTH: usize = 4096;
/// Reads per connection per service pass (each takes what the socket holds, up to
/// [`READ_MAX`]).
const READ_BUDGET: usize = 16;
/// Engine read steps (frames: a message, an ack, a keepalive) per connection per pass:
/// what is left waits for the next turn, after this turn's replies have left, so the peer
/// works on them while this worker reads on (without it, a pipelined peer and this worker
/// take turns with whole batches, each idle while the other works). Also bounds how long
/// one busy connection holds the worker. Measured over the vhost pair with 0-byte OSD
/// writes (ops/s): 16 in flight 270k at 8-32 steps, 450-530k at 1-4; 128 in flight
/// 520k at 1, 600-640k at 2-32.
const INPUT_STEPS: usize = 4;
/// Largest single read from a socket's buffer.
const READ_MAX: usize = 1 << 20;
/// Chunks taken from the engine per write round.
const TX_CHUNKS: usize = 64;
/// How long a stopping worker keeps polling so its FINs leave.
const LINGER: Duration = Duration::from_millis(20);
/// How long `start` waits for the device to come up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How a userspace transport reaches the network.
pub enum Backend {
    /// A DPDK port (see [`DpdkConfig`]).
    Dpdk(DpdkConfig),
    /// A port of an in-memory switch: one worker on a thread, for in-process tests.
    Switch(stack::memlink::SwitchPort),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dpdk(c) => f.debug_tuple("Dpdk").field(c).finish(),
            Self::Switch(p) => write!(f, "Switch(port {})", p.index()),
        }
    }
}

/// The DPDK side of the `dpdk` transport.
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// EAL arguments (without the program name), e.g.
    /// `--no-pci --vdev=net_tap0,iface=dtap0 -l 0-1 --file-prefix msgr`.
    pub eal_args: Vec<String>,
    /// The DPDK port to use.
    pub port: u16,
    /// Workers, one per queue pair (the first on the main lcore, the others on the worker
    /// lcores of `-l`/`--lcores`).
    pub workers: u16,
    /// The port's MTU (`None`: the device's, normally 1500). Jumbo frames (9000, as Ceph
    /// cluster networks use) cut the per-packet work of bulk transfers; both ends and the
    /// switch between them must take them.
    pub mtu: Option<u16>,
}

/// Configuration of a userspace transport.
#[derive(Debug)]
pub struct UserspaceConfig {
    /// The device.
    pub backend: Backend,
    /// Our address.
    pub ip: Ipv4Addr,
    /// Our subnet's prefix length (neighbours in it are reached directly).
    pub prefix: u8,
    /// The next hop for addresses outside the subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Our MAC for backends that have none of their own (the switch).
    pub mac: [u8; 6],
    /// What a worker does when a turn finds nothing.
    pub idle: IdlePolicy,
}

impl UserspaceConfig {
    /// `ip/prefix` on `backend`, default idle policy (spin briefly, then nap ≤ 50 µs).
    pub fn new(backend: Backend, ip: Ipv4Addr, prefix: u8) -> Self {
        let o = ip.octets();
        Self {
            backend,
            ip,
            prefix,
            gateway: None,
            mac: [0x02, 0x6d, o[0], o[1], o[2], o[3]],
            idle: IdlePolicy::default(),
        }
    }
}

/// This transport's own commands (the rest are [`driver::Cmd`]'s).
enum Own {
    /// Take charge of a new outgoing connection (its engine has a Dial pending).
    Start(Arc<ConnShared>),
    /// The session moved to another worker (it adopted a socket there): forget it here,
    /// closing this worker's stale socket, without stopping the engine.
    Detach(Arc<ConnShared>),
    /// Capture this worker's frames to this handle, or stop (`None`).
    Capture(Option<stack::pcap::Capture>),
}

impl Orphan for Own {
    fn orphaned(self) -> Option<Arc<ConnShared>> {
        match self {
            Self::Start(conn) => Some(conn),
            Self::Detach(_) | Self::Capture(_) => None,
        }
    }
}

type Cmd = driver::Cmd<Own>;
type WorkerShared = Mailbox<Own>;

pub(crate) struct Dpdk {
    /// Taken by `start` (`None` after, or when the builder was given none).
    cfg: Mutex<Option<UserspaceConfig>>,
    ip: Ipv4Addr,
    workers: driver::WorkerSet<Own>,
    listen: Mutex<Option<u16>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
    /// Each worker's latest counters (published by the worker every [`REPORT_EVERY`]).
    reports: Vec<Arc<Mutex<serde_json::Value>>>,
}

/// How often a worker publishes its counters for `perf dump`.
const REPORT_EVERY: stack::smoltcp::time::Duration =
    stack::smoltcp::time::Duration::from_millis(100);

impl Dpdk {
    pub(crate) fn new(cfg: Option<UserspaceConfig>) -> Self {
        let n = match cfg.as_ref().map(|c| &c.backend) {
            Some(Backend::Dpdk(d)) => usize::from(d.workers.max(1)),
            _ => 1,
        };
        Self {
            reports: (0..n)
                .map(|_| Arc::new(Mutex::new(serde_json::Value::Null)))
                .collect(),
            ip: cfg.as_ref().map_or(Ipv4Addr::UNSPECIFIED, |c| c.ip),
            cfg: Mutex::new(cfg),
            workers: driver::WorkerSet::new(n, QUEUE_DEPTH),
            listen: Mutex::new(None),
            thread: Mutex::new(None),
            started: AtomicBool::new(false),
        }
    }
}

impl Transport for Dpdk {
    fn new_io(&self) -> ConnIo {
        ConnIo::Worker(OwnerIo::new())
    }

    fn bind(&self, _core: &Arc<Core>, addr: SocketAddr) -> io::Result<SocketAddr> {
        let ip = match addr {
            SocketAddr::V4(a) => *a.ip(),
            SocketAddr::V6(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the dpdk transport speaks IPv4 only",
                ))
            }
        };
        if !ip.is_unspecified() && ip != self.ip {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{ip} is not this stack's address ({})", self.ip),
            ));
        }
        // Port 0: Ceph's first OSD port (each stack is its own host: no clash).
        let port = if addr.port() == 0 { 6800 } else { addr.port() };
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
        Ok(SocketAddr::V4(SocketAddrV4::new(self.ip, port)))
    }

    fn start(&self, core: &Arc<Core>) -> io::Result<()> {
        if self.started.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let cfg = self
            .cfg
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "transport dpdk needs a device and an address (MessengerBuilder::userspace; \
                     on the command line --eal and --ip)",
                )
            })?;
        let listen = *self.listen.lock().unwrap_or_else(|e| e.into_inner());
        let bodies: Vec<Body> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, ws)| Body {
                state: WorkerState::new(i, Arc::clone(core), Arc::clone(ws), self.workers.to_vec()),
                listen,
                report: Arc::clone(&self.reports[i]),
            })
            .collect();
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = format!("ms-{}-dpdk", core.config().name);
        let t = std::thread::Builder::new()
            .name(name)
            .spawn(move || platform::run(cfg, bodies, ready_tx))?;
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        match ready_rx.recv_timeout(START_LIMIT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.join();
                Err(io::Error::other(e))
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the userspace stack did not come up within {START_LIMIT:?}"),
            )),
        }
    }

    fn assign(&self, conn: &Arc<ConnShared>) {
        self.workers.assign(conn);
    }

    fn connect(&self, core: &Arc<Core>, conn: &Arc<ConnShared>) {
        self.workers
            .start(core, conn, Cmd::Own(Own::Start(Arc::clone(conn))));
    }

    fn send(&self, core: &Arc<Core>, conn: &Arc<ConnShared>, m: Message) -> Result<(), SendError> {
        // From a fast-dispatch callback on the owning lcore: onto the engine now, written
        // when the callback returns, in this turn.
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
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    fn perf_section(&self) -> Option<(&'static str, serde_json::Value)> {
        let workers: Vec<serde_json::Value> = self
            .reports
            .iter()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        Some(("dpdk", serde_json::json!({ "workers": workers })))
    }

    fn capture(
        &self,
        core: &Arc<Core>,
        cap: Option<stack::pcap::Capture>,
    ) -> Result<(), &'static str> {
        if !self.started.load(Ordering::Acquire) {
            return Err("the dpdk transport is not running");
        }
        for (w, mb) in self.workers.iter().enumerate() {
            if mb.post(core, Cmd::Own(Own::Capture(cap.clone()))).is_err() {
                warn!(worker = w, "worker queue full: capture command lost");
                return Err("a worker's command queue is full");
            }
        }
        Ok(())
    }
}

/// What runs on one worker: the transport's state for it, handed to the backend, which
/// builds the worker's stack and calls [`Body::run`] on the worker's thread or lcore.
pub(crate) struct Body {
    state: WorkerState,
    listen: Option<u16>,
    report: Arc<Mutex<serde_json::Value>>,
}

impl Body {
    /// A guard that tells every worker to stop when dropped (a worker that unwinds must
    /// not leave the others running: whoever waits for them would wait forever).
    pub(crate) fn stopper(&self) -> Stopper {
        Stopper {
            core: Arc::clone(&self.state.core),
            workers: self.state.peers.clone(),
        }
    }

    /// The worker's loop, until the messenger shuts down.
    pub(crate) fn run<P: Port, C: Clock>(self, mut stack: NetStack<P>, clock: C, idle: IdlePolicy) {
        let core = Arc::clone(&self.state.core);
        driver::enter(&core, Some(self.state.idx));
        if let Some(p) = self.listen {
            if let Err(e) = stack.listen(p) {
                warn!(port = p, error = %e, "listen failed");
            }
        }
        debug!(worker = self.state.idx, "dpdk worker started");
        let report = self.report;
        let mut w = stack::Worker::new(stack, self.state, clock, idle);
        let mut next_report = w.now();
        let mut steps = 0u32;
        while !w.handler.stop {
            w.step();
            steps = steps.wrapping_add(1);
            if steps.is_multiple_of(1024) && w.now() >= next_report {
                next_report = w.now() + REPORT_EVERY;
                *report.lock().unwrap_or_else(|e| e.into_inner()) = worker_report(&w);
            }
        }
        *report.lock().unwrap_or_else(|e| e.into_inner()) = worker_report(&w);
        // As a host whose service exits: refuse new connections and reset handshakes in
        // flight (a peer must not complete one into a stack that is about to vanish), then
        // close the sessions.
        w.stack.stop_listening();
        w.handler.close_all(&mut w.stack);
        // Let the FINs leave (bounded), then stop for good.
        #[allow(clippy::disallowed_methods)] // a driver: bounds its linger by the clock
        let end = std::time::Instant::now() + LINGER;
        #[allow(clippy::disallowed_methods)]
        while std::time::Instant::now() < end {
            w.turn();
            std::thread::yield_now();
        }
        w.handler.me.close(&core);
        driver::enter(&core, None);
        debug!(worker = w.handler.idx, stats = ?w.stack.stats(), "dpdk worker stopped");
    }
}

/// One worker's counters for `perf dump`: its queue, sessions, loop and stack.
fn worker_report<P: Port, C: Clock>(w: &stack::Worker<P, WorkerState, C>) -> serde_json::Value {
    let ws = w.stats();
    let mut stack = serde_json::Map::new();
    for (k, v) in w.stack.stats().counters() {
        stack.insert(k.to_owned(), v.into());
    }
    let mut now = serde_json::Map::new();
    for (k, v) in w.stack.gauges() {
        now.insert(k.to_owned(), v.into());
    }
    serde_json::json!({
        "queue": w.handler.idx,
        "sessions": w.handler.conns.len(),
        "sockets": w.stack.connections(),
        "capturing": w.stack.capturing(),
        "turns": ws.turns,
        "busy_turns": ws.busy_turns,
        "busy_us": ws.busy_us,
        "slow_turns": ws.slow_turns,
        "max_turn_us": ws.max_turn_us,
        "yields": ws.yields,
        "sleeps": ws.sleeps,
        "stack": stack,
        "stack_now": now,
    })
}

/// See [`Body::stopper`].
pub(crate) struct Stopper {
    core: Arc<Core>,
    workers: Vec<Arc<WorkerShared>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.push(&self.core, Cmd::Shutdown);
        }
    }
}

/// One connection as a worker holds it.
struct Entry {
    conn: Arc<ConnShared>,
    sock: Option<ConnId>,
    gen: u64,
    connecting: bool,
    rx: BytesMut,
    tx: VecDeque<Bytes>,
    blocked: bool,
    deadline: Option<Instant>,
    touched: bool,
}

struct WorkerState {
    idx: usize,
    core: Arc<Core>,
    me: Arc<WorkerShared>,
    peers: Vec<Arc<WorkerShared>>,
    conns: IdMap<usize, Entry>,
    by_id: IdMap<u64, usize>,
    by_sock: IdMap<ConnId, usize>,
    timers: BTreeSet<(Instant, usize)>,
    touched: Vec<usize>,
    pending_read: Vec<usize>,
    spare_events: Vec<Event>,
    next_token: usize,
    now: Instant,
    /// The stack's clock at this turn (what capture timestamps are based on).
    stack_now: StackInstant,
    clock: EngineClock,
    stop: bool,
}

/// Engine time on a worker, from the stack's clock (the TSC on DPDK) instead of a
/// `clock_gettime` per turn and per event: the offset to the messenger's clock is taken
/// once a second (so the two cannot drift apart), and the result never steps back.
#[derive(Default)]
struct EngineClock {
    offset_ns: i64,
    resync_at_us: i64,
    last: Instant,
}

/// How often [`EngineClock`] re-reads the messenger's clock.
const CLOCK_RESYNC_US: i64 = 1_000_000;

impl EngineClock {
    fn now(&mut self, core: &Core, stack_now: StackInstant) -> Instant {
        let us = stack_now.total_micros();
        if us >= self.resync_at_us {
            let core_ns = i64::try_from(core.now().as_nanos()).unwrap_or(i64::MAX);
            self.offset_ns = core_ns.saturating_sub(us.saturating_mul(1000));
            self.resync_at_us = us.saturating_add(CLOCK_RESYNC_US);
        }
        let ns = us
            .saturating_mul(1000)
            .saturating_add(self.offset_ns)
            .max(0);
        let t = Instant::from_nanos(ns as u64);
        if t > self.last {
            self.last = t;
        }
        self.last
    }
}

/// What a pass does with input.
#[derive(Clone, Copy)]
enum Input {
    /// Works through buffered input (up to [`INPUT_STEPS`]), and reads the socket if `read`.
    Parse { read: bool },
    /// Leaves input for its turn: a pass for output alone (messages the dispatchers sent).
    /// Otherwise each reply sent from a fast-dispatch callback would bring on the next
    /// steps of input in the same turn, and one turn would work through all of it before
    /// any reply left, whatever the step budget.
    Leave,
}

struct Pass {
    events: Vec<Event>,
    close_sock: bool,
    accept: Option<(AcceptOutcome, Option<Arc<ConnShared>>)>,
}

impl WorkerState {
    fn new(
        idx: usize,
        core: Arc<Core>,
        me: Arc<WorkerShared>,
        peers: Vec<Arc<WorkerShared>>,
    ) -> Self {
        Self {
            idx,
            core,
            me,
            peers,
            conns: IdMap::default(),
            by_id: IdMap::default(),
            by_sock: IdMap::default(),
            timers: BTreeSet::new(),
            touched: Vec::new(),
            pending_read: Vec::new(),
            spare_events: Vec::new(),
            next_token: 0,
            now: Instant::ZERO,
            stack_now: StackInstant::ZERO,
            clock: EngineClock::default(),
            stop: false,
        }
    }

    fn accepted<P: Port>(&mut self, st: &mut NetStack<P>, sock: ConnId, remote: IpEndpoint) {
        if self.core.stopping.load(Ordering::Acquire) {
            let _ = st.abort(sock);
            return;
        }
        let IpAddress::Ipv4(ip) = remote.addr;
        let peer = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip.octets()), remote.port));
        let conn = self.core.accepted(peer);
        driver::set_owner(&conn, self.idx);
        self.me.load.fetch_add(1, Ordering::Relaxed);
        trace!(worker = self.idx, %peer, conn = conn.id(), "accepted");
        self.adopt(st, conn, Some(sock), BytesMut::new(), 0);
    }

    fn adopt<P: Port>(
        &mut self,
        st: &mut NetStack<P>,
        conn: Arc<ConnShared>,
        sock: Option<ConnId>,
        rx: BytesMut,
        gen: u64,
    ) {
        if let Some(&t) = self.by_id.get(&conn.id()) {
            // The session takes over another socket (a replace): the old one goes.
            self.close_sock(st, t);
            let e = self.conns.get_mut(&t).expect("by_id and conns agree");
            e.sock = sock;
            e.gen = gen;
            e.rx = rx;
            if let Some(s) = sock {
                self.by_sock.insert(s, t);
            }
            self.service(st, t, true);
            return;
        }
        let t = self.next_token;
        self.next_token += 1;
        let e = Entry {
            conn,
            sock,
            gen,
            connecting: false,
            rx,
            tx: VecDeque::new(),
            blocked: false,
            deadline: None,
            touched: false,
        };
        if let Some(s) = sock {
            self.by_sock.insert(s, t);
        }
        self.by_id.insert(e.conn.id(), t);
        self.conns.insert(t, e);
        self.service(st, t, true);
    }

    fn commands<P: Port>(&mut self, st: &mut NetStack<P>) -> bool {
        let mut any = false;
        for _ in 0..QUEUE_DEPTH {
            let Some(cmd) = self.me.pop() else {
                break;
            };
            any = true;
            self.handle(st, cmd);
        }
        for t in std::mem::take(&mut self.touched) {
            if let Some(e) = self.conns.get_mut(&t) {
                e.touched = false;
                self.service(st, t, false);
            }
        }
        any
    }

    fn touch(&mut self, t: usize) {
        if let Some(e) = self.conns.get_mut(&t) {
            if !e.touched {
                e.touched = true;
                self.touched.push(t);
            }
        }
    }

    fn handle<P: Port>(&mut self, st: &mut NetStack<P>, cmd: Cmd) {
        match cmd {
            Cmd::Own(Own::Start(conn)) => {
                // An accept may have reached the session first and moved it (with the
                // socket it adopted) here or elsewhere: then it is already running.
                if !self.by_id.contains_key(&conn.id()) && driver::owner(&conn) == self.idx {
                    self.adopt(st, conn, None, BytesMut::new(), 0);
                }
            }
            Cmd::Own(Own::Capture(cap)) => {
                let base = stack::pcap::TimeBase::from_system_clock(self.stack_now);
                debug!(worker = self.idx, on = cap.is_some(), "packet capture");
                st.set_capture(cap.map(|c| c.with_base(base)));
            }
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
                    self.drop_entry(st, t, true);
                }
            }
            Cmd::Own(Own::Detach(conn)) => {
                if let Some(&t) = self.by_id.get(&conn.id()) {
                    self.drop_entry(st, t, false);
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

    fn connected<P: Port>(&mut self, st: &mut NetStack<P>, sock: ConnId) {
        let Some(&t) = self.by_sock.get(&sock) else {
            return;
        };
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        e.connecting = false;
        let conn = Arc::clone(&e.conn);
        debug!(worker = self.idx, conn = conn.id(), sock = ?sock, "connected");
        let mut engine = conn.engine();
        if conn.gen() != e.gen {
            // The session took another socket (a replace) while this one connected.
            drop(engine);
            self.close_sock(st, t);
            return;
        }
        e.gen = conn.next_gen();
        engine.handle_connected(self.now);
        drop(engine);
        self.service(st, t, true);
    }

    /// The stack reports a socket gone (reset, timed out, closed after us, or — `refused` —
    /// an outbound connection the peer reset in its handshake).
    fn sock_closed<P: Port>(&mut self, st: &mut NetStack<P>, sock: ConnId, refused: bool) {
        let Some(t) = self.by_sock.remove(&sock) else {
            return;
        };
        let Some(e) = self.conns.get_mut(&t) else {
            return;
        };
        if e.sock != Some(sock) {
            return;
        }
        e.sock = None;
        debug!(worker = self.idx, conn = e.conn.id(), sock = ?sock, connecting = e.connecting, refused, "socket closed");
        let kind = match (e.connecting, refused) {
            (true, true) => TransportError::Refused,
            // The handshake timed out (unreachable, or a host gone).
            (true, false) => TransportError::ConnectFailed,
            (false, _) => TransportError::Io,
        };
        e.connecting = false;
        drop_input(&mut e.rx);
        e.tx.clear();
        let conn = Arc::clone(&e.conn);
        conn.engine().handle_transport_error(self.now, kind);
        self.core.fault(&conn, &Fault::Transport(kind));
        self.service(st, t, false);
    }

    fn dial<P: Port>(&mut self, st: &mut NetStack<P>, t: usize) {
        let Some(e) = self.conns.get(&t) else {
            return;
        };
        let conn = Arc::clone(&e.conn);
        self.core.deliver(&conn, Event::Dial);
        let target = conn.engine().peer_addr().and_then(|a| a.addr);
        self.close_sock(st, t);
        let ep = match target {
            Some(SocketAddr::V4(a)) => Some(IpEndpoint::new(
                IpAddress::Ipv4(Ipv4Address::from(a.ip().octets())),
                a.port(),
            )),
            _ => None,
        };
        let r = match ep {
            Some(ep) => st.connect(ep),
            None => Err(StackError::Unaddressable),
        };
        let e = self.conns.get_mut(&t).expect("still here");
        match r {
            Ok(s) => {
                debug!(worker = self.idx, conn = conn.id(), sock = ?s, ports = ?st.endpoints(s).ok(), "dial");
                e.sock = Some(s);
                e.gen = conn.gen();
                e.connecting = true;
                e.rx.clear();
                e.tx.clear();
                self.by_sock.insert(s, t);
            }
            Err(err) => {
                debug!(conn = conn.id(), error = %err, "connect failed");
                let mut engine = conn.engine();
                engine.handle_transport_error(self.now, TransportError::ConnectFailed);
                // The engine backs off and redials on its timer: arm it here, as no pass
                // follows this one (without it the session waited forever).
                driver::set_deadline(&mut self.timers, t, &mut e.deadline, engine.poll_timeout());
            }
        }
    }

    fn close_sock<P: Port>(&mut self, st: &mut NetStack<P>, t: usize) {
        if let Some(e) = self.conns.get_mut(&t) {
            if let Some(s) = e.sock.take() {
                self.by_sock.remove(&s);
                let _ = st.release(s);
            }
            drop_input(&mut e.rx);
            e.tx.clear();
            e.blocked = false;
            e.connecting = false;
        }
    }

    /// Forgets a connection; `forget` also removes it from the messenger (false when it
    /// only moved to another worker).
    fn drop_entry<P: Port>(&mut self, st: &mut NetStack<P>, t: usize, forget: bool) {
        self.close_sock(st, t);
        if let Some(e) = self.conns.remove(&t) {
            self.by_id.remove(&e.conn.id());
            if let Some(d) = e.deadline {
                self.timers.remove(&(d, t));
            }
            self.me.load.fetch_sub(1, Ordering::Relaxed);
            if forget {
                self.core.forget(&e.conn);
            }
        }
    }

    fn fire_timers<P: Port>(&mut self, st: &mut NetStack<P>) -> bool {
        let now = self.now;
        let mut any = false;
        while let Some((_, t)) = driver::pop_due(&mut self.timers, now) {
            any = true;
            if let Some(e) = self.conns.get_mut(&t) {
                e.deadline = None;
                let r = e.conn.engine().handle_timeout(now);
                trace!(worker = self.idx, conn = e.conn.id(), result = ?r.as_ref().err(), "timer");
                if let Err(f) = r {
                    let conn = Arc::clone(&e.conn);
                    self.core.fault(&conn, &f);
                    self.close_sock(st, t);
                }
                let e = self.conns.get_mut(&t).expect("still here");
                let was_blocked = std::mem::take(&mut e.blocked);
                self.service(st, t, was_blocked);
            }
        }
        any
    }

    fn service<P: Port>(&mut self, st: &mut NetStack<P>, t: usize, read: bool) {
        let mut read = read;
        for _ in 0..8 {
            let Some(pass) = self.pass(st, t, Input::Parse { read }) else {
                return;
            };
            read = false;
            if !self.after_pass(st, t, pass) {
                break;
            }
        }
        self.flush_dirty(st);
    }

    /// One locked step over a connection's engine: input, events, output, timer.
    fn pass<P: Port>(&mut self, st: &mut NetStack<P>, t: usize, input: Input) -> Option<Pass> {
        let (parse, read) = match input {
            Input::Parse { read } => (true, read),
            Input::Leave => (false, false),
        };
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
            pass.close_sock = true;
        }
        let live = !pass.close_sock && !e.connecting && e.sock.is_some();
        // Input: what is buffered first (a throttle retry), then the socket — unless a
        // throttle holds it back: then nothing is read (TCP's window pushes back).
        // Whether the step budget ran out with input left: the rest waits for the next turn.
        let mut more = false;
        if parse && live && !e.blocked && !e.rx.is_empty() {
            match engine.handle_input_steps(now, &mut e.rx, INPUT_STEPS) {
                Ok(InputStatus::Blocked) => {
                    e.blocked = true;
                    core.perf.throttle_waits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(InputStatus::Budget) => more = true,
                Ok(_) => {}
                Err(f) => {
                    core.perf.fault(&f);
                    pass.close_sock = true;
                }
            }
        }
        if let (true, true, false, false, false, Some(sock)) =
            (read, live, pass.close_sock, e.blocked, more, e.sock)
        {
            for _ in 0..READ_BUDGET {
                let want = engine.rx_hint().clamp(64 * 1024, READ_MAX);
                let rx = &mut e.rx;
                let r = if core.inject.fail_now() {
                    core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
                    Err(StackError::NotOpen)
                } else {
                    st.recv_with(sock, want, |b| rx.extend_from_slice(b))
                };
                match r {
                    Ok(0) => {
                        if st.peer_closed(sock).unwrap_or(true)
                            && st.recv_queue(sock).unwrap_or(0) == 0
                        {
                            engine.handle_transport_error(now, TransportError::Eof);
                            core.perf.fault(&Fault::Transport(TransportError::Eof));
                            pass.close_sock = true;
                        }
                        break;
                    }
                    Ok(n) => {
                        core.perf.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        match engine.handle_input_steps(now, &mut e.rx, INPUT_STEPS) {
                            Ok(InputStatus::Blocked) => {
                                e.blocked = true;
                                core.perf.throttle_waits.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(InputStatus::Budget) => {
                                more = true;
                                break;
                            }
                            Ok(_) => {}
                            Err(f) => {
                                core.perf.fault(&f);
                                pass.close_sock = true;
                                break;
                            }
                        }
                        if n < want {
                            // The socket is empty; more raises a new Readable.
                            if st.peer_closed(sock).unwrap_or(false) {
                                continue;
                            }
                            break;
                        }
                        if st.recv_queue(sock).unwrap_or(0) == 0 {
                            break;
                        }
                    }
                    Err(_) => {
                        engine.handle_transport_error(now, TransportError::Io);
                        core.perf.fault(&Fault::Transport(TransportError::Io));
                        pass.close_sock = true;
                        break;
                    }
                }
            }
            if !pass.close_sock && !e.blocked && st.recv_queue(sock).unwrap_or(0) > 0 {
                more = true;
            }
        }
        // More in the socket, or read but not parsed yet: next turn, after this one's
        // output has left.
        if more && !pass.close_sock && !e.blocked {
            self.pending_read.push(t);
        }
        pass.accept = driver::drain_events(&core, &conn, &mut engine, now, &mut pass.events);
        if let (false, false, Some(sock)) = (pass.close_sock, e.connecting, e.sock) {
            if let Err(err) = write_out(st, sock, &mut e.tx, &mut engine, now, &core) {
                trace!(conn = conn.id(), error = %err, "write failed");
                engine.handle_transport_error(now, TransportError::Io);
                core.perf.fault(&Fault::Transport(TransportError::Io));
                pass.close_sock = true;
                while let Some(ev) = engine.poll_event() {
                    pass.events.push(ev);
                }
            }
        }
        driver::set_deadline(&mut self.timers, t, &mut e.deadline, engine.poll_timeout());
        if engine.is_closed() {
            pass.close_sock = true;
        }
        Some(pass)
    }

    fn after_pass<P: Port>(&mut self, st: &mut NetStack<P>, t: usize, pass: Pass) -> bool {
        let Some(conn) = self.conns.get(&t).map(|e| Arc::clone(&e.conn)) else {
            return false;
        };
        let mut again = false;
        let adopted = matches!(pass.accept, Some((AcceptOutcome::Adopted, Some(_))));
        if pass.close_sock && !adopted {
            self.close_sock(st, t);
        }
        if let Some((outcome, existing)) = pass.accept {
            again |= self.accept_outcome(st, t, outcome, existing);
            if !self.conns.contains_key(&t) {
                return false;
            }
        }
        let mut events = pass.events;
        for ev in events.drain(..) {
            match ev {
                Event::Dial => {
                    self.dial(st, t);
                    again = true;
                }
                ev => self.core.deliver(&conn, ev),
            }
        }
        self.spare_events = events;
        if conn.engine().is_closed() {
            self.drop_entry(st, t, true);
            return false;
        }
        again
    }

    fn accept_outcome<P: Port>(
        &mut self,
        st: &mut NetStack<P>,
        t: usize,
        outcome: AcceptOutcome,
        existing: Option<Arc<ConnShared>>,
    ) -> bool {
        match (outcome, existing) {
            (AcceptOutcome::Adopted, Some(ex)) => {
                // The existing session takes this socket. The socket cannot leave this
                // worker's stack, so the session comes here.
                let Some(mut e) = self.conns.remove(&t) else {
                    return false;
                };
                self.by_id.remove(&e.conn.id());
                if let Some(d) = e.deadline {
                    self.timers.remove(&(d, t));
                }
                self.me.load.fetch_sub(1, Ordering::Relaxed);
                self.core.forget(&e.conn);
                let sock = e.sock.take();
                if let Some(s) = sock {
                    self.by_sock.remove(&s);
                }
                let rx = std::mem::take(&mut e.rx);
                let gen = ex.gen();
                let owner = driver::owner(&ex);
                if owner != self.idx {
                    driver::set_owner(&ex, self.idx);
                    self.me.load.fetch_add(1, Ordering::Relaxed);
                    if owner < self.peers.len() {
                        let cmd = Cmd::Own(Own::Detach(Arc::clone(&ex)));
                        let _ = self.peers[owner].push(&self.core, cmd);
                    }
                }
                self.adopt(st, ex, sock, rx, gen);
                false
            }
            (AcceptOutcome::ReplacedLossy, Some(ex)) | (AcceptOutcome::Replied(_), Some(ex)) => {
                self.kick(st, &ex);
                true
            }
            _ => true,
        }
    }

    fn kick<P: Port>(&mut self, st: &mut NetStack<P>, conn: &Arc<ConnShared>) {
        if let Some(&t) = self.by_id.get(&conn.id()) {
            self.service(st, t, false);
            return;
        }
        driver::forward(
            &self.core,
            &self.peers,
            conn,
            Cmd::Service(Arc::clone(conn)),
        );
    }

    fn flush_dirty<P: Port>(&mut self, st: &mut NetStack<P>) {
        loop {
            let dirty = driver::take_deferred();
            if dirty.is_empty() {
                return;
            }
            for c in dirty {
                if let Some(&t) = self.by_id.get(&c.id()) {
                    if let Some(pass) = self.pass(st, t, Input::Leave) {
                        self.after_pass(st, t, pass);
                    }
                }
            }
        }
    }

    fn close_all<P: Port>(&mut self, st: &mut NetStack<P>) {
        let tokens: Vec<usize> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(e) = self.conns.get(&t) {
                e.conn.engine().mark_down();
            }
            self.drop_entry(st, t, true);
        }
    }
}

impl<P: Port> Handler<P> for WorkerState {
    fn event(&mut self, st: &mut NetStack<P>, ev: StackEvent, now: StackInstant) {
        self.stack_now = now;
        self.now = self.clock.now(&self.core, now);
        match ev {
            StackEvent::Accepted { conn, remote, .. } => self.accepted(st, conn, remote),
            StackEvent::Connected(s) => self.connected(st, s),
            StackEvent::Readable(s) => {
                if let Some(&t) = self.by_sock.get(&s) {
                    self.service(st, t, true);
                }
            }
            StackEvent::Writable(s) => {
                if let Some(&t) = self.by_sock.get(&s) {
                    self.service(st, t, false);
                }
            }
            StackEvent::Closed(s) => self.sock_closed(st, s, false),
            StackEvent::Refused(s) => self.sock_closed(st, s, true),
        }
    }

    fn turn(&mut self, st: &mut NetStack<P>, now: StackInstant) -> bool {
        self.stack_now = now;
        self.now = self.clock.now(&self.core, now);
        let mut any = self.commands(st);
        for t in std::mem::take(&mut self.pending_read) {
            any = true;
            self.service(st, t, true);
        }
        any |= self.fire_timers(st);
        any
    }
}

/// Empties a receive buffer whose socket is gone; a large one gives its memory back (a
/// session waiting to reconnect, or one that never will, must not pin megabytes).
fn drop_input(rx: &mut BytesMut) {
    if rx.capacity() > 64 * 1024 {
        *rx = BytesMut::new();
    } else {
        rx.clear();
    }
}

/// Writes pending chunks to the socket, then asks the engine for more while it takes them.
fn write_out<P: Port>(
    st: &mut NetStack<P>,
    sock: ConnId,
    tx: &mut VecDeque<Bytes>,
    engine: &mut crate::proto::Connection,
    now: Instant,
    core: &Core,
) -> Result<(), StackError> {
    loop {
        if tx.is_empty() {
            while tx.len() < TX_CHUNKS {
                match engine.poll_transmit(now) {
                    Some(b) => tx.push_back(b),
                    None => break,
                }
            }
            if tx.is_empty() {
                return Ok(());
            }
        }
        // One injection point per batch of chunks, as the kernel transports have one per
        // `writev`.
        if core.inject.fail_now() {
            core.perf.injected_failures.fetch_add(1, Ordering::Relaxed);
            return Err(StackError::NotOpen);
        }
        while let Some(front) = tx.front_mut() {
            let n = st.send(sock, front)?;
            core.perf.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            if n < front.len() {
                // The socket buffer is full: `Writable` brings us back.
                front.advance(n);
                return Ok(());
            }
            tx.pop_front();
        }
    }
}

/// The addressing and loop settings of a [`UserspaceConfig`], without its backend.
pub(crate) struct Net {
    pub(crate) ip: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) mac: [u8; 6],
    pub(crate) idle: IdlePolicy,
}

/// Stack configuration for one worker.
fn stack_config(cfg: &Net, mac: [u8; 6], queue: u16) -> StackConfig {
    let o = cfg.ip.octets();
    let mut sc = StackConfig::new(
        EthernetAddress(mac),
        Ipv4Cidr::new(Ipv4Address::new(o[0], o[1], o[2], o[3]), cfg.prefix),
    );
    sc.gateway = cfg.gateway.map(|g| Ipv4Address::from(g.octets()));
    sc.queue = queue;
    sc.seed ^= u64::from(u32::from(cfg.ip)) << 16 | u64::from(queue);
    sc
}

/// Bringing up a backend and running the workers on it.
mod platform {
    use super::*;

    /// Runs on the transport's thread: brings the device up, reports on `ready`, runs the
    /// workers until they stop, tears the device down.
    pub(super) fn run(
        cfg: UserspaceConfig,
        bodies: Vec<Body>,
        ready: mpsc::Sender<Result<(), String>>,
    ) {
        let UserspaceConfig {
            backend,
            ip,
            prefix,
            gateway,
            mac,
            idle,
        } = cfg;
        let net = Net {
            ip,
            prefix,
            gateway,
            mac,
            idle,
        };
        match backend {
            Backend::Switch(port) => switch(&net, port, bodies, &ready),
            Backend::Dpdk(d) => dpdk_platform::run(&net, &d, bodies, &ready),
        }
    }

    fn switch(
        net: &Net,
        port: stack::memlink::SwitchPort,
        bodies: Vec<Body>,
        ready: &mpsc::Sender<Result<(), String>>,
    ) {
        // One worker: a switch port is one queue.
        let clock = MonotonicClock::new();
        let sc = stack_config(net, net.mac, 0);
        let stack = NetStack::new(sc, port, stack::l2::Neighbors::new(), clock.now());
        let _ = ready.send(Ok(()));
        if let Some(b) = bodies.into_iter().next() {
            b.run(stack, clock, net.idle);
        }
    }
}

#[path = "dpdk_platform.rs"]
mod dpdk_platform;

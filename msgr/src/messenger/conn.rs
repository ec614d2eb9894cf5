//! Connections as the application sees them: [`ConnectionRef`], a cheap handle to one
//! session, valid across reconnects and replacements (the session object outlives sockets,
//! as in Ceph), and the shared state behind it.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::core::Core;
use super::transport::ConnIo;
use crate::entity::{EntityAddr, EntityType};
use crate::msg::Message;
use crate::proto::{ConnStats, Connection, Phase, SendError};
use crate::time::Instant;

/// The state one session shares between the threads that drive it.
pub(crate) struct ConnShared {
    id: u64,
    /// The sans-IO engine. Locked by the thread driving the connection; never held while
    /// calling a dispatcher or doing I/O.
    engine: Mutex<Connection>,
    pub(crate) core: Weak<Core>,
    /// Transport-specific state (sockets, owner worker, wakeups).
    pub(crate) io: ConnIo,
    /// Dials so far (the first is a connect, the rest reconnects).
    pub(crate) dials: AtomicU64,
    /// Transport generation: bumped (under the engine lock) whenever a different socket
    /// takes over the session. A transport feeds the engine only from a socket whose
    /// generation is current, so a replaced socket's late bytes never reach the session.
    pub(crate) gen: AtomicU64,
    /// Set once the session is over (forgotten by the core), so senders can refuse
    /// without taking the engine lock.
    pub(crate) closed: std::sync::atomic::AtomicBool,
    /// Messages (and their payload bytes) on their way to the engine through a worker's
    /// mailbox: counted against the send limits with what the engine holds.
    pub(crate) posted_msgs: AtomicUsize,
    pub(crate) posted_bytes: AtomicUsize,
    /// An accepted connection in the core's set of handshakes in progress (see
    /// `Core::accepted`); cleared when it leaves the set.
    pub(crate) handshaking: std::sync::atomic::AtomicBool,
}

impl ConnShared {
    pub(crate) fn new(id: u64, engine: Connection, core: Weak<Core>, io: ConnIo) -> Arc<Self> {
        Arc::new(Self {
            id,
            engine: Mutex::new(engine),
            core,
            io,
            dials: AtomicU64::new(0),
            gen: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            posted_msgs: AtomicUsize::new(0),
            posted_bytes: AtomicUsize::new(0),
            handshaking: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Locks the engine (a poisoned lock is taken over: the engine has no invariants a
    /// panicking dispatcher could break, since dispatchers never run under this lock).
    pub(crate) fn engine(&self) -> MutexGuard<'_, Connection> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn core(&self) -> Option<Arc<Core>> {
        self.core.upgrade()
    }

    /// The current transport generation.
    pub(crate) fn gen(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// Starts a new transport generation; call with the engine locked.
    pub(crate) fn next_gen(&self) -> u64 {
        self.gen.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Takes an accepted connection out of the core's handshakes in progress once its
    /// engine is past the handshake (open, parked or closed). Drivers call it whenever they
    /// drain the engine's events, with the engine locked; a relaxed load otherwise.
    pub(crate) fn note_handshake(&self, engine: &Connection) {
        if self.handshaking.load(Ordering::Relaxed) && engine.phase() != Phase::Accepting {
            if let Some(core) = self.core() {
                core.handshake_over(self);
            }
        }
    }
}

impl fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.id)
    }
}

/// A handle to one session with a peer. Clones are cheap and refer to the same session.
#[derive(Clone)]
pub struct ConnectionRef(pub(crate) Arc<ConnShared>);

impl ConnectionRef {
    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.0.id()
    }

    /// The peer's address, once known (accepted sessions learn it in the handshake).
    pub fn peer_addr(&self) -> Option<EntityAddr> {
        self.0.engine().peer_addr()
    }

    /// The address the peer announced when it was not the one dialed (the session then
    /// fails as misbehaved): e.g. a daemon's random nonce, for a tool to retry with.
    pub fn announced_addr(&self) -> Option<EntityAddr> {
        self.0.engine().announced_addr()
    }

    /// The peer's entity type, once known.
    pub fn peer_type(&self) -> Option<EntityType> {
        self.0.engine().peer_type()
    }

    /// Negotiated features (0 before the first handshake completes).
    pub fn features(&self) -> u64 {
        self.0.engine().features()
    }

    /// Whether the session is open right now.
    pub fn is_connected(&self) -> bool {
        self.0.engine().is_open()
    }

    /// Where the session is.
    pub fn phase(&self) -> Phase {
        self.0.engine().phase()
    }

    /// Whether the session is lossy (as the server decided).
    pub fn is_lossy(&self) -> bool {
        self.0.engine().policy().lossy
    }

    /// Counters of this session.
    pub fn stats(&self) -> ConnStats {
        self.0.engine().stats()
    }

    /// Messages queued and not yet written, and written but not yet acked.
    pub fn backlog(&self) -> (usize, usize) {
        let e = self.0.engine();
        (e.queued(), e.unacked())
    }

    /// The stamp of the latest keepalive ack (our clock when we sent it).
    pub fn last_keepalive_ack(&self) -> Option<Instant> {
        self.0.engine().last_keepalive_ack()
    }

    /// Queues a message (priority 0 means the default). Lossless sessions deliver it
    /// exactly once across faults; lossy ones may drop it on a reset.
    pub fn send_message(&self, m: Message) -> Result<(), SendError> {
        match self.0.core() {
            Some(core) => {
                let ty = m.ty();
                let r = core.transport.send(&core, &self.0, m);
                if r.is_ok() {
                    core.perf.msg_out(ty);
                }
                r
            }
            None => Err(SendError::Closed(Box::new(m))),
        }
    }

    /// Sends a KEEPALIVE2 (answered with an ack carrying our stamp).
    pub fn send_keepalive(&self) {
        if let Some(core) = self.0.core() {
            core.transport.keepalive(&core, &self.0);
        }
    }

    /// Closes the session and drops what is queued, telling no dispatcher.
    pub fn mark_down(&self) {
        if let Some(core) = self.0.core() {
            core.mark_down_conn(&self.0);
        }
    }
}

impl PartialEq for ConnectionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ConnectionRef {}

impl fmt::Debug for ConnectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionRef(#{})", self.id())
    }
}

/// Ids for new connections.
pub(crate) static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

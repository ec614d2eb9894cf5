//! What `ping` and `monmap` share: a client messenger whose received messages land in a
//! channel, and session establishment that says why it failed (refused, wrong nonce, wrong
//! peer type, not a Ceph peer...) instead of just timing out.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::messenger::{ConnectionRef, Dispatcher, Incoming, Messenger};
use msgr::msg::{Message, MsgType};
use msgr::proto::Policy;
use tracing::info;

use crate::net::Net;
use crate::PeerAddr;

/// How often establishment looks at the session and the counters.
const POLL: Duration = Duration::from_millis(2);

/// Takes a received message on the network thread that read it, or gives it back.
pub(crate) type Handler = Arc<dyn Fn(Incoming) -> Option<Incoming> + Send + Sync>;

/// Hands every received message to the installed [`Handler`] (which runs on the network
/// thread: a reply sent from it leaves in the same turn), and what it declines to a channel.
struct Inbox {
    tx: Sender<Message>,
    handler: Arc<RwLock<Option<Handler>>>,
}

impl Dispatcher for Inbox {
    fn ms_can_fast_dispatch_any(&self) -> bool {
        true
    }

    fn ms_can_fast_dispatch(&self, _m: &Message) -> bool {
        true
    }

    fn ms_fast_dispatch(&self, m: Incoming) {
        let h = self
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let m = match h {
            Some(h) => match h(m) {
                Some(m) => m,
                None => return,
            },
            None => m,
        };
        // The receiver is gone only when the program is ending.
        let _ = self.tx.send(m.msg);
    }
}

/// A random nonce, as Ceph gives clients (std's per-process random hasher keys).
pub(crate) fn random_nonce() -> u32 {
    let h = RandomState::new().hash_one(std::process::id());
    // Keep the low half; 0 is what monitors use, so avoid it.
    (h as u32).max(1)
}

/// A started client messenger (`client.?`, lossy towards everyone) and its inbox.
pub(crate) struct Client {
    pub(crate) msgr: Messenger,
    pub(crate) rx: Receiver<Message>,
    handler: Arc<RwLock<Option<Handler>>>,
}

impl Client {
    pub(crate) fn start(net: &Net) -> Result<Self, String> {
        Self::with_workers(net, 1)
    }

    /// A client whose messenger has `workers` network threads (posix) or queues (dpdk).
    pub(crate) fn with_workers(net: &Net, workers: usize) -> Result<Self, String> {
        let transport = net.transport;
        let msgr = net
            .builder(
                EntityName::new(EntityType::CLIENT, EntityName::NEW),
                random_nonce(),
                Some(workers),
            )
            .build();
        msgr.set_default_policy(Policy::lossy_client(0));
        let (tx, rx) = mpsc::channel();
        let handler = Arc::new(RwLock::new(None));
        msgr.add_dispatcher_tail(Arc::new(Inbox {
            tx,
            handler: Arc::clone(&handler),
        }));
        msgr.start()
            .map_err(|e| format!("starting the {} messenger: {e}", transport.name()))?;
        Ok(Self { msgr, rx, handler })
    }

    /// Installs (or removes) the handler that sees received messages first, on the
    /// network thread.
    pub(crate) fn set_handler(&self, h: Option<Handler>) {
        *self.handler.write().unwrap_or_else(|e| e.into_inner()) = h;
    }

    /// Waits up to `timeout` for a message of type `ty` (others are dropped).
    pub(crate) fn recv_type(&self, ty: MsgType, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(m) if m.ty() == ty => return Some(m),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The fault counters by cause.
    fn faults(&self) -> [u64; LABELS.len()] {
        let p = self.msgr.perf_dump();
        LABELS.map(|l| p["msgr"]["faults"][l].as_u64().unwrap_or(0))
    }
}

/// Why a session could not be established.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// TCP connection refused.
    Refused,
    /// The peer rejected our protocol version, features or authorizer (BADPROTOVER...).
    Incompatible,
    /// The peer broke the handshake rules, e.g. announced another address (nonce): then
    /// `announced` is what it announced.
    Misbehaved { announced: Option<EntityAddr> },
    /// The peer does not speak msgr v1 (bad banner or undecodable handshake).
    NotCeph,
    /// No connection within the timeout (unreachable, or a silent peer).
    TimedOut {
        /// Whether TCP connects failed (other than refused).
        connect_failed: bool,
    },
}

impl ConnectError {
    pub(crate) fn describe(&self, addr: &EntityAddr, timeout: Duration) -> String {
        match self {
            Self::Refused => format!("cannot connect to {addr}: connection refused"),
            Self::Incompatible => {
                format!("{addr} refused the session (protocol version, features or authorizer)")
            }
            Self::Misbehaved { .. } => format!(
                "{addr} broke the msgr v1 handshake (does it announce another address or \
                 nonce? --log-level warn shows why)"
            ),
            Self::NotCeph => format!("{addr} does not speak Ceph msgr v1"),
            Self::TimedOut {
                connect_failed: true,
            } => format!("cannot connect to {addr}: unreachable (gave up after {timeout:?})"),
            Self::TimedOut { .. } => {
                format!("no session with {addr} within {timeout:?}")
            }
        }
    }
}

/// Opens a session with `addr` as a peer of type `ty`, waiting up to `timeout`, and stops at
/// the first fault that will not go away by retrying.
pub(crate) fn establish(
    c: &Client,
    addr: EntityAddr,
    ty: EntityType,
    timeout: Duration,
) -> Result<ConnectionRef, ConnectError> {
    let base = c.faults();
    let conn = c.msgr.connect_to(addr, ty);
    let deadline = Instant::now() + timeout;
    loop {
        if conn.is_connected() {
            return Ok(conn);
        }
        let now = c.faults();
        let grew = |l: &str| {
            LABELS
                .iter()
                .position(|x| *x == l)
                .is_some_and(|i| now[i] > base[i])
        };
        let err = if grew("incompatible") {
            Some(ConnectError::Incompatible)
        } else if grew("misbehaved") {
            Some(ConnectError::Misbehaved {
                announced: conn.announced_addr(),
            })
        } else if grew("bad_banner") || grew("decode") || grew("unknown_tag") {
            Some(ConnectError::NotCeph)
        } else if grew("refused") {
            Some(ConnectError::Refused)
        } else {
            None
        };
        if let Some(e) = err {
            conn.mark_down();
            return Err(e);
        }
        if Instant::now() >= deadline {
            let connect_failed = grew("connect_failed");
            conn.mark_down();
            return Err(ConnectError::TimedOut { connect_failed });
        }
        std::thread::sleep(POLL);
    }
}

const LABELS: [&str; 7] = [
    "incompatible",
    "misbehaved",
    "bad_banner",
    "decode",
    "unknown_tag",
    "refused",
    "connect_failed",
];

/// [`establish`], and if the peer announces another nonce than the default one the user
/// left implicit, once more with the nonce it announces (`msgr serve` picks a random one,
/// as Ceph's OSDs do). Returns the session and the address it is with; an error comes with
/// the address last tried (which has the learned nonce, if any).
pub(crate) fn establish_learning_nonce(
    c: &Client,
    peer: PeerAddr,
    ty: EntityType,
    timeout: Duration,
) -> Result<(ConnectionRef, EntityAddr), (ConnectError, EntityAddr)> {
    // Only another nonce is forgiven: another host or port is a real mismatch.
    let retry_with = |a: &EntityAddr| {
        !peer.explicit_nonce
            && a.nonce != peer.addr.nonce
            && a.port() == peer.addr.port()
            && (a.is_blank_ip() || a.addr.map(|x| x.ip()) == peer.addr.addr.map(|x| x.ip()))
    };
    let announced = match establish(c, peer.addr, ty, timeout) {
        Err(ConnectError::Misbehaved { announced: Some(a) }) if retry_with(&a) => a,
        other => {
            return other
                .map(|conn| (conn, peer.addr))
                .map_err(|e| (e, peer.addr))
        }
    };
    let addr = EntityAddr {
        nonce: announced.nonce,
        ..peer.addr
    };
    info!(%addr, "the peer announces nonce {}; retrying with it", announced.nonce);
    establish(c, addr, ty, timeout)
        .map(|conn| (conn, addr))
        .map_err(|e| (e, addr))
}

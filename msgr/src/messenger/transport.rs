//! What a transport provides to the messenger core, and its per-connection state.
//!
//! A transport owns sockets and threads, and nothing else: it feeds bytes and time to each
//! connection's engine, writes what the engine yields, dials when asked, and hands every
//! other event to the core (`Core::deliver`). No protocol logic lives in a transport.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::conn::ConnShared;
use super::core::Core;
use super::driver::OwnerIo;
use super::simple::SimpleIo;
use crate::msg::Message;
use crate::proto::SendError;

/// Which network path a messenger runs on. Ordered as reports list them: the userspace
/// path first, then the kernel paths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub enum TransportKind {
    /// The userspace TCP/IP stack on DPDK (or an in-memory switch in tests): workers on
    /// poll-mode queues own their connections; fast dispatch runs on the worker.
    Dpdk,
    /// Ceph's AsyncMessenger over POSIX sockets: a fixed set of epoll worker threads, each
    /// owning its connections.
    #[default]
    Posix,
    /// Ceph's SimpleMessenger: an accepter thread, a reader and a writer thread per
    /// connection, blocking sockets.
    Simple,
}

impl TransportKind {
    /// The name used on command lines and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Posix => "posix",
            Self::Dpdk => "dpdk",
        }
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "simple" => Ok(Self::Simple),
            "posix" => Ok(Self::Posix),
            "dpdk" => Ok(Self::Dpdk),
            other => Err(format!(
                "unknown transport {other:?} (expected simple, posix or dpdk)"
            )),
        }
    }
}

/// Per-connection transport state, kept in the connection's shared state.
pub(crate) enum ConnIo {
    Simple(SimpleIo),
    /// posix and dpdk: the connection's owning worker.
    Worker(OwnerIo),
}

impl ConnIo {
    pub(crate) fn simple(&self) -> Option<&SimpleIo> {
        match self {
            Self::Simple(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn worker(&self) -> Option<&OwnerIo> {
        match self {
            Self::Worker(o) => Some(o),
            _ => None,
        }
    }
}

/// The operations the core needs from a transport.
pub(crate) trait Transport: Send + Sync {
    /// Fresh per-connection state for a connection about to be created.
    fn new_io(&self) -> ConnIo;
    /// Listens on `addr`; returns the bound address.
    fn bind(&self, core: &Arc<Core>, addr: SocketAddr) -> io::Result<SocketAddr>;
    /// Starts the transport's threads.
    fn start(&self, core: &Arc<Core>) -> io::Result<()>;
    /// Places a new outgoing connection (picks its worker) before anyone else can see it:
    /// an accept that finds it in the registry must already know where it lives.
    fn assign(&self, _conn: &Arc<ConnShared>) {}
    /// Takes charge of a new outgoing connection (its engine has a Dial pending), placed by
    /// [`Transport::assign`].
    fn connect(&self, core: &Arc<Core>, conn: &Arc<ConnShared>);
    /// Queues a message on a connection.
    fn send(&self, core: &Arc<Core>, conn: &Arc<ConnShared>, m: Message) -> Result<(), SendError>;
    /// Asks for a keepalive on a connection.
    fn keepalive(&self, core: &Arc<Core>, conn: &Arc<ConnShared>);
    /// The connection's engine was marked down: close its transport and forget it.
    fn closed(&self, core: &Arc<Core>, conn: &Arc<ConnShared>);
    /// Stops accepting and closes every connection; threads exit.
    fn shutdown(&self, core: &Arc<Core>);
    /// Waits for the transport's threads to exit.
    fn join(&self);
    /// The transport's own `perf dump` section (name, counters), if it has one.
    fn perf_section(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }
    /// Hands a packet capture to every worker (`None`: stop capturing).
    fn capture(
        &self,
        _core: &Arc<Core>,
        _cap: Option<stack::pcap::Capture>,
    ) -> Result<(), &'static str> {
        Err("this transport has no packet capture")
    }
}

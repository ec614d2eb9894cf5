//! The Messenger: sessions with many peers over kernel TCP, dispatch, policies, throttles.
//!
//! ```text
//! let m = Messenger::builder(EntityName::new(EntityType::OSD, 0), nonce)
//!     .transport(TransportKind::Posix)
//!     .build();
//! m.set_policy(EntityType::CLIENT, Policy::stateless_server(0));
//! m.add_dispatcher_tail(Arc::new(MyDispatcher));
//! m.bind("127.0.0.1:6800".parse()?)?;
//! m.start()?;
//! let c = m.connect_to(peer_addr, EntityType::OSD);
//! c.send_message(msg)?;
//! m.shutdown(); m.wait();
//! ```
//!
//! Two transports drive the same sans-IO engine ([`crate::proto::Connection`]):
//! [`TransportKind::Simple`] (thread per connection, blocking sockets, Ceph's
//! SimpleMessenger) and [`TransportKind::Posix`] (a fixed set of epoll workers, Ceph's
//! AsyncMessenger). Policies and options must be set before [`Messenger::start`].

mod conn;
mod core;
mod dispatch;
mod dpdk;
mod driver;
mod idmap;
mod perf;
mod posix;
mod rxbuf;
mod simple;
mod transport;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use conn::ConnectionRef;
pub use dispatch::{DispatchPanic, Dispatcher, Incoming};
pub use dpdk::{Backend, DpdkConfig, UserspaceConfig};
pub use stack::pcap::{CaptureConfig, CaptureStats};
pub use transport::TransportKind;

use self::core::Core;
use crate::entity::{AddrType, EntityAddr, EntityName, EntityType};
use crate::proto::{AuthConfig, Config, Options, Policies, Policy, Throttle};

/// Why a messenger operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MessengerError {
    /// Binding or starting a listener failed.
    Io(std::io::Error),
    /// The call is not valid in the messenger's current state.
    State(&'static str),
    /// Packet capture could not start, or its file could not be written.
    Capture(stack::pcap::CaptureError),
}

impl std::fmt::Display for MessengerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::State(s) => f.write_str(s),
            Self::Capture(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MessengerError {}

impl From<std::io::Error> for MessengerError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Builds a [`Messenger`].
#[derive(Debug)]
pub struct MessengerBuilder {
    name: EntityName,
    nonce: u32,
    transport: TransportKind,
    workers: usize,
    options: Options,
    dispatch_throttle_bytes: u64,
    inject_socket_failures: u64,
    auth: AuthConfig,
    userspace: Option<UserspaceConfig>,
    dispatch_panic: DispatchPanic,
}

impl MessengerBuilder {
    /// The `dpdk` transport on this device and address (sets the transport too).
    pub fn userspace(mut self, cfg: UserspaceConfig) -> Self {
        self.transport = TransportKind::Dpdk;
        self.userspace = Some(cfg);
        self
    }

    /// The transport (default: posix).
    pub fn transport(mut self, t: TransportKind) -> Self {
        self.transport = t;
        self
    }

    /// Worker threads of the posix transport (default: one per core).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Engine options (timeouts, backoff, CRCs, limits).
    pub fn options(mut self, o: Options) -> Self {
        self.options = o;
        self
    }

    /// `ms_dispatch_throttle_bytes` (default 100 MiB; 0 = unlimited).
    pub fn dispatch_throttle_bytes(mut self, n: u64) -> Self {
        self.dispatch_throttle_bytes = n;
        self
    }

    /// `ms_inject_socket_failures`: every Nth socket read or write fails (0 = never).
    pub fn inject_socket_failures(mut self, every: u64) -> Self {
        self.inject_socket_failures = every;
        self
    }

    /// What a panic in a dispatcher callback does (default: contained to its connection).
    pub fn dispatch_panic(mut self, p: DispatchPanic) -> Self {
        self.dispatch_panic = p;
        self
    }

    /// The authorizer this messenger sends to non-monitors.
    pub fn auth(mut self, a: AuthConfig) -> Self {
        self.auth = a;
        self
    }

    /// Creates the messenger (no threads yet).
    pub fn build(self) -> Messenger {
        #[allow(clippy::disallowed_methods)] // the driver's epoch
        let epoch = std::time::Instant::now();
        let mut cfg = Config::new(
            self.name,
            EntityAddr {
                nonce: self.nonce,
                ..EntityAddr::none()
            },
        );
        cfg.options = self.options;
        cfg.auth = self.auth;
        let transport: Box<dyn transport::Transport> = match self.transport {
            TransportKind::Simple => Box::new(simple::Simple::new()),
            TransportKind::Posix => Box::new(posix::Posix::new(self.workers)),
            TransportKind::Dpdk => Box::new(dpdk::Dpdk::new(self.userspace)),
        };
        let core = Arc::new(Core::new(
            cfg,
            transport,
            self.inject_socket_failures,
            epoch,
        ));
        core.dispatchers.set_panic_policy(self.dispatch_panic);
        Messenger {
            core,
            kind: self.transport,
            dispatch_throttle: Throttle::new(
                "msgr_dispatch_throttler",
                self.dispatch_throttle_bytes,
            ),
            state: Mutex::new(State {
                started: false,
                policies: Policies::default(),
                dispatch_thread: None,
                capture: None,
            }),
        }
    }
}

struct State {
    started: bool,
    policies: Policies,
    dispatch_thread: Option<JoinHandle<()>>,
    /// The packet capture in progress (dpdk transport).
    capture: Option<stack::pcap::PcapFile>,
}

/// A messenger: one entity's sessions with its peers.
pub struct Messenger {
    core: Arc<Core>,
    kind: TransportKind,
    dispatch_throttle: Arc<Throttle>,
    state: Mutex<State>,
}

impl Messenger {
    /// A builder for entity `name`; `nonce` tells restarts of the same entity apart (Ceph
    /// uses a random value, monitors 0).
    pub fn builder(name: EntityName, nonce: u32) -> MessengerBuilder {
        MessengerBuilder {
            name,
            nonce,
            transport: TransportKind::Posix,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            options: Options::default(),
            dispatch_throttle_bytes: 100 << 20,
            inject_socket_failures: 0,
            auth: AuthConfig::Empty,
            userspace: None,
            dispatch_panic: DispatchPanic::default(),
        }
    }

    /// A messenger with default options on `transport`.
    pub fn new(name: EntityName, nonce: u32, transport: TransportKind) -> Self {
        Self::builder(name, nonce).transport(transport).build()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.kind
    }

    /// Our entity name.
    pub fn name(&self) -> EntityName {
        self.core.config().name
    }

    /// Our address (blank IP until bound or learned).
    pub fn my_addr(&self) -> EntityAddr {
        self.core.config().addr
    }

    /// The policy for peers of types without their own (before `start`).
    pub fn set_default_policy(&self, p: Policy) {
        self.state().policies.default = p;
    }

    /// The policy for peers of type `t` (before `start`).
    pub fn set_policy(&self, t: EntityType, p: Policy) {
        self.state().policies.by_type.insert(t, p);
    }

    /// Adds a dispatcher before the others.
    pub fn add_dispatcher_head(&self, d: Arc<dyn Dispatcher>) {
        self.core.dispatchers.add(d, true);
    }

    /// Adds a dispatcher after the others.
    pub fn add_dispatcher_tail(&self, d: Arc<dyn Dispatcher>) {
        self.core.dispatchers.add(d, false);
    }

    /// Listens on `addr` (port 0: any free port). Returns our address.
    pub fn bind(&self, addr: SocketAddr) -> Result<EntityAddr, MessengerError> {
        if self.state().started {
            return Err(MessengerError::State("bind after start"));
        }
        let bound = self.core.transport.bind(&self.core, addr)?;
        let mut cfg = (*self.core.config()).clone();
        cfg.addr = EntityAddr {
            ty: AddrType::LEGACY,
            nonce: cfg.addr.nonce,
            addr: Some(bound),
        };
        self.core.set_config(cfg);
        Ok(self.my_addr())
    }

    /// Starts the transport and the dispatch thread. Policies are fixed from here on.
    pub fn start(&self) -> Result<(), MessengerError> {
        let mut st = self.state();
        if st.started {
            return Err(MessengerError::State("already started"));
        }
        let mut policies = st.policies.clone();
        let dispatch = Some(Arc::clone(&self.dispatch_throttle));
        policies.default.throttles.dispatch = dispatch.clone();
        for p in policies.by_type.values_mut() {
            p.throttles.dispatch = dispatch.clone();
        }
        let mut cfg = (*self.core.config()).clone();
        cfg.policies = policies;
        self.core.set_config(cfg);
        let core = Arc::clone(&self.core);
        st.dispatch_thread = Some(
            std::thread::Builder::new()
                .name("ms_dispatch".into())
                .spawn(move || core.queue.run(&core.dispatchers))
                .map_err(MessengerError::Io)?,
        );
        self.core.transport.start(&self.core)?;
        st.started = true;
        Ok(())
    }

    /// The session registered for `addr`, or a new one being established.
    pub fn connect_to(&self, addr: EntityAddr, peer_type: EntityType) -> ConnectionRef {
        self.core.connect_to(addr, peer_type)
    }

    /// A new client session to `addr` under another identity: entity `name` and `nonce`
    /// instead of this messenger's. The peer sees a separate client; the session is not in
    /// the registry (`connect_to` never returns it, `mark_down(addr)` does not reach it: use
    /// [`ConnectionRef::mark_down`]), and every such call opens a new one. For load
    /// generators that stand in for many clients over one transport — Ceph's
    /// `perf_msgr_client` starts a messenger per client, which on the dpdk transport would
    /// need a device each. Messages arrive at this messenger's dispatchers.
    pub fn connect_as(
        &self,
        addr: EntityAddr,
        peer_type: EntityType,
        name: EntityName,
        nonce: u32,
    ) -> ConnectionRef {
        self.core.connect_as(addr, peer_type, name, nonce)
    }

    /// Marks down the session with `addr`, if any.
    pub fn mark_down(&self, addr: &EntityAddr) {
        self.core.mark_down_addr(addr);
    }

    /// Marks down every session.
    pub fn mark_down_all(&self) {
        for c in self.core.all_conns() {
            self.core.mark_down_conn(&c);
        }
    }

    /// Every live connection.
    pub fn connections(&self) -> Vec<ConnectionRef> {
        self.core
            .all_conns()
            .into_iter()
            .map(ConnectionRef)
            .collect()
    }

    /// The counters, as `perf dump` prints them.
    pub fn perf_dump(&self) -> serde_json::Value {
        self.core.perf_dump()
    }

    /// Starts capturing every frame the dpdk transport's workers receive and send to a pcap
    /// file at `path` (what `tcpdump -w` gives on a kernel interface; tshark and Wireshark
    /// read it, with their Ceph dissector). Frames are copied off the data path to a writer
    /// thread through a bounded queue: when the disk falls behind, frames are dropped and
    /// counted, the workers never wait. Off, capture costs one branch per burst. One capture
    /// at a time; the kernel transports have none (use tcpdump on their interface).
    pub fn start_capture(
        &self,
        path: &std::path::Path,
        cfg: CaptureConfig,
    ) -> Result<(), MessengerError> {
        if self.kind != TransportKind::Dpdk {
            return Err(MessengerError::State(
                "packet capture is for the dpdk transport (the kernel transports: tcpdump)",
            ));
        }
        let mut st = self.state();
        if !st.started
            || self
                .core
                .stopping
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(MessengerError::State("the messenger is not running"));
        }
        if st.capture.is_some() {
            return Err(MessengerError::State("a capture is already running"));
        }
        let file = stack::pcap::PcapFile::create(path, cfg).map_err(MessengerError::Capture)?;
        // Each worker re-bases the handle on its own clock.
        let cap = file.capture(stack::pcap::TimeBase::new(
            stack::smoltcp::time::Instant::ZERO,
            std::time::Duration::ZERO,
        ));
        self.core
            .transport
            .capture(&self.core, Some(cap))
            .map_err(MessengerError::State)?;
        st.capture = Some(file);
        Ok(())
    }

    /// Stops the capture: the workers let go of it, everything queued is written and the
    /// file closed. Returns what was written and dropped.
    pub fn stop_capture(&self) -> Result<CaptureStats, MessengerError> {
        let file = self
            .state()
            .capture
            .take()
            .ok_or(MessengerError::State("no capture is running"))?;
        // Workers that miss this (stopping) drop the closed capture at their next frame.
        let _ = self.core.transport.capture(&self.core, None);
        file.stop().map_err(MessengerError::Capture)
    }

    /// The running capture's file and counters, if one runs.
    pub fn capture_status(&self) -> Option<(String, CaptureStats)> {
        self.state()
            .capture
            .as_ref()
            .map(|f| (f.dest().to_owned(), f.stats()))
    }

    /// Stops accepting, closes every session and stops the dispatch thread (what is queued
    /// is dropped). Returns at once; [`Messenger::wait`] joins the threads.
    pub fn shutdown(&self) {
        if self
            .core
            .stopping
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        self.core.transport.shutdown(&self.core);
        for c in self.core.all_conns() {
            self.core.mark_down_conn(&c);
        }
        self.core.queue.stop(false);
    }

    /// Waits until the messenger's threads have exited (after [`Messenger::shutdown`]).
    pub fn wait(&self) {
        self.core.transport.join();
        let t = self.state().dispatch_thread.take();
        if let Some(t) = t {
            let _ = t.join();
        }
        // A capture still running ends with the transport: write out what it holds.
        let cap = self.state().capture.take();
        if let Some(f) = cap {
            let dest = f.dest().to_owned();
            match f.stop() {
                Ok(s) => {
                    tracing::info!(file = %dest, written = s.written, dropped = s.dropped, "packet capture closed")
                }
                Err(e) => tracing::warn!(file = %dest, error = %e, "packet capture failed"),
            }
        }
    }
}

impl Drop for Messenger {
    fn drop(&mut self) {
        self.shutdown();
        self.wait();
    }
}

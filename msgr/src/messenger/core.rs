//! The transport-independent heart of a messenger: configuration, the session registry,
//! event delivery to dispatchers, accept resolution and fault injection.
//!
//! Lock order (deadlock freedom): `registry` → a registered connection's engine. A
//! connection that is still accepting is never in the registry, so the thread resolving its
//! accept may hold its engine, then take `registry`, then lock the existing session's engine.
//! The one registered connection that accepts again, a session answering on a socket it
//! adopted (a replace), resolves without the registry (see `resolve_accept`).
//! `handshakes` is taken with an engine locked (or alone), never the other way round.
//! Dispatchers and sockets are never touched with an engine lock held.
//!
//! Handshakes in progress are bounded (`Options::max_handshakes`): at the bound, each new
//! accept closes the oldest accepted connection still in its handshake. Refusing the new
//! one instead would let whoever holds the bound's worth of sockets (a slowloris, a flood)
//! lock every new client out for as long as it holds them; closing the oldest lets a new
//! client in unless the bound's worth of connections arrive during its own handshake, a
//! round trip or two.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{debug, info, warn};

use super::conn::{ConnShared, ConnectionRef};
use super::dispatch::{ConnEvent, DispatchQueue, Dispatchers, Incoming};
use super::idmap::IdMap;
use super::perf::Perf;
use super::transport::Transport;
use crate::entity::{EntityAddr, EntityName, EntityType};
use crate::proto::{AcceptOutcome, Config, Connection, Event, Fault};
use crate::time::Instant;

/// `ms_inject_socket_failures`: every Nth socket read or write fails (0: never).
pub(crate) struct Inject {
    every: u64,
    count: AtomicU64,
}

impl Inject {
    pub(crate) fn new(every: u64) -> Self {
        Self {
            every,
            count: AtomicU64::new(0),
        }
    }

    /// Whether this read or write should fail.
    pub(crate) fn fail_now(&self) -> bool {
        self.every > 0
            && (self.count.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }
}

pub(crate) struct Core {
    cfg: RwLock<Arc<Config>>,
    pub(crate) dispatchers: Dispatchers,
    pub(crate) queue: DispatchQueue,
    /// Sessions by peer address (outgoing ones from creation, incoming ones once open).
    registry: Mutex<HashMap<EntityAddr, Arc<ConnShared>>>,
    /// Every live connection, registered or anonymous.
    conns: Mutex<IdMap<u64, Arc<ConnShared>>>,
    /// Accepted connections still in their handshake, oldest (lowest id) first.
    handshakes: Mutex<BTreeMap<u64, Arc<ConnShared>>>,
    /// When (driver clock, ns) the next "handshake limit reached" warning may be logged.
    evict_warn_at: AtomicU64,
    pub(crate) perf: Perf,
    pub(crate) inject: Inject,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) stopping: AtomicBool,
    epoch: std::time::Instant,
    seed: AtomicU64,
}

impl Core {
    pub(crate) fn new(
        cfg: Config,
        transport: Box<dyn Transport>,
        inject_every: u64,
        epoch: std::time::Instant,
    ) -> Self {
        let seed = u64::from(cfg.addr.nonce).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6d73;
        Self {
            cfg: RwLock::new(Arc::new(cfg)),
            dispatchers: Dispatchers::default(),
            queue: DispatchQueue::new(),
            registry: Mutex::default(),
            conns: Mutex::default(),
            handshakes: Mutex::default(),
            evict_warn_at: AtomicU64::new(0),
            perf: Perf::default(),
            inject: Inject::new(inject_every),
            transport,
            stopping: AtomicBool::new(false),
            epoch,
            seed: AtomicU64::new(seed),
        }
    }

    /// The driver clock: nanoseconds since the messenger was created.
    #[allow(clippy::disallowed_methods)] // drivers read the clock
    pub(crate) fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Converts an engine deadline to a wall-clock wait from now.
    pub(crate) fn until(&self, t: Instant) -> std::time::Duration {
        t.saturating_duration_since(self.now())
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        Arc::clone(&self.cfg.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn set_config(&self, cfg: Config) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    /// A seed for a new connection's PRNG.
    pub(crate) fn next_seed(&self) -> u64 {
        self.seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<EntityAddr, Arc<ConnShared>>> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> MutexGuard<'_, IdMap<u64, Arc<ConnShared>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection to the live set.
    pub(crate) fn track(&self, conn: &Arc<ConnShared>) {
        self.conns().insert(conn.id(), Arc::clone(conn));
        self.perf.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn handshakes(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ConnShared>>> {
        self.handshakes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `conn`'s handshake is over (or it is closed): it leaves the handshakes in progress.
    pub(crate) fn handshake_over(&self, conn: &ConnShared) {
        if conn.handshaking.swap(false, Ordering::AcqRel) {
            self.handshakes().remove(&conn.id());
        }
    }

    /// Removes a closed connection everywhere.
    pub(crate) fn forget(&self, conn: &Arc<ConnShared>) {
        conn.closed.store(true, Ordering::Release);
        self.handshake_over(conn);
        if self.conns().remove(&conn.id()).is_some() {
            self.perf.connections.fetch_sub(1, Ordering::Relaxed);
        }
        self.registry().retain(|_, c| !Arc::ptr_eq(c, conn));
    }

    /// Every live connection.
    pub(crate) fn all_conns(&self) -> Vec<Arc<ConnShared>> {
        self.conns().values().cloned().collect()
    }

    /// Ceph's `connect_to`: the registered session for `addr`, or a new one.
    pub(crate) fn connect_to(
        self: &Arc<Self>,
        addr: EntityAddr,
        peer_type: EntityType,
    ) -> ConnectionRef {
        let reg = self.registry();
        if let Some(c) = reg.get(&addr) {
            if !c.engine().is_closed() {
                return ConnectionRef(Arc::clone(c));
            }
        }
        let engine =
            Connection::connect(self.config(), self.now(), addr, peer_type, self.next_seed());
        self.dial(engine, Some(reg))
    }

    /// A session to `addr` under another client identity (`name`, `nonce`), outside the
    /// registry: see [`crate::messenger::Messenger::connect_as`].
    pub(crate) fn connect_as(
        self: &Arc<Self>,
        addr: EntityAddr,
        peer_type: EntityType,
        name: EntityName,
        nonce: u32,
    ) -> ConnectionRef {
        let mut cfg = (*self.config()).clone();
        cfg.name = name;
        cfg.addr.nonce = nonce;
        let engine =
            Connection::connect(Arc::new(cfg), self.now(), addr, peer_type, self.next_seed());
        self.dial(engine, None)
    }

    /// Creates, places and starts an outgoing connection; registers it under its peer's
    /// address when given the registry (held since the lookup).
    fn dial(
        self: &Arc<Self>,
        engine: Connection,
        reg: Option<MutexGuard<'_, HashMap<EntityAddr, Arc<ConnShared>>>>,
    ) -> ConnectionRef {
        let addr = engine.peer_addr();
        let conn = ConnShared::new(
            super::conn::next_id(),
            engine,
            Arc::downgrade(self),
            self.transport.new_io(),
        );
        self.transport.assign(&conn);
        if let (Some(mut reg), Some(addr)) = (reg, addr) {
            reg.insert(addr, Arc::clone(&conn));
        }
        self.track(&conn);
        debug!(conn = conn.id(), ?addr, "new outgoing session");
        self.transport.connect(self, &conn);
        if self.stopping.load(Ordering::Acquire) {
            // Created while the messenger shuts down, possibly after its sweep of the live
            // connections (tracked first, so an earlier sweep saw it): it must not outlive
            // the messenger's threads.
            self.mark_down_conn(&conn);
        }
        ConnectionRef(conn)
    }

    /// A connection for a socket just accepted from `peer`.
    pub(crate) fn accepted(self: &Arc<Self>, peer: std::net::SocketAddr) -> Arc<ConnShared> {
        let engine = Connection::accept(self.config(), self.now(), peer, self.next_seed());
        let conn = ConnShared::new(
            super::conn::next_id(),
            engine,
            Arc::downgrade(self),
            self.transport.new_io(),
        );
        self.track(&conn);
        self.perf.accepts.fetch_add(1, Ordering::Relaxed);
        self.admit(&conn);
        conn
    }

    /// Adds a just-accepted connection to the handshakes in progress and, above
    /// `max_handshakes`, closes the oldest ones still handshaking (see the module docs).
    fn admit(self: &Arc<Self>, conn: &Arc<ConnShared>) {
        let max = self.config().options.max_handshakes;
        conn.handshaking.store(true, Ordering::Release);
        let oldest: Vec<Arc<ConnShared>> = {
            let mut hs = self.handshakes();
            hs.insert(conn.id(), Arc::clone(conn));
            let mut out = Vec::new();
            // Ids grow, so the new connection is last: never its own victim.
            while max > 0 && hs.len() > max {
                match hs.pop_first() {
                    Some((_, c)) => out.push(c),
                    None => break,
                }
            }
            out
        };
        for victim in oldest {
            // Not if it finished its handshake meanwhile (its flag is already clear).
            if victim.handshaking.swap(false, Ordering::AcqRel) {
                self.evict(&victim, max);
            }
        }
    }

    /// Closes a handshake to make room; counted, and logged at most every 10 s.
    fn evict(self: &Arc<Self>, victim: &Arc<ConnShared>, max: usize) {
        debug!(conn = victim.id(), peer = ?victim.engine().peer_addr(), "handshake limit: closing the oldest handshake");
        self.mark_down_conn(victim);
        let total = self.perf.handshakes_evicted.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now().as_nanos();
        let at = self.evict_warn_at.load(Ordering::Relaxed);
        if now >= at
            && self
                .evict_warn_at
                .compare_exchange(
                    at,
                    now + 10_000_000_000,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            warn!(
                limit = max,
                evicted_total = total,
                "handshake limit reached: closing the oldest handshakes in progress \
                 (a connection flood or slow handshakes?)"
            );
        }
    }

    /// Marks a session down: engine stopped, queued dispatch items dropped, transport closed.
    pub(crate) fn mark_down_conn(self: &Arc<Self>, conn: &Arc<ConnShared>) {
        conn.engine().mark_down();
        self.queue.discard(conn.id());
        self.forget(conn);
        self.transport.closed(self, conn);
    }

    /// Marks down the session registered for `addr`.
    pub(crate) fn mark_down_addr(self: &Arc<Self>, addr: &EntityAddr) {
        let c = self.registry().get(addr).cloned();
        if let Some(c) = c {
            self.mark_down_conn(&c);
        }
    }

    /// Counts a fault the engine reacted to.
    pub(crate) fn fault(&self, conn: &Arc<ConnShared>, f: &Fault) {
        self.perf.fault(f);
        debug!(conn = conn.id(), %f, "fault");
    }

    /// Delivers one engine event that is not the transport's own (Dial, AcceptRequest).
    /// Called without the engine lock.
    pub(crate) fn deliver(&self, conn: &Arc<ConnShared>, ev: Event) {
        let con = || ConnectionRef(Arc::clone(conn));
        match ev {
            Event::Connected => {
                self.perf.sessions_opened.fetch_add(1, Ordering::Relaxed);
                self.dispatchers.fast_event(&con(), ConnEvent::Connect);
                self.queue.event(con(), ConnEvent::Connect);
            }
            Event::Accepted => {
                self.perf.sessions_accepted.fetch_add(1, Ordering::Relaxed);
                self.dispatchers.fast_event(&con(), ConnEvent::Accept);
                self.queue.event(con(), ConnEvent::Accept);
            }
            Event::Message(r) => {
                self.perf.msg_in(r.msg.ty());
                let m = Incoming {
                    msg: r.msg,
                    conn: con(),
                    features: r.features,
                    _throttle: r.throttle,
                };
                match self.dispatchers.try_fast(m, conn) {
                    None => {
                        self.perf.fast_dispatched.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(m) => {
                        self.perf.queued.fetch_add(1, Ordering::Relaxed);
                        self.queue.enqueue(m);
                    }
                }
            }
            Event::Reset => {
                self.perf.resets.fetch_add(1, Ordering::Relaxed);
                self.queue.discard(conn.id());
                self.queue.event(con(), ConnEvent::Reset);
                self.forget(conn);
            }
            Event::RemoteReset => {
                self.perf.remote_resets.fetch_add(1, Ordering::Relaxed);
                self.queue.discard(conn.id());
                self.queue.event(con(), ConnEvent::RemoteReset);
            }
            Event::Refused => {
                self.perf.refused.fetch_add(1, Ordering::Relaxed);
                self.queue.event(con(), ConnEvent::Refused);
            }
            Event::AddrLearned(a) => {
                let cfg = self.config();
                if cfg.addr.is_blank_ip() {
                    let mut c = (*cfg).clone();
                    let port = c.addr.port();
                    let mut sa = a
                        .addr
                        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                    sa.set_port(port);
                    c.addr.addr = Some(sa);
                    c.addr.ty = crate::entity::AddrType::LEGACY;
                    info!(addr = %c.addr, "learned my address");
                    self.set_config(c);
                }
            }
            Event::Dial => {
                self.perf.dials.fetch_add(1, Ordering::Relaxed);
                if conn.dials.fetch_add(1, Ordering::Relaxed) > 0 {
                    self.perf.reconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::Rejected(_) => {
                self.perf.handshakes_refused.fetch_add(1, Ordering::Relaxed);
            }
            Event::KeepaliveAck { .. } | Event::AcceptRequest => {}
        }
    }

    /// The messenger's part of an accept (Ceph's `lookup_conn` + the decision table): finds
    /// the session registered for the peer, lets the engine decide with it, and updates the
    /// registry. `new_engine` is `new`'s engine, locked by the caller.
    ///
    /// Returns the outcome and the existing session involved (to pump its events, close
    /// its transport or hand it the socket, by outcome).
    pub(crate) fn resolve_accept(
        &self,
        new: &Arc<ConnShared>,
        new_engine: &mut Connection,
        now: Instant,
    ) -> (AcceptOutcome, Option<Arc<ConnShared>>) {
        let Some(peer) = new_engine.peer_addr() else {
            return (new_engine.resolve_accept(now, None), None);
        };
        if new_engine.summary().replacing {
            // The registered session itself, answering the connect that follows its
            // replace on the socket it adopted: a lookup could only find itself (Ceph's
            // `existing == connection`), and it must not take the registry with its engine
            // locked: another accept for the same peer may hold the registry and be waiting
            // for this engine (found by `bench hostile`'s reconnect storm: both posix
            // workers deadlocked). It stays registered, whatever it answers.
            let outcome = new_engine.resolve_accept(now, None);
            if let AcceptOutcome::Replied(tag) = outcome {
                self.perf.accept_reply(tag);
            }
            debug!(
                conn = new.id(),
                ?outcome,
                "accept resolved on an adopted socket"
            );
            return (outcome, None);
        }
        let mut reg = self.registry();
        let existing = reg.get(&peer).filter(|e| !Arc::ptr_eq(e, new)).cloned();
        let outcome = match &existing {
            Some(e) => {
                let mut ex = e.engine();
                let o = new_engine.resolve_accept(now, Some(&mut ex));
                if o == AcceptOutcome::Adopted {
                    // The existing session's old socket is stale from here on.
                    e.next_gen();
                }
                o
            }
            None => new_engine.resolve_accept(now, None),
        };
        match outcome {
            AcceptOutcome::Opened | AcceptOutcome::ReplacedLossy => {
                reg.insert(peer, Arc::clone(new));
            }
            AcceptOutcome::Adopted => {
                self.perf.replaced.fetch_add(1, Ordering::Relaxed);
            }
            AcceptOutcome::Replied(tag) => self.perf.accept_reply(tag),
            AcceptOutcome::NotPending => {}
        }
        if outcome == AcceptOutcome::ReplacedLossy {
            self.perf.replaced.fetch_add(1, Ordering::Relaxed);
        }
        debug!(conn = new.id(), ?outcome, existing = ?existing.as_ref().map(|e| e.id()), "accept resolved");
        (outcome, existing)
    }

    /// The counters as JSON.
    pub(crate) fn perf_dump(&self) -> serde_json::Value {
        let mut extra = serde_json::Map::new();
        extra.insert("dispatch_queue_len".into(), self.queue.len().into());
        extra.insert(
            "dispatch_queue_peak".into(),
            self.queue.peak.load(Ordering::Relaxed).into(),
        );
        extra.insert(
            "dispatched".into(),
            self.queue.dispatched.load(Ordering::Relaxed).into(),
        );
        extra.insert("registered_sessions".into(), self.registry().len().into());
        let d = &self.dispatchers;
        extra.insert(
            "unhandled_messages".into(),
            d.unhandled.load(Ordering::Relaxed).into(),
        );
        extra.insert(
            "dispatch_panics".into(),
            d.panics.load(Ordering::Relaxed).into(),
        );
        extra.insert(
            "handshakes_in_progress".into(),
            self.handshakes().len().into(),
        );
        let cfg = self.config();
        extra.insert("name".into(), cfg.name.to_string().into());
        extra.insert("addr".into(), cfg.addr.to_string().into());
        let throttle = |t: &Option<Arc<crate::proto::Throttle>>| {
            t.as_ref().map_or(
                serde_json::Value::Null,
                |t| serde_json::json!({"current": t.current(), "max": t.max()}),
            )
        };
        extra.insert(
            "dispatch_throttle".into(),
            throttle(&cfg.policies.default.throttles.dispatch),
        );
        let mut all = self.perf.dump(extra);
        if let (serde_json::Value::Object(m), Some((section, v))) =
            (&mut all, self.transport.perf_section())
        {
            m.insert(section.to_owned(), v);
        }
        all
    }
}

//! A deterministic network simulator for the sans-IO engine (STYLE.md R12).
//!
//! Nodes play the part of messengers: each has a [`Config`], listens on its address,
//! keeps a registry of sessions by peer address (Ceph's `conns` map) and handles the
//! engine's events (dial, accept lookup, messages). Connections are joined by in-memory
//! byte pipes with latency; writes can be split into random chunks (partial reads), and
//! links can be cut. Time is simulated: [`Sim::step`] jumps to the next event.
//!
//! A test can also take one end of a link itself ([`Sim::raw_connect`]) and speak bytes to
//! a real engine, to replay exact sequences (e.g. what a real Ceph monitor was observed
//! to answer).
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::msg::{Message, MessageHeader, MsgType};
use msgr::proto::{
    AcceptOutcome, Config, Connection, Event, Fault, InputStatus, Phase, ThrottleGuard,
    TransportError,
};
use msgr::time::Instant;

pub type NodeId = usize;
pub type ConnId = usize;
pub type LinkId = usize;
pub type RawId = usize;

/// Everything that happened, in order, for assertions and for reading a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    Connected(NodeId, ConnId),
    Accepted(NodeId, ConnId),
    Reset(NodeId, ConnId),
    RemoteReset(NodeId, ConnId),
    Refused(NodeId, ConnId),
    Fault(NodeId, ConnId, &'static str),
    Outcome(NodeId, ConnId, AcceptOutcome),
    KeepaliveAck(NodeId, ConnId),
    Dial(NodeId, ConnId),
}

/// A tiny deterministic generator (xorshift64*) for chunk sizes.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

pub struct SimConn {
    pub engine: Connection,
    link: Option<(LinkId, usize)>,
    rx: BytesMut,
    blocked: bool,
}

pub struct Node {
    pub cfg: Arc<Config>,
    pub listening: bool,
    conns: Vec<Option<SimConn>>,
    /// Sessions by peer address (outgoing ones from the moment they are created).
    pub registry: HashMap<EntityAddr, ConnId>,
    /// Messages delivered, per connection, in order.
    pub inbox: Vec<(ConnId, Message)>,
    /// Keep the throttle budget of delivered messages (a slow dispatcher) instead of
    /// releasing it at once.
    pub hold_throttle: bool,
    pub held: Vec<ThrottleGuard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Conn(NodeId, ConnId),
    Raw(RawId),
}

enum Item {
    Data(Bytes),
    Eof,
}

struct Link {
    ends: [End; 2],
    /// pipes[i]: bytes travelling towards ends[i].
    pipes: [VecDeque<(Instant, Item)>; 2],
    up: bool,
    /// Drop every byte silently (a black hole: no error, no EOF).
    blackhole: bool,
}

pub struct Raw {
    link: LinkId,
    pub received: BytesMut,
    pub eof: bool,
}

enum Pending {
    Dial {
        node: NodeId,
        conn: ConnId,
        at: Instant,
    },
}

pub struct Sim {
    pub now: Instant,
    pub nodes: Vec<Node>,
    links: Vec<Link>,
    raws: Vec<Raw>,
    pending: Vec<Pending>,
    pub rng: SimRng,
    /// One-way latency of every pipe.
    pub latency: Duration,
    /// Split every write into random chunks (partial reads at the receiver).
    pub chunking: bool,
    pub notes: Vec<Note>,
    /// When each dial was requested.
    pub dials: Vec<(Instant, NodeId, ConnId)>,
    next_seed: u64,
}

pub fn addr(port: u16, nonce: u32) -> EntityAddr {
    EntityAddr::v1(SocketAddr::from(([127, 0, 0, 1], port)), nonce)
}

/// An MPing carrying `tag` in its front, to check order and integrity.
pub fn tagged(tag: u64, data: Bytes) -> Message {
    let h = MessageHeader::new(MsgType::PING, 1, 1);
    Message::new(
        h,
        Bytes::copy_from_slice(&tag.to_le_bytes()),
        Bytes::new(),
        data,
    )
}

pub fn tag_of(m: &Message) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&m.front[..8]);
    u64::from_le_bytes(a)
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            now: Instant::from_nanos(1_000_000_000),
            nodes: Vec::new(),
            links: Vec::new(),
            raws: Vec::new(),
            pending: Vec::new(),
            rng: SimRng::new(seed),
            latency: Duration::from_micros(50),
            chunking: false,
            notes: Vec::new(),
            dials: Vec::new(),
            next_seed: seed,
        }
    }

    /// Adds a node that listens on its address.
    pub fn node(&mut self, cfg: Config) -> NodeId {
        self.nodes.push(Node {
            cfg: Arc::new(cfg),
            listening: true,
            conns: Vec::new(),
            registry: HashMap::new(),
            inbox: Vec::new(),
            hold_throttle: false,
            held: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// A config for an entity of `ty`, number `num`, on 127.0.0.1:`port`.
    pub fn config(ty: EntityType, num: i64, port: u16) -> Config {
        Config::new(EntityName::new(ty, num), addr(port, 1000 + u32::from(port)))
    }

    pub fn addr_of(&self, n: NodeId) -> EntityAddr {
        self.nodes[n].cfg.addr
    }

    pub fn conn(&self, n: NodeId, c: ConnId) -> &Connection {
        &self.nodes[n].conns[c]
            .as_ref()
            .expect("connection exists")
            .engine
    }

    pub fn conn_mut(&mut self, n: NodeId, c: ConnId) -> &mut Connection {
        &mut self.nodes[n].conns[c]
            .as_mut()
            .expect("connection exists")
            .engine
    }

    pub fn has_conn(&self, n: NodeId, c: ConnId) -> bool {
        self.nodes[n].conns.get(c).is_some_and(Option::is_some)
    }

    /// Live connections of a node.
    pub fn conns(&self, n: NodeId) -> Vec<ConnId> {
        (0..self.nodes[n].conns.len())
            .filter(|&c| self.has_conn(n, c))
            .collect()
    }

    /// Messages node `n` received, as tags, in delivery order.
    pub fn inbox_tags(&self, n: NodeId) -> Vec<u64> {
        self.nodes[n].inbox.iter().map(|(_, m)| tag_of(m)).collect()
    }

    fn seed(&mut self) -> u64 {
        self.next_seed = self
            .next_seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        self.next_seed
    }

    /// Ceph's `connect_to`: the registered session for the address, or a new one.
    pub fn connect(&mut self, from: NodeId, to: NodeId, peer_type: EntityType) -> ConnId {
        let target = self.addr_of(to);
        self.connect_addr(from, target, peer_type)
    }

    pub fn connect_addr(
        &mut self,
        from: NodeId,
        target: EntityAddr,
        peer_type: EntityType,
    ) -> ConnId {
        if let Some(&c) = self.nodes[from].registry.get(&target) {
            if self.has_conn(from, c) && !self.conn(from, c).is_closed() {
                return c;
            }
        }
        let seed = self.seed();
        let engine = Connection::connect(
            Arc::clone(&self.nodes[from].cfg),
            self.now,
            target,
            peer_type,
            seed,
        );
        let c = self.insert(from, engine);
        self.nodes[from].registry.insert(target, c);
        self.pump(from, c);
        c
    }

    fn insert(&mut self, n: NodeId, engine: Connection) -> ConnId {
        self.nodes[n].conns.push(Some(SimConn {
            engine,
            link: None,
            rx: BytesMut::new(),
            blocked: false,
        }));
        self.nodes[n].conns.len() - 1
    }

    pub fn send(&mut self, n: NodeId, c: ConnId, m: Message) {
        let now = self.now;
        self.conn_mut(n, c)
            .send_message(now, m)
            .expect("send accepted");
        self.pump(n, c);
    }

    pub fn keepalive(&mut self, n: NodeId, c: ConnId) {
        self.conn_mut(n, c).send_keepalive();
        self.pump(n, c);
    }

    pub fn mark_down(&mut self, n: NodeId, c: ConnId) {
        self.conn_mut(n, c).mark_down();
        self.drop_transport(n, c);
        self.nodes[n].registry.retain(|_, v| *v != c);
    }

    /// Cuts the link under a connection: both ends see a transport error at once and
    /// whatever was in flight is lost.
    pub fn cut(&mut self, n: NodeId, c: ConnId) {
        let Some((l, _)) = self.nodes[n].conns[c].as_ref().and_then(|s| s.link) else {
            return;
        };
        self.cut_link(l);
    }

    fn cut_link(&mut self, l: LinkId) {
        if !self.links[l].up {
            return;
        }
        self.links[l].up = false;
        self.links[l].pipes = [VecDeque::new(), VecDeque::new()];
        for end in self.links[l].ends {
            match end {
                End::Conn(n, c) => {
                    if let Some(sc) = self.nodes[n].conns[c].as_mut() {
                        if sc.link.map(|x| x.0) == Some(l) {
                            sc.link = None;
                            sc.rx.clear();
                            let now = self.now;
                            sc.engine.handle_transport_error(now, TransportError::Io);
                            self.pump(n, c);
                        }
                    }
                }
                End::Raw(r) => self.raws[r].eof = true,
            }
        }
    }

    /// Makes the link under a connection drop everything silently (100% loss).
    pub fn blackhole(&mut self, n: NodeId, c: ConnId) {
        if let Some((l, _)) = self.nodes[n].conns[c].as_ref().and_then(|s| s.link) {
            self.links[l].blackhole = true;
            self.links[l].pipes = [VecDeque::new(), VecDeque::new()];
        }
    }

    /// Lets held throttle budget go (the slow dispatcher catches up) and resumes reading.
    pub fn release_held(&mut self, n: NodeId) {
        self.nodes[n].held.clear();
    }

    /// Stops a node listening (new dials are refused).
    pub fn set_listening(&mut self, n: NodeId, on: bool) {
        self.nodes[n].listening = on;
    }

    /// Opens a raw transport to node `to`; the node accepts it with a real engine.
    pub fn raw_connect(&mut self, to: NodeId, from_port: u16) -> RawId {
        let r = self.raws.len();
        let l = self.links.len();
        self.raws.push(Raw {
            link: l,
            received: BytesMut::new(),
            eof: false,
        });
        let seed = self.seed();
        let engine = Connection::accept(
            Arc::clone(&self.nodes[to].cfg),
            self.now,
            SocketAddr::from(([127, 0, 0, 1], from_port)),
            seed,
        );
        let c = self.insert(to, engine);
        self.links.push(Link {
            ends: [End::Raw(r), End::Conn(to, c)],
            pipes: [VecDeque::new(), VecDeque::new()],
            up: true,
            blackhole: false,
        });
        self.nodes[to].conns[c]
            .as_mut()
            .expect("just inserted")
            .link = Some((l, 1));
        self.pump(to, c);
        r
    }

    pub fn raw_send(&mut self, r: RawId, bytes: &[u8]) {
        let l = self.raws[r].link;
        let at = self.now + self.latency;
        self.links[l].pipes[1].push_back((at, Item::Data(Bytes::copy_from_slice(bytes))));
    }

    /// Takes `n` received bytes from a raw end (panics with context if fewer arrived).
    pub fn raw_take(&mut self, r: RawId, n: usize) -> Bytes {
        let got = self.raws[r].received.len();
        assert!(got >= n, "raw end has {got} bytes, wanted {n}");
        self.raws[r].received.split_to(n).freeze()
    }

    pub fn raw(&self, r: RawId) -> &Raw {
        &self.raws[r]
    }

    pub fn raw_close(&mut self, r: RawId) {
        let l = self.raws[r].link;
        let at = self.now + self.latency;
        self.links[l].pipes[1].push_back((at, Item::Eof));
    }

    // ---- the engine driver ----

    /// Drains a connection's outputs: transmit, then events (handling dials and accept
    /// lookups like a messenger would).
    fn pump(&mut self, n: NodeId, c: ConnId) {
        let now = self.now;
        loop {
            let Some(sc) = self.nodes[n].conns.get_mut(c).and_then(Option::as_mut) else {
                return;
            };
            let mut chunks = Vec::new();
            while let Some(b) = sc.engine.poll_transmit(now) {
                chunks.push(b);
            }
            if let Some((l, side)) = sc.link {
                for b in chunks {
                    self.write(l, 1 - side, b);
                }
            }
            let Some(sc) = self.nodes[n].conns.get_mut(c).and_then(Option::as_mut) else {
                return;
            };
            let Some(ev) = sc.engine.poll_event() else {
                return;
            };
            self.handle_event(n, c, ev);
        }
    }

    fn write(&mut self, l: LinkId, towards: usize, b: Bytes) {
        if !self.links[l].up || self.links[l].blackhole {
            return;
        }
        let at = self.now + self.latency;
        if self.chunking && b.len() > 1 {
            let mut rest = b;
            while !rest.is_empty() {
                let take = 1 + self.rng.below(rest.len() as u64) as usize;
                let piece = rest.split_to(take.min(rest.len()));
                self.links[l].pipes[towards].push_back((at, Item::Data(piece)));
            }
        } else {
            self.links[l].pipes[towards].push_back((at, Item::Data(b)));
        }
    }

    fn handle_event(&mut self, n: NodeId, c: ConnId, ev: Event) {
        match ev {
            Event::Dial => {
                self.notes.push(Note::Dial(n, c));
                self.dials.push((self.now, n, c));
                self.drop_transport(n, c);
                let at = self.now + self.latency * 2;
                self.pending.push(Pending::Dial {
                    node: n,
                    conn: c,
                    at,
                });
            }
            Event::AcceptRequest => self.accept_lookup(n, c),
            Event::Connected => self.notes.push(Note::Connected(n, c)),
            Event::Accepted => self.notes.push(Note::Accepted(n, c)),
            Event::Message(r) => {
                let node = &mut self.nodes[n];
                node.inbox.push((c, r.msg));
                if let (true, Some(g)) = (node.hold_throttle, r.throttle) {
                    node.held.push(g);
                }
            }
            Event::Reset => {
                self.notes.push(Note::Reset(n, c));
                self.drop_transport(n, c);
                self.nodes[n].registry.retain(|_, v| *v != c);
            }
            Event::RemoteReset => self.notes.push(Note::RemoteReset(n, c)),
            Event::Refused => self.notes.push(Note::Refused(n, c)),
            Event::KeepaliveAck { .. } => self.notes.push(Note::KeepaliveAck(n, c)),
            Event::AddrLearned(_) => {}
            _ => {}
        }
    }

    /// The messenger's part of an accept: look the peer up and let the engine decide.
    fn accept_lookup(&mut self, n: NodeId, c: ConnId) {
        let now = self.now;
        let peer = self.conn(n, c).peer_addr().expect("peer known at accept");
        let existing = self.nodes[n]
            .registry
            .get(&peer)
            .copied()
            .filter(|&e| e != c && self.has_conn(n, e));
        let mut new = self.nodes[n].conns[c].take().expect("accepting conn");
        let outcome = match existing {
            Some(e) => {
                let ex = &mut self.nodes[n].conns[e]
                    .as_mut()
                    .expect("registered conn")
                    .engine;
                new.engine.resolve_accept(now, Some(ex))
            }
            None => new.engine.resolve_accept(now, None),
        };
        self.notes.push(Note::Outcome(n, c, outcome));
        match outcome {
            AcceptOutcome::Opened | AcceptOutcome::ReplacedLossy => {
                if let Some(e) = existing {
                    if outcome == AcceptOutcome::ReplacedLossy {
                        self.nodes[n].conns[c] = Some(new);
                        self.drop_transport(n, e);
                        self.pump(n, e);
                        self.nodes[n].registry.insert(peer, c);
                        self.pump(n, c);
                        return;
                    }
                }
                self.nodes[n].registry.insert(peer, c);
                self.nodes[n].conns[c] = Some(new);
            }
            AcceptOutcome::Adopted => {
                let e = existing.expect("adopted by an existing session");
                // The existing session's old transport goes; the new one moves over.
                self.drop_transport(n, e);
                let link = new.link.take();
                let rx = std::mem::take(&mut new.rx);
                let sc = self.nodes[n].conns[e].as_mut().expect("existing");
                sc.link = link;
                sc.rx = rx;
                if let Some((l, side)) = link {
                    self.links[l].ends[side] = End::Conn(n, e);
                }
                self.nodes[n].registry.insert(peer, e);
                // `new` is closed and dropped here.
                self.pump(n, e);
                return;
            }
            AcceptOutcome::Replied(_) | AcceptOutcome::NotPending => {
                self.nodes[n].conns[c] = Some(new);
            }
        }
        if let Some(e) = existing {
            self.pump(n, e);
        }
        self.pump(n, c);
        // Bytes may already wait behind the connect (a client that pipelines).
        self.feed(n, c, BytesMut::new());
    }

    /// Closes a connection's transport (the peer sees EOF after in-flight bytes).
    fn drop_transport(&mut self, n: NodeId, c: ConnId) {
        let Some(sc) = self.nodes[n].conns.get_mut(c).and_then(Option::as_mut) else {
            return;
        };
        sc.rx.clear();
        sc.blocked = false;
        let Some((l, side)) = sc.link.take() else {
            return;
        };
        if self.links[l].up {
            self.links[l].up = false;
            let at = self.now + self.latency;
            self.links[l].pipes[1 - side].push_back((at, Item::Eof));
            // Keep delivering what is already in flight towards the peer.
            self.links[l].pipes[side].clear();
        }
    }

    fn feed(&mut self, n: NodeId, c: ConnId, data: BytesMut) {
        let now = self.now;
        let Some(sc) = self.nodes[n].conns.get_mut(c).and_then(Option::as_mut) else {
            return;
        };
        sc.rx.extend_from_slice(&data);
        if sc.blocked {
            return;
        }
        let mut rx = std::mem::take(&mut sc.rx);
        let res = loop {
            match sc.engine.handle_input(now, &mut rx) {
                Ok(InputStatus::Budget) => continue,
                other => break other,
            }
        };
        match res {
            Ok(s) => {
                sc.blocked = s == InputStatus::Blocked;
                sc.rx = rx;
            }
            Err(f) => {
                self.notes.push(Note::Fault(n, c, f.label()));
                self.drop_transport(n, c);
            }
        }
        self.pump(n, c);
    }

    // ---- time ----

    fn next_time(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for l in &self.links {
            for p in &l.pipes {
                if let Some((at, _)) = p.front() {
                    consider(*at);
                }
            }
        }
        for Pending::Dial { at, .. } in &self.pending {
            consider(*at);
        }
        for node in &self.nodes {
            for sc in node.conns.iter().flatten() {
                if let Some(at) = sc.engine.poll_timeout() {
                    consider(at);
                }
            }
        }
        t
    }

    /// Advances to the next event and processes everything due then. False if idle.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        // Pipes.
        for l in 0..self.links.len() {
            for towards in 0..2 {
                while let Some((at, _)) = self.links[l].pipes[towards].front() {
                    if *at > now {
                        break;
                    }
                    let Some((_, item)) = self.links[l].pipes[towards].pop_front() else {
                        break;
                    };
                    let end = self.links[l].ends[towards];
                    match (end, item) {
                        (End::Conn(n, c), Item::Data(b)) => {
                            if self.nodes[n].conns[c]
                                .as_ref()
                                .is_some_and(|s| s.link.map(|x| x.0) == Some(l))
                            {
                                self.feed(n, c, BytesMut::from(&b[..]));
                            }
                        }
                        (End::Conn(n, c), Item::Eof) => {
                            let live = self.nodes[n].conns[c]
                                .as_ref()
                                .is_some_and(|s| s.link.map(|x| x.0) == Some(l));
                            if live {
                                let sc = self.nodes[n].conns[c].as_mut().expect("live");
                                sc.link = None;
                                sc.rx.clear();
                                sc.engine.handle_transport_error(now, TransportError::Eof);
                                self.notes.push(Note::Fault(n, c, "eof"));
                                self.pump(n, c);
                            }
                        }
                        (End::Raw(r), Item::Data(b)) => self.raws[r].received.extend_from_slice(&b),
                        (End::Raw(r), Item::Eof) => self.raws[r].eof = true,
                    }
                }
            }
        }
        // Dials.
        let due: Vec<(NodeId, ConnId)> = self
            .pending
            .iter()
            .filter_map(|Pending::Dial { node, conn, at }| (*at <= now).then_some((*node, *conn)))
            .collect();
        self.pending.retain(|Pending::Dial { at, .. }| *at > now);
        for (n, c) in due {
            self.complete_dial(n, c);
        }
        // Timers.
        for n in 0..self.nodes.len() {
            for c in 0..self.nodes[n].conns.len() {
                let due = self.nodes[n].conns[c]
                    .as_ref()
                    .and_then(|s| s.engine.poll_timeout())
                    .is_some_and(|t| t <= now);
                if !due {
                    continue;
                }
                let sc = self.nodes[n].conns[c].as_mut().expect("checked");
                let was_blocked = std::mem::take(&mut sc.blocked);
                if let Err(f) = sc.engine.handle_timeout(now) {
                    self.notes.push(Note::Fault(n, c, f.label()));
                    self.drop_transport(n, c);
                } else if was_blocked {
                    self.feed(n, c, BytesMut::new());
                }
                self.pump(n, c);
            }
        }
        true
    }

    fn complete_dial(&mut self, n: NodeId, c: ConnId) {
        if !self.has_conn(n, c) || self.conn(n, c).phase() != Phase::Connecting {
            return;
        }
        let target = self.conn(n, c).peer_addr().expect("client knows its peer");
        let now = self.now;
        let server = (0..self.nodes.len())
            .find(|&m| self.nodes[m].listening && self.nodes[m].cfg.addr.addr == target.addr);
        let Some(m) = server else {
            self.conn_mut(n, c)
                .handle_transport_error(now, TransportError::Refused);
            self.pump(n, c);
            return;
        };
        let seed = self.seed();
        let my_sock = self.nodes[n]
            .cfg
            .addr
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let engine = Connection::accept(Arc::clone(&self.nodes[m].cfg), now, my_sock, seed);
        let s = self.insert(m, engine);
        let l = self.links.len();
        self.links.push(Link {
            ends: [End::Conn(n, c), End::Conn(m, s)],
            pipes: [VecDeque::new(), VecDeque::new()],
            up: true,
            blackhole: false,
        });
        self.nodes[n].conns[c].as_mut().expect("dialer").link = Some((l, 0));
        self.nodes[m].conns[s].as_mut().expect("acceptor").link = Some((l, 1));
        self.conn_mut(n, c).handle_connected(now);
        self.pump(n, c);
        self.pump(m, s);
    }

    /// Runs until `cond` holds, failing after `max_steps` (livelock) or when idle.
    #[track_caller]
    pub fn drive_until(&mut self, max_steps: usize, mut cond: impl FnMut(&Self) -> bool) {
        for _ in 0..max_steps {
            if cond(self) {
                return;
            }
            if !self.step() {
                assert!(
                    cond(self),
                    "simulation went idle before the condition held; notes: {:#?}",
                    self.notes
                );
                return;
            }
        }
        assert!(
            cond(self),
            "condition not reached in {max_steps} steps; notes: {:#?}",
            self.notes
        );
    }

    /// Runs for `d` of simulated time (or until idle).
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let mut guard = 0u64;
        while let Some(t) = self.next_time() {
            if t > end {
                break;
            }
            self.step();
            guard += 1;
            assert!(guard < 10_000_000, "livelock in run_for");
        }
        self.now = self.now.max(end);
    }

    /// Runs until nothing is scheduled before `limit` of simulated time from now.
    pub fn settle(&mut self, limit: Duration) {
        self.run_for(limit);
    }

    pub fn count(&self, f: impl Fn(&Note) -> bool) -> usize {
        self.notes.iter().filter(|n| f(n)).count()
    }

    pub fn faults(&self, n: NodeId) -> Vec<&'static str> {
        self.notes
            .iter()
            .filter_map(|x| {
                if let Note::Fault(m, _, l) = x {
                    (*m == n).then_some(*l)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Fault labels for checks that read better than matching `Fault` values.
pub fn label(f: &Fault) -> &'static str {
    f.label()
}

//! One msgr v1 connection as a sans-IO state machine.
//!
//! See the [module docs](super) for the call order. The handshake states are a closed enum
//! ([`State`]); each holds only what is valid in that step. Session state that outlives
//! transports (seqs, queues, sent list) lives in [`Session`]; faults follow Ceph's
//! `ProtocolV1::fault` exactly: lossy sessions reset, a half-accepted connection with
//! nothing to say is dropped, standby policies park, connecting clients back off
//! (0.2 s doubling to 15 s, 15 s after WAIT), and open lossless sessions redial at once
//! (or park, for servers).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::accept::{self, Decision, ExistingState, ExistingView};
use super::config::{AuthConfig, Config, Policy};
use super::error::{Fault, PeerIncompatible, PeerMisbehaved, SendError, Timeout, TransportError};
use super::rng::Rng;
use super::session::Session;
use super::throttle::ThrottleGuard;
use super::timer::{Timer, TimerTable};
use crate::denc::{Reader, Writer};
use crate::entity::{EntityAddr, EntityType};
use crate::error::DecodeError;
use crate::features;
use crate::msg::Message;
use crate::time::Instant;
use crate::wire::banner::{self, ServerHello, CLIENT_HELLO_LEN, SERVER_HELLO_LEN};
use crate::wire::frame::{self, FrameConfig, Peek, Timespec, TxQueue};
use crate::wire::{Connect, ConnectReply, ConnectReplyRepr, ConnectRepr, FooterKind, Tag};

/// Auth method ids in `ceph_msg_connect.authorizer_protocol`.
const AUTH_UNKNOWN: u32 = 0;
const AUTH_NONE: u32 = 1;
/// Retry delay after a throttle refused a message (Ceph's 1 ms timer).
const THROTTLE_RETRY: std::time::Duration = std::time::Duration::from_millis(1);
/// What every `Options::body_timeout` window must bring of a message holding throttle
/// budget (or the rest of it), in bytes per second of the window.
const BODY_MIN_RATE: u64 = 64 * 1024;
/// Small bytes batched into one transmit chunk before it is cut.
const TX_BATCH: usize = 64 * 1024;
/// Sequence numbers restart below this after a reset with MSG_AUTH (Ceph's `SEQ_MASK`).
const SEQ_MASK: u64 = 0x7fff_ffff;

/// Throttle budget a message took when its header arrived, held while its body arrives.
#[derive(Debug)]
struct HeldBudget {
    guard: ThrottleGuard,
    /// The whole frame's length.
    frame_len: usize,
    /// Bytes of the frame received at the start of the current `body_timeout` window.
    window_had: usize,
}

/// Handshake and session states. Named predicates replace ordinal comparisons.
#[derive(Debug)]
enum State {
    /// Client: waiting for the driver to open a transport (`Event::Dial` was emitted).
    Dialing,
    /// Client: banner sent, waiting for the server's banner and addresses.
    ClientHello,
    /// Client: connect sent, waiting for the reply.
    ClientReply {
        /// What we sent (for diagnostics).
        sent: ConnectRepr,
    },
    /// Client: SEQ received, waiting for the server's acked seq.
    ClientAckSeq { reply: ConnectReplyRepr },
    /// Server: hello sent, waiting for the client's banner and address.
    ServerHello,
    /// Server: waiting for a `ceph_msg_connect`.
    ServerConnect,
    /// Server: connect validated, waiting for the messenger's lookup
    /// (`Event::AcceptRequest` → [`Connection::resolve_accept`]).
    ServerDecide { connect: ConnectRepr },
    /// Server: SEQ sent, waiting for the client's in_seq.
    ServerSeq,
    /// Session open: messages flow.
    Open,
    /// Parked after a fault; redials when something is queued (unless `policy.server`).
    Standby,
    /// Client: waiting out a backoff before redialing.
    Backoff,
    /// Stopped for good.
    Closed,
}

impl State {
    /// Ceph's START_CONNECT..CONNECTING_SEND_CONNECT_MSG: a client handshake in progress.
    fn is_client_handshake(&self) -> bool {
        matches!(
            self,
            Self::Dialing
                | Self::ClientHello
                | Self::ClientReply { .. }
                | Self::ClientAckSeq { .. }
        )
    }

    /// Ceph's START_CONNECT and CONNECTING: before the server said anything. A lossy client
    /// keeps retrying here instead of resetting.
    fn is_before_server_hello(&self) -> bool {
        matches!(self, Self::Dialing | Self::ClientHello)
    }

    /// Ceph's START_ACCEPT..ACCEPTING_WAIT_CONNECT_MSG_AUTH: accepting, not yet answered
    /// with SEQ/READY.
    fn is_half_accepted(&self) -> bool {
        matches!(
            self,
            Self::ServerHello | Self::ServerConnect | Self::ServerDecide { .. }
        )
    }

    /// Whether a transport is attached in this state.
    fn has_transport(&self) -> bool {
        !matches!(
            self,
            Self::Dialing | Self::Standby | Self::Backoff | Self::Closed
        )
    }
}

/// A coarse view of where a connection is, for drivers and dispatchers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Dialing or handshaking as the client.
    Connecting,
    /// Handshaking as the server.
    Accepting,
    /// Open.
    Open,
    /// Parked after a fault.
    Standby,
    /// Waiting to redial.
    Backoff,
    /// Stopped.
    Closed,
}

/// A received message and the throttle budget it holds until dropped.
#[derive(Debug)]
pub struct Received {
    /// The message (segments share the receive buffer).
    pub msg: Message,
    /// Released when dropped (after dispatch).
    pub throttle: Option<ThrottleGuard>,
    /// The session's negotiated features (to encode a reply without asking again).
    pub features: u64,
}

/// What a connection tells its driver and dispatchers.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Open a new transport to [`Connection::peer_addr`], then call
    /// [`Connection::handle_connected`] (or [`Connection::handle_transport_error`]).
    Dial,
    /// Server: the connect is valid; look up any session with [`Connection::peer_addr`]
    /// and call [`Connection::resolve_accept`].
    AcceptRequest,
    /// Our outgoing session is (re)established (`ms_handle_connect`).
    Connected,
    /// An incoming session was accepted (`ms_handle_accept`).
    Accepted,
    /// A message arrived, in order, not a duplicate.
    Message(Received),
    /// The session failed and its state is gone; queued messages were dropped
    /// (`ms_handle_reset`). Lossy sessions only, or a half-accepted connection.
    Reset,
    /// The peer reset the session; ours was discarded (`ms_handle_remote_reset`).
    RemoteReset,
    /// The peer refused our connection (`ms_handle_refused`); we back off and retry.
    Refused,
    /// A KEEPALIVE2_ACK echoed one of our stamps.
    KeepaliveAck {
        /// When we sent the keepalive it answers.
        sent_at: Instant,
    },
    /// We learned our IP from what the server sees (`ms_learn_addr_from_peer`).
    AddrLearned(EntityAddr),
    /// Server: we refused a connect (BADPROTOVER, FEATURES or BADAUTHORIZER); the peer may
    /// retry on the same socket.
    Rejected(Tag),
}

/// What [`Connection::handle_input`] did with the receive buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InputStatus {
    /// Everything usable was consumed; read more from the transport.
    NeedMore,
    /// A throttle is full: stop reading the transport until the next timeout
    /// (`poll_timeout` is armed 1 ms out), then call `handle_input` again.
    Blocked,
    /// The per-call budget ran out with input left: call again.
    Budget,
    /// The connection is waiting for something other than bytes (a decision, a dial).
    Paused,
}

/// The outcome of [`Connection::resolve_accept`], for the messenger's registry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AcceptOutcome {
    /// This connection opened a session: register it under its peer address.
    Opened,
    /// This connection answered a retry/reset/wait and waits for the next connect.
    Replied(Tag),
    /// The lossy existing session was reset and stopped; this connection opened: register
    /// it in the existing one's place.
    ReplacedLossy,
    /// The existing session adopted this connection's transport (it now answers on it);
    /// this connection is closed. Move the transport to the existing connection.
    Adopted,
    /// Nothing was pending (not in the decision state).
    NotPending,
}

/// Counters of one connection; summed by the messenger for `perf dump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Messages delivered to the application.
    pub msgs_in: u64,
    /// Messages written to the transport.
    pub msgs_out: u64,
    /// Payload bytes delivered.
    pub bytes_in: u64,
    /// Payload bytes written.
    pub bytes_out: u64,
    /// Messages dropped as duplicates (`seq <= in_seq`).
    pub dropped_old: u64,
    /// Messages dropped unsent by a reset or mark_down.
    pub discarded: u64,
    /// Faults of any cause.
    pub faults: u64,
    /// Sessions opened (connects and accepts).
    pub sessions: u64,
    /// Times a throttle stopped reading.
    pub throttle_waits: u64,
}

/// A msgr v1 connection.
#[derive(Debug)]
pub struct Connection {
    cfg: Arc<Config>,
    state: State,
    session: Session,
    /// Our address as we present it (its IP may be learned from the first server).
    my_addr: EntityAddr,
    /// The peer's address (dialed, or claimed in its hello).
    peer_addr: Option<EntityAddr>,
    /// What a server we dialed announced when it was not `peer_addr` (another nonce: a
    /// restarted daemon), for tools that retry with it.
    announced: Option<EntityAddr>,
    /// The address the transport sees for the peer (server side).
    socket_peer: Option<SocketAddr>,
    peer_type: Option<EntityType>,
    policy: Policy,
    /// Negotiated features (0 before the first session).
    features: u64,
    frame: FrameConfig,
    /// Our global_seq for the current connect attempt.
    global_seq: u32,
    backoff: std::time::Duration,
    /// The server said WAIT: the next fault backs off the maximum.
    waiting: bool,
    /// This connection adopted another's transport and will open on the next connect.
    replacing: bool,
    /// The peer restarted its session: open without the SEQ exchange.
    is_reset_from_peer: bool,
    tx: TxQueue,
    events: VecDeque<Event>,
    timers: TimerTable,
    rng: Rng,
    /// Throttle budget taken for the message whose body is still arriving.
    pending_throttle: Option<HeldBudget>,
    /// Bytes the current read step needs in the receive buffer.
    rx_need: usize,
    last_keepalive: Option<Instant>,
    last_keepalive_ack: Option<Instant>,
    /// Last input or output on the open session (for the idle timer).
    last_active: Instant,
    /// The receive buffer's length when `handle_input` last returned, and whether it
    /// returned [`InputStatus::Blocked`]: what tells new input from a re-offer of the same
    /// bytes (see `handle_input`).
    rx_left: usize,
    rx_blocked: bool,
    /// Bytes the driver has read and holds without offering them yet (see
    /// [`Connection::note_unoffered`]).
    rx_unoffered: usize,
    /// Server: connects read on the current transport (see `Options::max_connect_attempts`).
    connects: u32,
    stats: ConnStats,
}

impl Connection {
    fn new(cfg: Arc<Config>, state: State, policy: Policy, seed: u64) -> Self {
        let frame = FrameConfig {
            footer: FooterKind::New,
            crc_header: cfg.options.crc_header,
            crc_data: cfg.options.crc_data,
            limits: cfg.options.limits,
        };
        Self {
            my_addr: cfg.addr,
            cfg,
            state,
            session: Session::default(),
            peer_addr: None,
            announced: None,
            socket_peer: None,
            peer_type: None,
            policy,
            features: 0,
            frame,
            global_seq: 0,
            backoff: std::time::Duration::ZERO,
            waiting: false,
            replacing: false,
            is_reset_from_peer: false,
            tx: TxQueue::default(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
            rng: Rng::new(seed),
            pending_throttle: None,
            rx_left: 0,
            rx_blocked: false,
            rx_unoffered: 0,
            connects: 0,
            rx_need: 0,
            last_keepalive: None,
            last_keepalive_ack: None,
            last_active: Instant::ZERO,
            stats: ConnStats::default(),
        }
    }

    /// A client connection to `peer_addr`, an entity of type `peer_type`. It starts by
    /// emitting [`Event::Dial`]. `seed` feeds the connection's PRNG (sequence
    /// randomization after a reset).
    pub fn connect(
        cfg: Arc<Config>,
        now: Instant,
        peer_addr: EntityAddr,
        peer_type: EntityType,
        seed: u64,
    ) -> Self {
        let policy = cfg.policies.get(peer_type).clone();
        let mut c = Self::new(cfg, State::Dialing, policy, seed);
        c.peer_addr = Some(peer_addr);
        c.peer_type = Some(peer_type);
        c.start_connect(now);
        c
    }

    /// A server connection for a transport just accepted from `socket_peer`. Its hello
    /// (banner and addresses) is ready in `poll_transmit`.
    pub fn accept(cfg: Arc<Config>, now: Instant, socket_peer: SocketAddr, seed: u64) -> Self {
        let policy = cfg.policies.default.clone();
        let mut c = Self::new(cfg, State::ServerHello, policy, seed);
        c.socket_peer = Some(socket_peer);
        let hello = ServerHello {
            server_addr: c.my_addr,
            client_addr: EntityAddr::v1(socket_peer, 0),
        };
        c.tx.put_small(&hello.emit());
        c.rx_need = CLIENT_HELLO_LEN;
        c.timers
            .set(Timer::Ready, now + c.cfg.options.ready_timeout);
        c
    }

    // ---- getters ----

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Dialing
            | State::ClientHello
            | State::ClientReply { .. }
            | State::ClientAckSeq { .. } => Phase::Connecting,
            State::ServerHello
            | State::ServerConnect
            | State::ServerDecide { .. }
            | State::ServerSeq => Phase::Accepting,
            State::Open => Phase::Open,
            State::Standby => Phase::Standby,
            State::Backoff => Phase::Backoff,
            State::Closed => Phase::Closed,
        }
    }

    /// Whether the session is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether the connection is stopped for good.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The peer's address (known after its hello when accepting).
    pub fn peer_addr(&self) -> Option<EntityAddr> {
        self.peer_addr
    }

    /// The address the server we dialed announced in its banner, when that was not the one we
    /// dialed (the handshake then failed with [`PeerMisbehaved::AddressMismatch`]).
    pub fn announced_addr(&self) -> Option<EntityAddr> {
        self.announced
    }

    /// The peer's entity type (known after its connect when accepting).
    pub fn peer_type(&self) -> Option<EntityType> {
        self.peer_type
    }

    /// Our address as presented to this peer.
    pub fn my_addr(&self) -> EntityAddr {
        self.my_addr
    }

    /// Negotiated features (0 before the first session).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The session's policy (for accepted connections, the one for the peer's type).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Seq of the last message received.
    pub fn in_seq(&self) -> u64 {
        self.session.in_seq
    }

    /// Seq of the last message written.
    pub fn out_seq(&self) -> u64 {
        self.session.out_seq
    }

    /// The session's reconnect counter.
    pub fn connect_seq(&self) -> u32 {
        self.session.connect_seq
    }

    /// The peer's global_seq for this session.
    pub fn peer_global_seq(&self) -> u32 {
        self.session.peer_global_seq
    }

    /// Messages waiting to be written.
    pub fn queued(&self) -> usize {
        self.session.queued()
    }

    /// Messages written and not yet acked.
    pub fn unacked(&self) -> usize {
        self.session.unacked()
    }

    /// When the peer last sent a keepalive.
    pub fn last_keepalive(&self) -> Option<Instant> {
        self.last_keepalive
    }

    /// The stamp of the latest KEEPALIVE2_ACK.
    pub fn last_keepalive_ack(&self) -> Option<Instant> {
        self.last_keepalive_ack
    }

    /// Counters.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// How many bytes the receive buffer should hold for the current step to make
    /// progress (lets a driver reserve a whole large message at once).
    pub fn rx_hint(&self) -> usize {
        self.rx_need
    }

    /// This connection as an existing session in the server's decision table.
    pub fn summary(&self) -> ExistingView {
        let state = match self.state {
            State::Closed => ExistingState::Closed,
            State::Open => ExistingState::Open,
            State::Standby => ExistingState::Standby,
            _ => ExistingState::Connecting,
        };
        ExistingView {
            state,
            connect_seq: self.session.connect_seq,
            peer_global_seq: self.session.peer_global_seq,
            lossy: self.policy.lossy,
            policy_server: self.policy.server,
            replacing: self.replacing,
        }
    }

    // ---- inputs ----

    /// The transport requested by [`Event::Dial`] is connected: the client handshake
    /// starts (the banner is ready in `poll_transmit`).
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Dialing) {
            return;
        }
        self.tx.clear();
        self.tx.put_small(banner::BANNER);
        self.state = State::ClientHello;
        self.rx_need = SERVER_HELLO_LEN;
        if self.timers.get(Timer::Ready).is_none() {
            self.timers
                .set(Timer::Ready, now + self.cfg.options.ready_timeout);
        }
    }

    /// The transport failed (or could not be opened). The engine reacts as to any fault;
    /// a refused connect is also reported as [`Event::Refused`].
    pub fn handle_transport_error(&mut self, now: Instant, e: TransportError) {
        if !self.state.has_transport() && !matches!(self.state, State::Dialing) {
            return;
        }
        if e == TransportError::Refused {
            self.events.push_back(Event::Refused);
        }
        self.fault(now, Fault::Transport(e));
    }

    /// Consumes what it can from `rx`, the transport's receive buffer (the caller keeps
    /// the unconsumed rest for next time). Received messages share `rx`'s memory.
    ///
    /// On `Err`, the engine has already reacted to the fault (reset, backoff, standby...);
    /// the driver must close the transport and discard `rx`.
    ///
    /// Drivers may offer the same unconsumed bytes again (a partial frame, re-offered on
    /// every pass over the connection): only new bytes, or a retry of input a throttle
    /// blocked, count as activity for the idle timer, so a session whose peer went silent
    /// mid-frame still times out.
    pub fn handle_input(&mut self, now: Instant, rx: &mut BytesMut) -> Result<InputStatus, Fault> {
        let budget = self.cfg.options.input_budget;
        self.handle_input_steps(now, rx, budget)
    }

    /// [`Connection::handle_input`] with at most `budget` read steps (a message is a few):
    /// a run-to-completion driver takes a little from each connection per turn and sends
    /// the replies to that much before it reads more, so the peer works while it reads.
    pub fn handle_input_steps(
        &mut self,
        now: Instant,
        rx: &mut BytesMut,
        budget: usize,
    ) -> Result<InputStatus, Fault> {
        if !self.state.has_transport() {
            rx.clear();
            return Ok(InputStatus::Paused);
        }
        self.rx_unoffered = 0;
        let fresh = rx.len() != self.rx_left || self.rx_blocked;
        if !rx.is_empty() && fresh && self.is_open() {
            self.touch(now);
        }
        let r = self.input_steps(now, rx, budget);
        self.rx_left = rx.len();
        self.rx_blocked = matches!(r, Ok(InputStatus::Blocked));
        r
    }

    /// `handle_input`'s loop: read steps until the input runs out, blocks, or the budget
    /// is spent.
    fn input_steps(
        &mut self,
        now: Instant,
        rx: &mut BytesMut,
        budget: usize,
    ) -> Result<InputStatus, Fault> {
        let mut budget = budget.max(1);
        loop {
            let step = match self.read_step(now, rx) {
                Ok(s) => s,
                Err(Stop::Fault(f)) => {
                    self.fault(now, f);
                    return Err(f);
                }
                Err(Stop::Closed(f)) => return Err(f),
            };
            match step {
                Step::Progress => {
                    budget -= 1;
                    if budget == 0 {
                        return Ok(if rx.is_empty() {
                            InputStatus::NeedMore
                        } else {
                            InputStatus::Budget
                        });
                    }
                }
                Step::NeedMore => return Ok(InputStatus::NeedMore),
                Step::Blocked => return Ok(InputStatus::Blocked),
                Step::Paused => return Ok(InputStatus::Paused),
            }
        }
    }

    /// Runs the timers due at `now`. On `Err` (a handshake or idle timeout), the engine has
    /// reacted; the driver must close the transport. Call `handle_input` afterwards if the
    /// connection was [`InputStatus::Blocked`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Fault> {
        let due: Vec<Timer> = self.timers.expired(now).collect();
        for t in due {
            match t {
                Timer::Ready
                    if self.state.is_client_handshake() || self.phase() == Phase::Accepting =>
                {
                    let f = Fault::TimedOut(Timeout::Ready);
                    self.fault(now, f);
                    return Err(f);
                }
                Timer::Idle if self.is_open() => {
                    let idle_until = self.last_active + self.cfg.options.idle_timeout;
                    if idle_until > now {
                        self.timers.set(Timer::Idle, idle_until);
                        continue;
                    }
                    let f = Fault::TimedOut(Timeout::Idle);
                    self.fault(now, f);
                    return Err(f);
                }
                Timer::Backoff if matches!(self.state, State::Backoff) => self.start_connect(now),
                Timer::Keepalive if self.is_open() => {
                    self.session.keepalive_pending = true;
                    if let Some(i) = self.cfg.options.keepalive_interval {
                        self.timers.set(Timer::Keepalive, now + i);
                    }
                }
                Timer::Body => self.check_body(now)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The driver holds `n` bytes of input, read from the transport and not offered to
    /// `handle_input` yet (it gathers a large frame into one buffer before offering it),
    /// the bytes it last offered included. They count as the arriving message's progress
    /// for `Options::body_timeout`. Offering input resets it.
    pub fn note_unoffered(&mut self, n: usize) {
        self.rx_unoffered = n;
    }

    /// `Options::body_timeout`'s check, at the end of each window: a message holding
    /// throttle budget must have brought the rest of itself or `BODY_MIN_RATE` per second
    /// of the window since the last check (what the driver has offered `handle_input`, or
    /// holds as noted by `note_unoffered`). The fault's own log line says why.
    fn check_body(&mut self, now: Instant) -> Result<(), Fault> {
        let (Some(held), Some(window)) =
            (&mut self.pending_throttle, self.cfg.options.body_timeout)
        else {
            return Ok(());
        };
        let had = self.rx_left.max(self.rx_unoffered).min(held.frame_len);
        let floor = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(BODY_MIN_RATE)
            / 1000;
        let rest = (held.frame_len - held.window_had) as u64;
        let came = had.saturating_sub(held.window_had) as u64;
        if came < rest.min(floor) {
            let f = Fault::TimedOut(Timeout::Body);
            self.fault(now, f);
            return Err(f);
        }
        held.window_had = had;
        self.timers.set(Timer::Body, now + window);
        Ok(())
    }

    /// Server: decides what to do with the pending connect, given the session the
    /// messenger found for [`Connection::peer_addr`] (`None` if there is none, or if the
    /// lookup found this very connection). Applies the decision to both connections.
    pub fn resolve_accept(&mut self, now: Instant, existing: Option<&mut Self>) -> AcceptOutcome {
        let State::ServerDecide { connect } = self.state else {
            return AcceptOutcome::NotPending;
        };
        let view = existing.as_ref().map(|e| e.summary());
        let peer_lt_me = self
            .peer_addr
            .is_some_and(|p| p.ceph_cmp(&self.my_addr).is_lt());
        let (decision, row) = accept::decide(
            &connect,
            view.as_ref(),
            self.policy.resetcheck,
            self.replacing,
            peer_lt_me,
        );
        debug!(peer = %self.peer_label(), gseq = connect.global_seq, cseq = connect.connect_seq, ?view, ?decision, row, "accept decision");
        self.state = State::ServerConnect;
        self.rx_need = ConnectRepr::LEN;
        match (decision, existing) {
            (Decision::Open, _) => {
                self.open(now, &connect);
                AcceptOutcome::Opened
            }
            (Decision::RetryGlobal(g), _) => self.reply(&connect, Tag::RetryGlobal, g, 0),
            (Decision::RetrySession(c), _) => self.reply(&connect, Tag::RetrySession, 0, c),
            (Decision::ResetSession, _) => self.reply(&connect, Tag::ResetSession, 0, 0),
            (Decision::Wait, ex) => {
                // Make sure our own attempt goes through: the peer has something for us.
                if let Some(ex) = ex {
                    ex.send_keepalive();
                }
                self.reply(&connect, Tag::Wait, 0, 0)
            }
            (Decision::ReplaceLossy, Some(ex)) => {
                ex.session_reset();
                ex.stop();
                ex.events.push_back(Event::Reset);
                self.open(now, &connect);
                AcceptOutcome::ReplacedLossy
            }
            (
                Decision::Replace {
                    hard_reset,
                    reset_session,
                },
                Some(ex),
            ) => {
                if reset_session {
                    ex.session_reset();
                }
                ex.adopt(now, self, &connect, hard_reset);
                AcceptOutcome::Adopted
            }
            (Decision::ReplaceLossy | Decision::Replace { .. }, None) => {
                // decide() only replaces an existing session; keep the table honest.
                self.open(now, &connect);
                AcceptOutcome::Opened
            }
        }
    }

    // ---- application commands ----

    /// Queues a message. Priority 0 becomes the configured default; the sequence number
    /// is assigned when the message is written. A parked client session redials.
    pub fn send_message(&mut self, now: Instant, m: Message) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed(Box::new(m)));
        }
        if !self.has_room(m.payload_len(), 0, 0) {
            return Err(SendError::QueueFull(Box::new(m)));
        }
        self.enqueue(now, m);
        Ok(())
    }

    /// Whether a message of `len` bytes fits under `max_queued_messages` and
    /// `max_queued_bytes`, counting `more_msgs`/`more_bytes` on their way here besides what
    /// the session holds (queued, and written but unacked). One message larger than the
    /// byte limit fits an empty session (the segment limits bound it).
    pub fn has_room(&self, len: usize, more_msgs: usize, more_bytes: usize) -> bool {
        let o = &self.cfg.options;
        let held = self.session.held_bytes() + more_bytes;
        self.session.queued() + more_msgs < o.max_queued_messages
            && (held == 0 || held.saturating_add(len) <= o.max_queued_bytes)
    }

    /// Payload bytes held for the peer: queued, and written but not yet acked.
    pub fn held_bytes(&self) -> usize {
        self.session.held_bytes()
    }

    /// Queues a message whose room the caller checked ([`Self::has_room`]) before handing
    /// it over (a worker's mailbox): only a closed session refuses it.
    pub fn send_reserved(&mut self, now: Instant, m: Message) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed(Box::new(m)));
        }
        self.enqueue(now, m);
        Ok(())
    }

    fn enqueue(&mut self, now: Instant, mut m: Message) {
        if m.header.priority == 0 {
            m.header.priority = self.cfg.options.default_priority;
        }
        m.header.seq = 0;
        self.session.enqueue(m);
        if matches!(self.state, State::Standby) && !self.policy.server {
            self.start_connect(now);
        }
    }

    /// Asks for a keepalive (KEEPALIVE2 with our clock) on the next write.
    pub fn send_keepalive(&mut self) {
        if !self.is_closed() {
            self.session.keepalive_pending = true;
        }
    }

    /// Stops the connection and drops everything queued, without telling dispatchers
    /// (Ceph's `mark_down`). The driver closes the transport.
    pub fn mark_down(&mut self) {
        self.stop();
    }

    // ---- outputs ----

    /// The next chunk of bytes for the transport, in order. Messages are numbered and
    /// encoded here, when they are written. The driver must write every chunk it takes
    /// completely, or report a transport error.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        loop {
            if let Some(b) = self.tx.pop_chunk() {
                if self.is_open() {
                    self.touch(now);
                }
                return Some(b);
            }
            // Produce more, batching the small parts of several frames into one chunk.
            if self.is_open() && self.tx.small_len() < TX_BATCH {
                if self.session.keepalive_pending {
                    self.session.keepalive_pending = false;
                    if features::has(self.features, features::MSGR_KEEPALIVE2) {
                        self.tx.put_small(&frame::encode_keepalive2(
                            Timespec::from_instant(now),
                            false,
                        ));
                    } else {
                        self.tx.put_small(&[u8::from(Tag::Keepalive)]);
                    }
                    continue;
                }
                if let Some(mut m) = self.session.next_outgoing() {
                    self.session.out_seq = self.session.out_seq.wrapping_add(1);
                    m.header.seq = self.session.out_seq;
                    m.header.src = self.cfg.name;
                    frame::encode_msg(&m, &self.frame, &mut self.tx);
                    self.stats.msgs_out += 1;
                    self.stats.bytes_out += m.payload_len() as u64;
                    if !self.policy.lossy {
                        self.session.record_sent(m);
                    }
                    continue;
                }
                if self.session.ack_pending {
                    self.session.ack_pending = false;
                    self.tx.put_small(&frame::encode_ack(self.session.in_seq));
                    continue;
                }
            }
            // Nothing more to produce (or the batch is full): send what is pending.
            if self.tx.small_len() == 0 {
                return None;
            }
            self.tx.cut();
        }
    }

    /// The earliest instant at which [`Connection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next event for the driver or dispatchers.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn peer_label(&self) -> PeerLabel {
        PeerLabel(self.peer_addr)
    }

    // ---- internals: reading ----

    fn read_step(&mut self, now: Instant, rx: &mut BytesMut) -> Result<Step, Stop> {
        match self.state {
            State::ClientHello => self.read_server_hello(now, rx),
            State::ClientReply { .. } => self.read_connect_reply(now, rx),
            State::ClientAckSeq { reply } => {
                let Some(acked) = take_u64(rx) else {
                    return self.need(8);
                };
                let dropped = self.session.discard_requeued_up_to(acked);
                debug!(acked, dropped, "client: peer in_seq");
                self.tx.put_small(&self.session.in_seq.to_le_bytes());
                self.client_ready(now, &reply)?;
                Ok(Step::Progress)
            }
            State::ServerHello => {
                if rx.len() < CLIENT_HELLO_LEN {
                    // Refuse a wrong banner as soon as it is in, not when 145 bytes are.
                    if rx.len() >= banner::BANNER_LEN {
                        banner::check_banner(rx).map_err(fault)?;
                    }
                    return self.need(CLIENT_HELLO_LEN);
                }
                let mut peer = banner::parse_client_hello(rx).map_err(fault)?;
                rx.advance(CLIENT_HELLO_LEN);
                if peer.is_blank_ip() {
                    // The peer does not know its IP: take the socket's, keep its port/nonce.
                    if let Some(sock) = self.socket_peer {
                        let port = peer.port();
                        let mut a = sock;
                        a.set_port(port);
                        peer.addr = Some(a);
                        peer.ty = crate::entity::AddrType::LEGACY;
                    }
                }
                self.peer_addr = Some(peer);
                self.state = State::ServerConnect;
                self.rx_need = ConnectRepr::LEN;
                Ok(Step::Progress)
            }
            State::ServerConnect => self.read_connect(now, rx),
            State::ServerSeq => {
                let Some(acked) = take_u64(rx) else {
                    return self.need(8);
                };
                let dropped = self.session.discard_requeued_up_to(acked);
                debug!(acked, dropped, "server: peer in_seq");
                self.ready(now);
                Ok(Step::Progress)
            }
            State::Open => self.read_stream(now, rx),
            State::ServerDecide { .. }
            | State::Dialing
            | State::Standby
            | State::Backoff
            | State::Closed => Ok(Step::Paused),
        }
    }

    fn need(&mut self, n: usize) -> Result<Step, Stop> {
        self.rx_need = n;
        Ok(Step::NeedMore)
    }

    fn read_server_hello(&mut self, now: Instant, rx: &mut BytesMut) -> Result<Step, Stop> {
        if rx.len() < SERVER_HELLO_LEN {
            if rx.len() >= banner::BANNER_LEN {
                banner::check_banner(rx).map_err(fault)?;
            }
            return self.need(SERVER_HELLO_LEN);
        }
        let hello = ServerHello::parse(rx).map_err(fault)?;
        rx.advance(SERVER_HELLO_LEN);
        let dialed = self.peer_addr.unwrap_or_else(EntityAddr::none);
        let claimed = hello.server_addr;
        if !same_peer(&dialed, &claimed) {
            let same_node = claimed.is_blank_ip()
                && claimed.port() == dialed.port()
                && claimed.nonce == dialed.nonce;
            if !same_node {
                self.announced = Some(claimed);
                return Err(Stop::Fault(Fault::Misbehaved(
                    PeerMisbehaved::AddressMismatch { dialed, claimed },
                )));
            }
        }
        if self.my_addr.is_blank_ip() && self.cfg.options.learn_addr_from_peer {
            if let Some(seen) = hello.client_addr.addr {
                let port = self.my_addr.port();
                let mut a = seen;
                a.set_port(port);
                self.my_addr.addr = Some(a);
                self.my_addr.ty = crate::entity::AddrType::LEGACY;
                info!(addr = %self.my_addr, "learned my address from peer");
                self.events.push_back(Event::AddrLearned(self.my_addr));
            }
        }
        self.tx.put_small(&self.my_addr.to_legacy());
        self.send_connect();
        let _ = now;
        Ok(Step::Progress)
    }

    fn send_connect(&mut self) {
        let peer_type = self.peer_type.unwrap_or(EntityType::ANY);
        let (auth_proto, authorizer) = self.authorizer(peer_type);
        let c = ConnectRepr {
            features: self.policy.features_supported,
            host_type: self.cfg.name.ty,
            global_seq: self.global_seq,
            connect_seq: self.session.connect_seq,
            protocol_version: self.cfg.proto_version(peer_type, true),
            authorizer_protocol: auth_proto,
            authorizer_len: authorizer.len() as u32,
            flags: if self.policy.lossy {
                crate::wire::connect::FLAG_LOSSY
            } else {
                0
            },
        };
        debug!(
            gseq = c.global_seq,
            cseq = c.connect_seq,
            proto = c.protocol_version,
            "client: send connect"
        );
        self.tx.put_small(&c.emit());
        if !authorizer.is_empty() {
            self.tx.put_small(&authorizer);
        }
        self.state = State::ClientReply { sent: c };
        self.rx_need = ConnectReplyRepr::LEN;
    }

    /// The v1 authorizer: none from a non-mon to a mon (it authenticates with MAuth),
    /// otherwise what the config says.
    fn authorizer(&self, peer_type: EntityType) -> (u32, Bytes) {
        if peer_type == EntityType::MON && self.cfg.name.ty != EntityType::MON {
            return (AUTH_UNKNOWN, Bytes::new());
        }
        match &self.cfg.auth {
            AuthConfig::Empty => (AUTH_UNKNOWN, Bytes::new()),
            AuthConfig::None { id, global_id } => {
                let mut w = Writer::new(0);
                w.u8(1); // AUTH_MODE_AUTHORIZER / struct_v
                w.u32(u32::from(self.cfg.name.ty.0));
                w.string(id);
                w.u64(*global_id);
                (AUTH_NONE, w.finish())
            }
        }
    }

    fn read_connect_reply(&mut self, now: Instant, rx: &mut BytesMut) -> Result<Step, Stop> {
        if rx.len() < ConnectReplyRepr::LEN {
            return self.need(ConnectReplyRepr::LEN);
        }
        let reply =
            ConnectReplyRepr::parse(&ConnectReply::new_unchecked(&rx[..])).map_err(fault)?;
        // Auth none: the authorizer reply carries nothing we check.
        let Some(_authorizer_reply) = self.take_with_authorizer(
            rx,
            ConnectReplyRepr::LEN,
            reply.authorizer_len,
            "authorizer reply",
        )?
        else {
            return Ok(Step::NeedMore);
        };
        if let State::ClientReply { sent } = &self.state {
            debug!(tag = ?reply.tag, gseq = reply.global_seq, cseq = reply.connect_seq, our_gseq = sent.global_seq, our_cseq = sent.connect_seq, "client: connect reply");
        }
        match reply.tag {
            Tag::Features => Err(Stop::Fault(Fault::Incompatible(
                PeerIncompatible::MissingFeatures {
                    missing: reply.features & !self.policy.features_supported,
                },
            ))),
            Tag::BadProtoVer => Err(Stop::Fault(Fault::Incompatible(
                PeerIncompatible::ProtocolVersion {
                    ours: self
                        .cfg
                        .proto_version(self.peer_type.unwrap_or(EntityType::ANY), true),
                    theirs: reply.protocol_version,
                },
            ))),
            Tag::BadAuthorizer => Err(Stop::Fault(Fault::Incompatible(
                PeerIncompatible::AuthorizerRejected,
            ))),
            Tag::ChallengeAuthorizer => Err(Stop::Fault(Fault::Incompatible(
                PeerIncompatible::ChallengeUnsupported,
            ))),
            Tag::ResetSession => {
                self.session_reset();
                self.session.connect_seq = 0;
                self.send_connect();
                Ok(Step::Progress)
            }
            Tag::RetryGlobal => {
                self.global_seq = self.cfg.global_seq.next_above(reply.global_seq);
                self.send_connect();
                Ok(Step::Progress)
            }
            Tag::RetrySession => {
                if reply.connect_seq <= self.session.connect_seq {
                    return Err(Stop::Fault(Fault::Misbehaved(
                        PeerMisbehaved::RetrySessionNotIncreasing {
                            ours: self.session.connect_seq,
                            theirs: reply.connect_seq,
                        },
                    )));
                }
                self.session.connect_seq = reply.connect_seq;
                self.send_connect();
                Ok(Step::Progress)
            }
            Tag::Wait => {
                self.waiting = true;
                Err(Stop::Fault(Fault::Wait))
            }
            Tag::Seq | Tag::Ready => {
                let missing = self.policy.features_required & !reply.features;
                if missing != 0 {
                    return Err(Stop::Fault(Fault::Incompatible(
                        PeerIncompatible::MissingFeatures { missing },
                    )));
                }
                if reply.tag == Tag::Seq {
                    self.state = State::ClientAckSeq { reply };
                    self.rx_need = 8;
                } else {
                    self.client_ready(now, &reply)?;
                }
                Ok(Step::Progress)
            }
            other => Err(Stop::Fault(Fault::Misbehaved(
                PeerMisbehaved::UnexpectedReplyTag(other),
            ))),
        }
    }

    fn client_ready(&mut self, now: Instant, reply: &ConnectReplyRepr) -> Result<(), Stop> {
        self.session.peer_global_seq = reply.global_seq;
        self.policy.lossy = reply.is_lossy();
        self.session.once_ready = true;
        // A u32 the peer can set (RETRY_SESSION): it wraps as in Ceph, never overflows.
        self.session.connect_seq = self.session.connect_seq.wrapping_add(1);
        if self.session.connect_seq != reply.connect_seq {
            return Err(Stop::Fault(Fault::Misbehaved(
                PeerMisbehaved::ConnectSeqMismatch {
                    expected: self.session.connect_seq,
                    theirs: reply.connect_seq,
                },
            )));
        }
        self.backoff = std::time::Duration::ZERO;
        self.set_features(reply.features & self.policy.features_supported);
        info!(peer = %self.peer_label(), cseq = self.session.connect_seq, lossy = self.policy.lossy, features = format_args!("{:#x}", self.features), "connected");
        self.events.push_back(Event::Connected);
        self.ready(now);
        Ok(())
    }

    /// Consumes a fixed-size connect (or reply) and the authorizer that follows it, once
    /// both are in; `None` (with `rx_need` set) until then. A length above the configured
    /// limit is refused before anything is buffered for it.
    fn take_with_authorizer(
        &mut self,
        rx: &mut BytesMut,
        fixed: usize,
        len: u32,
        what: &'static str,
    ) -> Result<Option<Bytes>, Stop> {
        let limit = self.cfg.options.limits.max_authorizer;
        if len > limit {
            return Err(fault(DecodeError::TooLarge {
                what,
                len: u64::from(len),
                limit: u64::from(limit),
            }));
        }
        let total = fixed + len as usize;
        if rx.len() < total {
            self.rx_need = total;
            return Ok(None);
        }
        rx.advance(fixed);
        Ok(Some(rx.split_to(len as usize).freeze()))
    }

    fn read_connect(&mut self, now: Instant, rx: &mut BytesMut) -> Result<Step, Stop> {
        if rx.len() < ConnectRepr::LEN {
            return self.need(ConnectRepr::LEN);
        }
        let connect = ConnectRepr::parse(&Connect::new_unchecked(&rx[..])).map_err(fault)?;
        let Some(authorizer) =
            self.take_with_authorizer(rx, ConnectRepr::LEN, connect.authorizer_len, "authorizer")?
        else {
            return Ok(Step::NeedMore);
        };
        debug!(gseq = connect.global_seq, cseq = connect.connect_seq, host_type = %connect.host_type, "server: connect");
        self.connects = self.connects.saturating_add(1);
        let max = self.cfg.options.max_connect_attempts;
        if max > 0 && self.connects > max {
            return Err(Stop::Fault(Fault::Misbehaved(
                PeerMisbehaved::TooManyConnects {
                    attempts: self.connects,
                },
            )));
        }

        self.peer_type = Some(connect.host_type);
        self.policy = self.cfg.policies.get(connect.host_type).clone();
        // Row 1: protocol version.
        let mine = self.cfg.proto_version(connect.host_type, false);
        if connect.protocol_version != mine {
            self.reply(&connect, Tag::BadProtoVer, 0, 0);
            return Ok(Step::Progress);
        }
        // Row 3: required features (row 2 only applies to cephx, which we do not accept).
        if self.policy.features_required & !connect.features != 0 {
            self.reply(&connect, Tag::Features, 0, 0);
            return Ok(Step::Progress);
        }
        // Rows 4–5: the authorizer.
        if !self.authorizer_ok(&connect, &authorizer) {
            self.reply(&connect, Tag::BadAuthorizer, 0, 0);
            return Ok(Step::Progress);
        }
        // Row 6: anonymous lossy clients never collide with anything.
        if self.policy.server && self.policy.lossy && !self.policy.register_lossy_clients {
            self.open(now, &connect);
            return Ok(Step::Progress);
        }
        self.state = State::ServerDecide { connect };
        self.events.push_back(Event::AcceptRequest);
        Ok(Step::Paused)
    }

    /// Accepts no authorizer when configured to, and auth-none authorizers that decode.
    /// cephx is not spoken here, so its authorizers are refused.
    fn authorizer_ok(&self, c: &ConnectRepr, authorizer: &Bytes) -> bool {
        match c.authorizer_protocol {
            AUTH_UNKNOWN if authorizer.is_empty() => self.cfg.accept_empty_authorizer,
            AUTH_NONE if authorizer.is_empty() => self.cfg.accept_empty_authorizer,
            AUTH_NONE => {
                let mut r = Reader::new(authorizer.clone());
                let ok = (|| -> Result<(), DecodeError> {
                    r.u8()?;
                    r.u32()?;
                    r.string()?;
                    r.u64()?;
                    Ok(())
                })();
                if let Err(e) = ok {
                    debug!(error = %e, "server: malformed auth-none authorizer");
                }
                ok.is_ok()
            }
            other => {
                debug!(protocol = other, "server: unsupported authorizer protocol");
                false
            }
        }
    }

    /// A non-final connect reply; the server keeps the transport and waits for the next
    /// connect. `reply.features` is `(theirs & supported) | required` (Ceph).
    fn reply(
        &mut self,
        c: &ConnectRepr,
        tag: Tag,
        global_seq: u32,
        connect_seq: u32,
    ) -> AcceptOutcome {
        let r = ConnectReplyRepr {
            tag,
            features: (c.features & self.policy.features_supported) | self.policy.features_required,
            global_seq,
            connect_seq,
            protocol_version: self.cfg.proto_version(c.host_type, false),
            authorizer_len: 0,
            flags: 0,
        };
        debug!(?tag, global_seq, connect_seq, "server: reply");
        if matches!(tag, Tag::BadProtoVer | Tag::Features | Tag::BadAuthorizer) {
            debug!(peer = %self.peer_label(), ?tag, "refused a connect");
            self.events.push_back(Event::Rejected(tag));
        }
        self.tx.put_small(&r.emit());
        self.state = State::ServerConnect;
        self.rx_need = ConnectRepr::LEN;
        AcceptOutcome::Replied(tag)
    }

    /// Ceph's `open()`: the session is (re)opened on this connection.
    fn open(&mut self, now: Instant, c: &ConnectRepr) {
        // The peer's u32 counter: u32::MAX wraps to 0 as in Ceph (it used to overflow).
        self.session.connect_seq = c.connect_seq.wrapping_add(1);
        self.session.peer_global_seq = c.global_seq;
        let seq_exchange =
            features::has(c.features, features::RECONNECT_SEQ) && !self.is_reset_from_peer;
        if !seq_exchange {
            self.session.discard_requeued_up_to(0);
            self.is_reset_from_peer = false;
            self.session.in_seq = 0;
        }
        let r = ConnectReplyRepr {
            tag: if seq_exchange { Tag::Seq } else { Tag::Ready },
            features: self.policy.features_supported,
            global_seq: self.cfg.global_seq.next(),
            connect_seq: self.session.connect_seq,
            protocol_version: self.cfg.proto_version(c.host_type, false),
            authorizer_len: 0,
            flags: if self.policy.lossy {
                crate::wire::connect::FLAG_LOSSY
            } else {
                0
            },
        };
        self.set_features(self.policy.features_supported & c.features);
        self.tx.put_small(&r.emit());
        if seq_exchange {
            self.tx.put_small(&self.session.in_seq.to_le_bytes());
        }
        self.replacing = false;
        self.session.once_ready = true;
        info!(peer = %self.peer_label(), cseq = self.session.connect_seq, tag = ?r.tag, lossy = self.policy.lossy, "accepted");
        self.events.push_back(Event::Accepted);
        if seq_exchange {
            self.state = State::ServerSeq;
            self.rx_need = 8;
        } else {
            self.ready(now);
        }
    }

    /// Ceph's lossless `replace()`: this existing session adopts `new`'s transport, answers
    /// RETRY_GLOBAL on it, and opens when the client retries. `new` is closed silently.
    fn adopt(&mut self, now: Instant, new: &mut Self, c: &ConnectRepr, hard_reset: bool) {
        self.session.requeue_sent();
        self.tx.clear();
        self.pending_throttle = None;
        // The transport's connects so far come with it.
        self.connects = new.connects;
        self.replacing = true;
        self.is_reset_from_peer |= hard_reset;
        self.waiting = false;
        self.backoff = std::time::Duration::ZERO;
        self.peer_addr = new.peer_addr.or(self.peer_addr);
        self.socket_peer = new.socket_peer;
        self.peer_type = new.peer_type.or(self.peer_type);
        // A session still dialing stops: the adopted transport is its transport now. A Dial
        // the driver has not acted on yet would open a socket that replaces this one.
        self.events.retain(|e| !matches!(e, Event::Dial));
        self.timers.stop_all();
        self.timers
            .set(Timer::Ready, now + self.cfg.options.ready_timeout);
        let pgs = self.session.peer_global_seq;
        self.reply(c, Tag::RetryGlobal, pgs, 0);
        new.stop();
        info!(peer = %self.peer_label(), "existing session adopts the new transport");
    }

    fn read_stream(&mut self, now: Instant, rx: &mut BytesMut) -> Result<Step, Stop> {
        let Some(p) = frame::peek(rx, &self.frame).map_err(fault)? else {
            return self.need(rx.len() + 1);
        };
        match p {
            Peek::Msg { header, frame_len } => {
                if self.pending_throttle.is_none() {
                    match self.policy.throttles.try_take(header.payload_len()) {
                        Some(guard) => {
                            if rx.len() < frame_len {
                                if let Some(w) = self.cfg.options.body_timeout {
                                    self.timers.set(Timer::Body, now + w);
                                }
                            }
                            self.pending_throttle = Some(HeldBudget {
                                guard,
                                frame_len,
                                window_had: rx.len(),
                            });
                        }
                        None => {
                            self.stats.throttle_waits += 1;
                            self.timers.set(Timer::Throttle, now + THROTTLE_RETRY);
                            return Ok(Step::Blocked);
                        }
                    }
                }
                if rx.len() < frame_len {
                    return self.need(frame_len);
                }
                let bytes = rx.split_to(frame_len).freeze();
                let (msg, _footer) =
                    frame::decode_msg(bytes, &header, &self.frame).map_err(fault)?;
                let throttle = self.pending_throttle.take().map(|h| h.guard);
                self.deliver(msg, throttle);
            }
            Peek::Ack(seq) => {
                rx.advance(p.frame_len());
                self.session.handle_ack(seq);
            }
            Peek::Keepalive => {
                rx.advance(p.frame_len());
                self.last_keepalive = Some(now);
            }
            Peek::Keepalive2(stamp) => {
                rx.advance(p.frame_len());
                self.last_keepalive = Some(now);
                self.tx.put_small(&frame::encode_keepalive2(stamp, true));
            }
            Peek::Keepalive2Ack(stamp) => {
                rx.advance(p.frame_len());
                let sent_at = stamp.to_instant();
                self.last_keepalive_ack = Some(sent_at);
                self.events.push_back(Event::KeepaliveAck { sent_at });
            }
            Peek::Close => {
                rx.advance(p.frame_len());
                info!(peer = %self.peer_label(), "peer sent CLOSE");
                self.stop();
                return Err(Stop::Closed(Fault::PeerClosed));
            }
        }
        self.rx_need = 1;
        Ok(Step::Progress)
    }

    fn deliver(&mut self, msg: Message, throttle: Option<ThrottleGuard>) {
        let seq = msg.header.seq;
        let in_seq = self.session.in_seq;
        if seq <= in_seq {
            debug!(seq, in_seq, ty = msg.header.ty.0, "dropping old message");
            self.stats.dropped_old += 1;
            return;
        }
        if seq - in_seq > 1 {
            if in_seq == 0 {
                // A peer whose session was reset starts from a random sequence number
                // (Ceph's randomize_out_seq, with MSG_AUTH): expected, not a gap.
                debug!(
                    seq,
                    "first message of the session starts at a random sequence"
                );
            } else {
                warn!(seq, in_seq, "missed message? sequence skipped ahead");
            }
        }
        self.session.in_seq = seq;
        if !self.policy.lossy {
            self.session.ack_pending = true;
        }
        self.stats.msgs_in += 1;
        self.stats.bytes_in += msg.payload_len() as u64;
        self.events.push_back(Event::Message(Received {
            msg,
            throttle,
            features: self.features,
        }));
    }

    // ---- internals: state changes ----

    fn set_features(&mut self, f: u64) {
        self.features = f;
        self.frame.footer = FooterKind::for_features(f);
    }

    /// Notes activity. The idle timer is not moved on every byte (that would reschedule
    /// the driver's timer on every message); it fires at the old deadline and re-arms
    /// itself from the last activity if the session was not really idle (Ceph's tick).
    fn touch(&mut self, now: Instant) {
        self.last_active = now;
        if self.timers.get(Timer::Idle).is_none() {
            self.timers
                .set(Timer::Idle, now + self.cfg.options.idle_timeout);
        }
    }

    fn ready(&mut self, now: Instant) {
        self.timers.stop(Timer::Ready);
        self.touch(now);
        if let Some(i) = self.cfg.options.keepalive_interval {
            self.timers.set(Timer::Keepalive, now + i);
        }
        self.state = State::Open;
        self.rx_need = 1;
        self.stats.sessions += 1;
    }

    fn start_connect(&mut self, now: Instant) {
        self.global_seq = self.cfg.global_seq.next();
        self.state = State::Dialing;
        self.tx.clear();
        self.rx_need = 0;
        self.timers.stop(Timer::Backoff);
        self.timers
            .set(Timer::Ready, now + self.cfg.options.ready_timeout);
        self.events.push_back(Event::Dial);
    }

    /// Ceph's `stop()`: everything dropped, no event.
    fn stop(&mut self) {
        if self.is_closed() {
            return;
        }
        self.stats.discarded += self.session.discard_all() as u64;
        self.tx.clear();
        self.pending_throttle = None;
        self.timers.stop_all();
        self.state = State::Closed;
        self.rx_need = 0;
    }

    /// Ceph's `session_reset()`: the peer (or we) lost the session.
    fn session_reset(&mut self) {
        self.stats.discarded += self.session.discard_all() as u64;
        self.events.push_back(Event::RemoteReset);
        self.session.out_seq = if features::has(self.features, features::MSG_AUTH) {
            self.rng.below_or_eq(SEQ_MASK)
        } else {
            0
        };
        self.session.in_seq = 0;
        self.session.connect_seq = 0;
        self.session.ack_pending = false;
        self.session.once_ready = false;
    }

    /// Ceph's `ProtocolV1::fault()`.
    fn fault(&mut self, now: Instant, cause: Fault) {
        if self.is_closed() {
            return;
        }
        self.stats.faults += 1;
        match cause {
            // A stranger that never got through the handshake (garbage, a scanner, a
            // flood, a slowloris): perf dump counts it by cause; a line each would let
            // anyone fill the log (a hostile peer wrote ~170 bytes per connection).
            _ if self.state.is_half_accepted() && !self.session.once_ready => {
                debug!(peer = %self.peer_label(), %cause, state = ?self.phase(), "fault in the handshake")
            }
            // The peer broke the protocol or cannot talk to us: worth an operator's eye.
            Fault::Decode(_) | Fault::Misbehaved(_) | Fault::Incompatible(_) => {
                warn!(peer = %self.peer_label(), %cause, state = ?self.phase(), "fault")
            }
            // Sockets come and go; the session handles it.
            _ => info!(peer = %self.peer_label(), %cause, state = ?self.phase(), "fault"),
        }
        if self.policy.lossy && !self.state.is_before_server_hello() {
            self.stop();
            self.events.push_back(Event::Reset);
            return;
        }
        self.is_reset_from_peer = false;
        self.session.requeue_sent();
        self.tx.clear();
        self.pending_throttle = None;
        self.rx_need = 0;
        if !self.session.once_ready
            && !self.session.is_queued()
            && self.state.is_half_accepted()
            && !self.replacing
        {
            self.stop();
            self.events.push_back(Event::Reset);
            return;
        }
        self.replacing = false;
        self.timers.stop(Timer::Idle);
        self.timers.stop(Timer::Keepalive);
        self.timers.stop(Timer::Throttle);
        let waiting = std::mem::take(&mut self.waiting);
        if self.policy.standby
            && !self.session.is_queued()
            && !self.session.keepalive_pending
            && !waiting
        {
            self.enter_standby();
            return;
        }
        if self.state.is_client_handshake() || waiting {
            let opts = &self.cfg.options;
            self.backoff = if waiting {
                opts.max_backoff
            } else if self.backoff.is_zero() {
                opts.initial_backoff
            } else {
                (self.backoff * 2).min(opts.max_backoff)
            };
            self.global_seq = self.cfg.global_seq.next();
            self.state = State::Backoff;
            self.timers.stop(Timer::Ready);
            self.timers.set(Timer::Backoff, now + self.backoff);
            debug!(backoff = ?self.backoff, "backing off before redial");
        } else {
            self.backoff = std::time::Duration::ZERO;
            if self.policy.server {
                self.enter_standby();
            } else {
                self.session.connect_seq = self.session.connect_seq.wrapping_add(1);
                self.start_connect(now);
            }
        }
    }

    fn enter_standby(&mut self) {
        self.state = State::Standby;
        self.timers.stop_all();
        debug!(peer = %self.peer_label(), "standby");
    }
}

/// Displays a peer address, or `?` before it is known.
struct PeerLabel(Option<EntityAddr>);

impl std::fmt::Display for PeerLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("?"),
        }
    }
}

/// Whether two addresses name the same peer (Ceph compares the whole entity_addr_t; the
/// legacy decode reports type LEGACY for both sides).
fn same_peer(a: &EntityAddr, b: &EntityAddr) -> bool {
    a.nonce == b.nonce && a.addr == b.addr
}

fn take_u64(rx: &mut BytesMut) -> Option<u64> {
    if rx.len() < 8 {
        return None;
    }
    Some(rx.get_u64_le())
}

fn fault(e: DecodeError) -> Stop {
    Stop::Fault(Fault::Decode(e))
}

/// How one read step ended.
enum Step {
    Progress,
    NeedMore,
    Blocked,
    Paused,
}

/// Why reading stopped with an error.
enum Stop {
    /// Run the fault logic.
    Fault(Fault),
    /// The connection is already stopped (peer CLOSE); report without reacting.
    Closed(Fault),
}

#[cfg(test)]
mod tests {
    //! `connect_seq` arithmetic on values the peer chose (found by `msgr/fuzz`'s
    //! `server_handshake` target: "attempt to add with overflow" in `open`). Ceph's counter is
    //! an unsigned 32-bit integer that wraps; ours must wrap too, not panic. And what counts
    //! as activity for the idle timer (found by the dpdk link-fault tests).
    use super::*;
    use crate::entity::EntityName;
    use crate::features::PACIFIC_ALL;
    use crate::wire::banner::BANNER;
    use crate::wire::ConnectReply;

    const T: Instant = Instant::from_nanos(1);

    fn drain(c: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = c.poll_transmit(T) {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn server_open_wraps_a_peer_connect_seq_of_u32_max() {
        let me = EntityName::new(EntityType::MON, 0);
        let mut cfg = Config::new(me, "v1:127.0.0.1:6789/0".parse().unwrap());
        cfg.policies.default = Policy::stateless_server(0);
        let mut c = Connection::accept(Arc::new(cfg), T, "127.0.0.1:40000".parse().unwrap(), 3);
        let mut rx = BytesMut::from(&BANNER[..]);
        let client: EntityAddr = "v1:127.0.0.1:40000/5".parse().unwrap();
        rx.extend_from_slice(&client.to_legacy());
        let connect = ConnectRepr {
            features: PACIFIC_ALL,
            host_type: EntityType::CLIENT,
            global_seq: 1,
            connect_seq: u32::MAX,
            protocol_version: 15,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        };
        rx.extend_from_slice(&connect.emit());
        c.handle_input(T, &mut rx).unwrap();
        let out = drain(&mut c);
        let reply = ConnectReply::new_checked(&out[SERVER_HELLO_LEN..]).unwrap();
        let reply = ConnectReplyRepr::parse(&reply).unwrap();
        assert_eq!(reply.tag, Tag::Seq);
        assert_eq!(reply.connect_seq, 0, "u32::MAX + 1 wraps");
        assert_eq!(c.connect_seq(), 0);
    }

    /// A peer that keeps sending connects on one socket (each refused here, as a storm of
    /// stale ones is answered with retries) is given up after `max_connect_attempts`, with
    /// a fault that names the cause; up to the bound each connect gets its reply.
    #[test]
    fn server_gives_up_a_transport_after_too_many_connects() {
        let me = EntityName::new(EntityType::OSD, 0);
        let mut cfg = Config::new(me, "v1:127.0.0.1:6800/1".parse().unwrap());
        cfg.policies.default = Policy::stateless_registered_server(0);
        cfg.options.max_connect_attempts = 4;
        let mut c = Connection::accept(Arc::new(cfg), T, "127.0.0.1:40000".parse().unwrap(), 3);
        let mut rx = BytesMut::from(&BANNER[..]);
        let client: EntityAddr = "v1:127.0.0.1:40000/5".parse().unwrap();
        rx.extend_from_slice(&client.to_legacy());
        c.handle_input(T, &mut rx).unwrap();
        let _hello = drain(&mut c);
        let connect = ConnectRepr {
            features: PACIFIC_ALL,
            host_type: EntityType::CLIENT,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 99, // refused: BADPROTOVER, the socket kept for a retry
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        };
        for i in 0..4 {
            rx.extend_from_slice(&connect.emit());
            c.handle_input(T, &mut rx).unwrap();
            let out = drain(&mut c);
            let reply = ConnectReplyRepr::parse(&ConnectReply::new_checked(&out[..]).unwrap());
            assert_eq!(reply.unwrap().tag, Tag::BadProtoVer, "connect {i}");
        }
        rx.extend_from_slice(&connect.emit());
        assert_eq!(
            c.handle_input(T, &mut rx),
            Err(Fault::Misbehaved(PeerMisbehaved::TooManyConnects {
                attempts: 5
            }))
        );
        assert!(c.is_closed(), "a half-accepted connection is dropped");
    }

    /// A lossless client that has read the server hello, with replies to feed.
    fn client() -> (Connection, BytesMut) {
        client_with(|_| {})
    }

    /// [`client`] with options of its own.
    fn client_with(opts: impl FnOnce(&mut crate::proto::Options)) -> (Connection, BytesMut) {
        let me = EntityName::new(EntityType::CLIENT, -1);
        let mut cfg = Config::new(me, EntityAddr::none());
        cfg.policies.default = Policy::lossless_client(0);
        opts(&mut cfg.options);
        let server: EntityAddr = "v1:127.0.0.1:6789/0".parse().unwrap();
        let mut c = Connection::connect(Arc::new(cfg), T, server, EntityType::MON, 7);
        assert!(matches!(c.poll_event(), Some(Event::Dial)));
        c.handle_connected(T);
        let hello = ServerHello {
            server_addr: server,
            client_addr: "v1:127.0.0.1:40000/0".parse().unwrap(),
        };
        (c, BytesMut::from(&hello.emit()[..]))
    }

    fn reply(tag: Tag, connect_seq: u32) -> [u8; ConnectReplyRepr::LEN] {
        ConnectReplyRepr {
            tag,
            features: PACIFIC_ALL,
            global_seq: 1,
            connect_seq,
            protocol_version: 15,
            authorizer_len: 0,
            flags: 0,
        }
        .emit()
    }

    #[test]
    fn client_ready_wraps_connect_seq_after_retry_session_to_u32_max() {
        let (mut c, mut rx) = client();
        rx.extend_from_slice(&reply(Tag::RetrySession, u32::MAX));
        rx.extend_from_slice(&reply(Tag::Ready, 0));
        c.handle_input(T, &mut rx).unwrap();
        assert!(c.is_open());
        assert_eq!(c.connect_seq(), 0);
    }

    #[test]
    fn lossless_client_redial_wraps_connect_seq() {
        let (mut c, mut rx) = client();
        rx.extend_from_slice(&reply(Tag::RetrySession, u32::MAX - 1));
        rx.extend_from_slice(&reply(Tag::Ready, u32::MAX));
        c.handle_input(T, &mut rx).unwrap();
        assert!(c.is_open());
        assert_eq!(c.connect_seq(), u32::MAX);
        // An open lossless client redials at once after a fault, with connect_seq + 1.
        c.handle_transport_error(T, TransportError::Eof);
        assert_eq!(c.connect_seq(), 0);
    }

    /// Regression (connection_race_posix, about 1 run in 100): a session created by
    /// `connect_to` is visible to accepts before its driver has acted on its Dial. When
    /// the peer's connect arrives first and the session adopts that socket (a connection
    /// race the peer wins), the stale Dial must go: a driver acting on it opened a new
    /// socket that replaced the adopted one, the peer saw it close, and the session stayed
    /// "replacing" — every retry got RETRY_GLOBAL until the ready timeout reset it, losing
    /// what was queued.
    #[test]
    fn adopting_a_socket_cancels_a_dial_not_yet_acted_on() {
        let me = EntityName::new(EntityType::OSD, 1);
        let mut cfg = Config::new(me, "v1:127.0.0.1:6801/200".parse().unwrap());
        cfg.policies.default = Policy::lossless_peer_reuse(0);
        let cfg = Arc::new(cfg);
        // The peer's address sorts below ours (nonce 1 < 200): its incoming connect wins.
        let peer: EntityAddr = "v1:127.0.0.1:6800/1".parse().unwrap();
        let mut out = Connection::connect(Arc::clone(&cfg), T, peer, EntityType::OSD, 3);
        let mut new = Connection::accept(cfg, T, "127.0.0.1:40000".parse().unwrap(), 4);
        let mut rx = BytesMut::from(&BANNER[..]);
        rx.extend_from_slice(&peer.to_legacy());
        let connect = ConnectRepr {
            features: PACIFIC_ALL,
            host_type: EntityType::OSD,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 10,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: 0,
        };
        rx.extend_from_slice(&connect.emit());
        new.handle_input(T, &mut rx).unwrap();
        assert!(matches!(new.poll_event(), Some(Event::AcceptRequest)));
        assert_eq!(
            new.resolve_accept(T, Some(&mut out)),
            AcceptOutcome::Adopted
        );
        while let Some(ev) = out.poll_event() {
            assert!(!matches!(ev, Event::Dial), "a dial after the adopt");
        }
    }

    /// Regression, found by the dpdk transport's link-fault tests (a cut link never timed
    /// the sessions out): drivers offer the bytes they hold again on every pass over a
    /// connection (the idle timer's own firing makes one), and `handle_input` counted any
    /// non-empty buffer as activity — so a session whose peer fell silent in the middle of
    /// a frame never idled out. Only new bytes are activity.
    #[test]
    fn a_partial_frame_offered_again_is_not_activity() {
        use std::time::Duration;
        let idle = Duration::from_secs(10);
        let s = Duration::from_secs(1);
        let open = |rx: &mut BytesMut, c: &mut Connection| {
            rx.extend_from_slice(&reply(Tag::Ready, 1));
            c.handle_input(T, rx).unwrap();
            assert!(c.is_open());
            // The start of a message: its tag and a few bytes of its 53-byte header.
            rx.extend_from_slice(&[u8::from(Tag::Msg), 1, 0, 0, 0]);
            c.handle_input(T, rx).unwrap();
            assert!(!rx.is_empty(), "the partial frame stays in the buffer");
        };
        // Offered again every second, nothing new: the session times out on time.
        let (mut c, mut rx) = client_with(|o| o.idle_timeout = idle);
        open(&mut rx, &mut c);
        let mut now = T;
        let fault = loop {
            now = now + s;
            assert!(now < T + 3 * idle, "never timed out");
            assert!(c.handle_input(now, &mut rx).is_ok());
            if c.poll_timeout().is_some_and(|t| t <= now) {
                if let Err(f) = c.handle_timeout(now) {
                    break f;
                }
            }
        };
        assert_eq!(fault, Fault::TimedOut(Timeout::Idle));
        assert!(now <= T + idle + s, "timed out at {now:?}");
        // One more byte every second (still a partial header): that is traffic.
        let (mut c, mut rx) = client_with(|o| o.idle_timeout = idle);
        open(&mut rx, &mut c);
        let mut now = T;
        for _ in 0..30 {
            now = now + s;
            rx.extend_from_slice(&[0]);
            assert!(c.handle_input(now, &mut rx).is_ok());
            if c.poll_timeout().is_some_and(|t| t <= now) {
                assert_eq!(c.handle_timeout(now), Ok(()), "at {now:?}");
            }
        }
        assert!(c.is_open());
    }
}

//! A minimal blocking driver: one [`Connection`] over a `std::net::TcpStream`.
//!
//! For tools and tests that talk to one peer at a time (a monitor, a daemon under test),
//! as the client ([`BlockingConn::connect`]) or as the server of one accepted socket
//! ([`BlockingConn::accept`], which has no session registry: every connect is new).
//! It is the smallest honest driver of the sans-IO engine: it reads the clock once per
//! wakeup, writes every chunk `poll_transmit` yields, dials when asked, and sleeps in
//! `read` until the next deadline. The messenger's real transports (thread-per-connection
//! and event-driven, many connections) build on the same engine.
//!
//! Drivers are the only code allowed to read a clock (`clippy.toml` bans it elsewhere).
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tracing::debug;

use crate::entity::{EntityAddr, EntityType};
use crate::msg::{Message, MsgType};
use crate::proto::{Config, Connection, Event, Fault, InputStatus, SendError, TransportError};
use crate::time::Instant;

/// Why a blocking call returned without what it waited for.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriverError {
    /// The deadline passed.
    Timeout,
    /// The session is gone (lossy reset, peer reset, mark_down).
    Closed(&'static str),
    /// The last fault, when the engine gave up (e.g. the peer refused our features).
    Fault(Fault),
    /// The peer address has no socket address.
    BadAddress,
    /// A send was refused.
    Send(SendError),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Closed(why) => write!(f, "connection closed: {why}"),
            Self::Fault(x) => write!(f, "{x}"),
            Self::BadAddress => f.write_str("peer address has no IP:port"),
            Self::Send(e) => write!(f, "send refused: {e}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// One client connection driven synchronously.
pub struct BlockingConn {
    conn: Connection,
    sock: Option<TcpStream>,
    rx: BytesMut,
    epoch: std::time::Instant,
    peer: SocketAddr,
    /// Application events not yet returned by [`BlockingConn::next_event`].
    pending: VecDeque<Event>,
    last_fault: Option<Fault>,
    /// Longest wait for a TCP connect.
    pub connect_timeout: Duration,
    /// Bytes read from and written to sockets (for reports).
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

impl BlockingConn {
    fn new(
        conn: Connection,
        sock: Option<TcpStream>,
        epoch: std::time::Instant,
        peer: SocketAddr,
    ) -> Self {
        Self {
            conn,
            sock,
            rx: BytesMut::with_capacity(64 * 1024),
            epoch,
            peer,
            pending: VecDeque::new(),
            last_fault: None,
            connect_timeout: Duration::from_secs(5),
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// Starts a session with `peer` (of type `peer_type`) and waits until it is open.
    pub fn connect(
        cfg: Config,
        peer: EntityAddr,
        peer_type: EntityType,
        timeout: Duration,
    ) -> Result<Self, DriverError> {
        let sock_addr = peer.addr.ok_or(DriverError::BadAddress)?;
        let epoch = std::time::Instant::now();
        let seed = u64::from(cfg.addr.nonce) ^ epoch.elapsed().as_nanos() as u64 ^ 0x6d73_6772;
        let conn = Connection::connect(Arc::new(cfg), Instant::ZERO, peer, peer_type, seed);
        let mut me = Self::new(conn, None, epoch, sock_addr);
        let deadline = me.now() + timeout;
        loop {
            if let Err(e) = me.turn(deadline) {
                // A timeout after refused or failed dials is better reported as their cause.
                return Err(match (e, me.last_fault) {
                    (DriverError::Timeout, Some(f)) => DriverError::Fault(f),
                    (e, _) => e,
                });
            }
            while let Some(ev) = me.pending.pop_front() {
                match ev {
                    Event::Connected => return Ok(me),
                    Event::Reset => return Err(me.closed("reset during handshake")),
                    other => debug!(?other, "event before connect"),
                }
            }
        }
    }

    /// Serves one accepted socket and waits until its session is open. There is no
    /// registry of other sessions, so the accept lookup always finds none.
    pub fn accept(cfg: Config, sock: TcpStream, timeout: Duration) -> Result<Self, DriverError> {
        let epoch = std::time::Instant::now();
        let peer = sock.peer_addr().map_err(|_| DriverError::BadAddress)?;
        let _ = sock.set_nodelay(true);
        let seed = u64::from(cfg.addr.nonce) ^ epoch.elapsed().as_nanos() as u64 ^ 0x7372_7672;
        let conn = Connection::accept(Arc::new(cfg), Instant::ZERO, peer, seed);
        let mut me = Self::new(conn, Some(sock), epoch, peer);
        let deadline = me.now() + timeout;
        loop {
            me.turn(deadline)?;
            while let Some(ev) = me.pending.pop_front() {
                match ev {
                    Event::Accepted => return Ok(me),
                    Event::Reset => return Err(me.closed("reset during accept")),
                    other => debug!(?other, "event before accept"),
                }
            }
        }
    }

    /// The engine (getters: features, seqs, stats...).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The local socket address, while connected.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sock.as_ref().and_then(|s| s.local_addr().ok())
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    fn closed(&self, why: &'static str) -> DriverError {
        match self.last_fault {
            Some(f) => DriverError::Fault(f),
            None => DriverError::Closed(why),
        }
    }

    /// Queues a message (sent on the next turn).
    pub fn send(&mut self, m: Message) -> Result<(), DriverError> {
        let now = self.now();
        self.conn.send_message(now, m).map_err(DriverError::Send)?;
        self.flush()
    }

    /// Sends a KEEPALIVE2 stamped with our clock.
    pub fn keepalive(&mut self) -> Result<(), DriverError> {
        self.conn.send_keepalive();
        self.flush()
    }

    /// Waits for the next application event (message, keepalive ack, reset...).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Event, DriverError> {
        let deadline = self.now() + timeout;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            self.turn(deadline)?;
        }
    }

    /// Waits for the next message of type `ty`, dropping other messages (logged).
    pub fn recv_type(&mut self, ty: MsgType, timeout: Duration) -> Result<Message, DriverError> {
        let deadline = self.now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(self.now());
            if left.is_zero() {
                return Err(DriverError::Timeout);
            }
            match self.next_event(left)? {
                Event::Message(r) if r.msg.ty() == ty => return Ok(r.msg),
                Event::Message(r) => debug!(ty = r.msg.ty().0, "skipping message"),
                Event::Reset => return Err(self.closed("session reset")),
                Event::RemoteReset => return Err(DriverError::Closed("peer reset the session")),
                other => debug!(?other, "skipping event"),
            }
        }
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.conn.mark_down();
        self.sock = None;
    }

    fn flush(&mut self) -> Result<(), DriverError> {
        let now = self.now();
        while let Some(chunk) = self.conn.poll_transmit(now) {
            let Some(sock) = self.sock.as_mut() else {
                break;
            };
            if let Err(e) = sock.write_all(&chunk) {
                debug!(error = %e, "write failed");
                self.sock = None;
                self.rx.clear();
                self.conn.handle_transport_error(now, TransportError::Io);
                self.last_fault = Some(Fault::Transport(TransportError::Io));
                break;
            }
            self.bytes_written += chunk.len() as u64;
        }
        Ok(())
    }

    /// One wakeup: write, handle driver events, wait for input or the next timer.
    fn turn(&mut self, deadline: Instant) -> Result<(), DriverError> {
        self.flush()?;
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                Event::Dial => self.dial(),
                Event::AcceptRequest => {
                    let now = self.now();
                    let _ = self.conn.resolve_accept(now, None);
                    // Bytes may already wait behind the connect.
                    if let Err(f) = self.conn.handle_input(now, &mut self.rx) {
                        self.last_fault = Some(f);
                        self.sock = None;
                        self.rx.clear();
                    }
                }
                other => self.pending.push_back(other),
            }
            self.flush()?;
        }
        if !self.pending.is_empty() {
            return Ok(());
        }
        if self.conn.is_closed() {
            return Err(self.closed("closed"));
        }
        let now = self.now();
        if now >= deadline {
            return Err(DriverError::Timeout);
        }
        let wake = self
            .conn
            .poll_timeout()
            .map_or(deadline, |t| t.min(deadline));
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        match self.sock.as_mut() {
            Some(sock) => {
                let _ = sock.set_read_timeout(Some(wait));
                let want = self.conn.rx_hint().clamp(4096, 1 << 20);
                let at = self.rx.len();
                self.rx.resize(at + want, 0);
                let r = sock.read(&mut self.rx[at..]);
                let now = self.now();
                match r {
                    Ok(0) => {
                        self.rx.truncate(at);
                        self.lost(now, TransportError::Eof);
                    }
                    Ok(n) => {
                        self.rx.truncate(at + n);
                        self.bytes_read += n as u64;
                        loop {
                            match self.conn.handle_input(now, &mut self.rx) {
                                Ok(InputStatus::Budget) => continue,
                                Ok(_) => break,
                                Err(f) => {
                                    self.last_fault = Some(f);
                                    self.sock = None;
                                    self.rx.clear();
                                    break;
                                }
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        self.rx.truncate(at);
                    }
                    Err(e) => {
                        self.rx.truncate(at);
                        debug!(error = %e, "read failed");
                        self.lost(now, TransportError::Io);
                    }
                }
            }
            None => std::thread::sleep(wait),
        }
        let now = self.now();
        if let Err(f) = self.conn.handle_timeout(now) {
            self.last_fault = Some(f);
            self.sock = None;
            self.rx.clear();
        }
        // A throttled connection resumes on its timer.
        if self.sock.is_some() && !self.rx.is_empty() {
            if let Err(f) = self.conn.handle_input(now, &mut self.rx) {
                self.last_fault = Some(f);
                self.sock = None;
                self.rx.clear();
            }
        }
        Ok(())
    }

    fn lost(&mut self, now: Instant, e: TransportError) {
        self.sock = None;
        self.rx.clear();
        self.last_fault = Some(Fault::Transport(e));
        self.conn.handle_transport_error(now, e);
    }

    fn dial(&mut self) {
        self.sock = None;
        self.rx.clear();
        let now = self.now();
        match TcpStream::connect_timeout(&self.peer, self.connect_timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                self.sock = Some(s);
                self.conn.handle_connected(now);
            }
            Err(e) => {
                let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                    TransportError::Refused
                } else {
                    TransportError::ConnectFailed
                };
                debug!(error = %e, "dial failed");
                self.last_fault = Some(Fault::Transport(kind));
                self.conn.handle_transport_error(now, kind);
            }
        }
    }
}

//! Connection-level errors, typed by who is at fault (STYLE.md R5).
//!
//! | type | meaning |
//! |---|---|
//! | [`DecodeError`] | the peer's bytes do not parse (in `crate::error`) |
//! | [`PeerMisbehaved`] | well-formed, but illegal in this state |
//! | [`PeerIncompatible`] | the peer cannot speak with us (features, protocol, auth) |
//! | [`Fault`] | why a transport was given up; the engine has already reacted |
//! | [`SendError`] | `send_message` refused (the message is handed back) |
//!
//! The engine reacts to every fault the same way Ceph's `ProtocolV1::fault` does, by the
//! session's policy and state (reset, standby, backoff and redial); the cause only feeds
//! logs and counters ([`Fault::label`]).

use std::fmt;

use crate::entity::EntityAddr;
use crate::error::DecodeError;
use crate::msg::Message;
use crate::wire::Tag;

/// Well-formed input that is illegal now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The server's banner names another address than the one we dialed.
    AddressMismatch {
        /// The address we dialed.
        dialed: EntityAddr,
        /// The address the server claims.
        claimed: EntityAddr,
    },
    /// RETRY_SESSION did not raise our connect_seq (Ceph asserts on this).
    RetrySessionNotIncreasing {
        /// Ours.
        ours: u32,
        /// The reply's.
        theirs: u32,
    },
    /// READY/SEQ carried a connect_seq other than ours + 1 (Ceph asserts on this).
    ConnectSeqMismatch {
        /// What we expected.
        expected: u32,
        /// The reply's.
        theirs: u32,
    },
    /// A connect-reply tag that has no meaning there.
    UnexpectedReplyTag(Tag),
    /// The client sent more connects on one transport than `max_connect_attempts`
    /// allows (a loop on stale sequence numbers, or a storm).
    TooManyConnects {
        /// Connects received on the transport, this one included.
        attempts: u32,
    },
}

/// The peer cannot talk to us with our settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PeerIncompatible {
    /// Features one side requires and the other lacks (`missing` is the mask).
    MissingFeatures {
        /// The required bits that are missing.
        missing: u64,
    },
    /// The server refused our protocol version.
    ProtocolVersion {
        /// Ours.
        ours: u32,
        /// The server's.
        theirs: u32,
    },
    /// The server rejected our authorizer.
    AuthorizerRejected,
    /// The server wants a cephx challenge round, which this messenger does not speak.
    ChallengeUnsupported,
}

/// Which timer fired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timeout {
    /// The handshake did not finish within `ready_timeout`.
    Ready,
    /// The open session saw no traffic for `idle_timeout`.
    Idle,
    /// A message holding throttle budget stopped arriving (`body_timeout`).
    Body,
}

/// A transport failure the driver reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransportError {
    /// The peer refused the connection (ECONNREFUSED).
    Refused,
    /// The connection could not be established for another reason.
    ConnectFailed,
    /// The peer closed the stream (EOF).
    Eof,
    /// A read or write failed (reset, broken pipe, injected failure...).
    Io,
}

/// Why the engine gave up its transport. By the time the caller sees it, the engine has
/// already moved to its next state (reset, standby, backoff, redial); the driver only has
/// to close the transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Fault {
    /// Malformed bytes (bad banner, bad CRC, unknown tag, oversized length...).
    Decode(DecodeError),
    /// Illegal but well-formed input.
    Misbehaved(PeerMisbehaved),
    /// Incompatible peer.
    Incompatible(PeerIncompatible),
    /// The server answered WAIT: it is connecting to us and wins the race.
    Wait,
    /// A timer fired.
    TimedOut(Timeout),
    /// The transport failed.
    Transport(TransportError),
    /// The peer sent CLOSE.
    PeerClosed,
}

impl Fault {
    /// A short stable label for counters ("faults by cause").
    pub fn label(&self) -> &'static str {
        match self {
            Self::Decode(DecodeError::BadCrc { .. }) => "bad_crc",
            Self::Decode(DecodeError::BadBanner) => "bad_banner",
            Self::Decode(DecodeError::UnknownTag(_)) => "unknown_tag",
            Self::Decode(DecodeError::TooLarge { .. }) => "too_large",
            Self::Decode(_) => "decode",
            Self::Misbehaved(_) => "misbehaved",
            Self::Incompatible(_) => "incompatible",
            Self::Wait => "wait",
            Self::TimedOut(Timeout::Ready) => "ready_timeout",
            Self::TimedOut(Timeout::Idle) => "idle_timeout",
            Self::TimedOut(Timeout::Body) => "body_timeout",
            Self::Transport(TransportError::Refused) => "refused",
            Self::Transport(TransportError::ConnectFailed) => "connect_failed",
            Self::Transport(TransportError::Eof) => "eof",
            Self::Transport(TransportError::Io) => "io",
            Self::PeerClosed => "peer_closed",
        }
    }
}

impl From<DecodeError> for Fault {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(e) => write!(f, "malformed input: {e}"),
            Self::Misbehaved(m) => write!(f, "peer misbehaved: {m:?}"),
            Self::Incompatible(i) => write!(f, "peer incompatible: {i:?}"),
            Self::Wait => f.write_str("server says WAIT (connection race)"),
            Self::TimedOut(Timeout::Ready) => f.write_str("handshake timed out"),
            Self::TimedOut(Timeout::Idle) => f.write_str("session idle timeout"),
            Self::TimedOut(Timeout::Body) => {
                f.write_str("message body stalled while holding throttle budget")
            }
            Self::Transport(t) => write!(f, "transport: {t:?}"),
            Self::PeerClosed => f.write_str("peer sent CLOSE"),
        }
    }
}

impl std::error::Error for Fault {}

/// `send_message` refused; the message comes back to the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed (marked down, or a lossy session was reset).
    Closed(Box<Message>),
    /// `max_queued_messages` are already waiting.
    QueueFull(Box<Message>),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("connection closed"),
            Self::QueueFull(_) => f.write_str("send queue full"),
        }
    }
}

impl std::error::Error for SendError {}

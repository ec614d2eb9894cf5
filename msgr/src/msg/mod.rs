//! Messages: the envelope every message shares, and the typed messages we speak.
//!
//! A [`Message`] is what the connection engine moves: a [`MessageHeader`] (type, priority,
//! versions, tid, source) plus three payload segments, `front`, `middle` and `data`, each a
//! [`Bytes`] that on receive points straight into the buffer the bytes arrived in.
//!
//! Typed messages implement [`TypedMessage`]: they encode their payload with the peer's
//! features and decode it back, checking the version rules Ceph's `decode_message` applies.
//! Any type we do not know stays a raw [`Message`] and round-trips unchanged.

use bytes::Bytes;

use crate::denc::{Reader, Writer};
use crate::entity::{EntityName, EntityType};
use crate::error::DecodeError;

/// `CEPH_MSG_*`: the message type code in the header.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MsgType(pub u16);

impl MsgType {
    /// `CEPH_MSG_SHUTDOWN`.
    pub const SHUTDOWN: Self = Self(1);
    /// `CEPH_MSG_PING` (MPing).
    pub const PING: Self = Self(2);
    /// `CEPH_MSG_MON_MAP` (MMonMap).
    pub const MON_MAP: Self = Self(4);
    /// `CEPH_MSG_MON_GET_MAP`.
    pub const MON_GET_MAP: Self = Self(5);
    /// `CEPH_MSG_MON_SUBSCRIBE` (MMonSubscribe).
    pub const MON_SUBSCRIBE: Self = Self(15);
    /// `CEPH_MSG_MON_SUBSCRIBE_ACK`.
    pub const MON_SUBSCRIBE_ACK: Self = Self(16);
    /// `CEPH_MSG_AUTH` (MAuth).
    pub const AUTH: Self = Self(17);
    /// `CEPH_MSG_AUTH_REPLY` (MAuthReply).
    pub const AUTH_REPLY: Self = Self(18);
    /// `CEPH_MSG_MON_GET_VERSION` (MMonGetVersion).
    pub const MON_GET_VERSION: Self = Self(19);
    /// `CEPH_MSG_MON_GET_VERSION_REPLY` (MMonGetVersionReply).
    pub const MON_GET_VERSION_REPLY: Self = Self(20);
    /// `CEPH_MSG_OSD_MAP`.
    pub const OSD_MAP: Self = Self(41);
    /// `CEPH_MSG_OSD_OP` (MOSDOp).
    pub const OSD_OP: Self = Self(42);
    /// `CEPH_MSG_OSD_OPREPLY` (MOSDOpReply).
    pub const OSD_OPREPLY: Self = Self(43);
    /// `MSG_MON_COMMAND`.
    pub const MON_COMMAND: Self = Self(50);
    /// `MSG_MON_COMMAND_ACK`.
    pub const MON_COMMAND_ACK: Self = Self(51);
    /// `MSG_CONFIG`.
    pub const CONFIG: Self = Self(62);
    /// `MSG_COMMAND` (MCommand).
    pub const COMMAND: Self = Self(97);
    /// `MSG_COMMAND_REPLY`.
    pub const COMMAND_REPLY: Self = Self(98);
}

/// `CEPH_MSG_PRIO_*`.
pub mod priority {
    /// Low priority (weighted queue).
    pub const LOW: u16 = 64;
    /// The messenger default unless the sender sets one.
    pub const DEFAULT: u16 = 127;
    /// High (ceph-mon's default).
    pub const HIGH: u16 = 196;
    /// Highest: requeued messages and control events.
    pub const HIGHEST: u16 = 255;
}

/// The logical header of a message: everything in `ceph_msg_header` except the segment
/// lengths (which come from the payload) and the CRC (computed on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MessageHeader {
    /// Per-connection sequence number; assigned by the engine when the message is written.
    pub seq: u64,
    /// Transaction id (echoed by replies such as MMonGetVersionReply).
    pub tid: u64,
    /// Message type.
    pub ty: MsgType,
    /// Dispatch priority; 0 means "the messenger's default".
    pub priority: u16,
    /// Payload encoding version.
    pub version: u16,
    /// Oldest decoder version able to read the payload.
    pub compat_version: u16,
    /// Sender's data page-offset hint.
    pub data_off: u16,
    /// Sender; the engine fills in its own name when sending.
    pub src: EntityName,
}

impl MessageHeader {
    /// A header for a new outgoing message of type `ty`.
    pub fn new(ty: MsgType, version: u16, compat_version: u16) -> Self {
        Self {
            seq: 0,
            tid: 0,
            ty,
            priority: 0,
            version,
            compat_version,
            data_off: 0,
            src: EntityName::new(EntityType::CLIENT, EntityName::NEW),
        }
    }
}

/// One message: header plus front, middle and data segments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The header.
    pub header: MessageHeader,
    /// Front segment (the encoded payload of most messages).
    pub front: Bytes,
    /// Middle segment (rarely used).
    pub middle: Bytes,
    /// Data segment (object data; page-aligned on receive in Ceph).
    pub data: Bytes,
}

impl Message {
    /// A message with the given header and segments.
    pub fn new(header: MessageHeader, front: Bytes, middle: Bytes, data: Bytes) -> Self {
        Self {
            header,
            front,
            middle,
            data,
        }
    }

    /// The message type.
    pub fn ty(&self) -> MsgType {
        self.header.ty
    }

    /// Total payload bytes (front + middle + data), what throttles count.
    pub fn payload_len(&self) -> usize {
        self.front.len() + self.middle.len() + self.data.len()
    }

    /// Sets the priority (builder style).
    pub fn with_priority(mut self, priority: u16) -> Self {
        self.header.priority = priority;
        self
    }

    /// Sets the transaction id (builder style).
    pub fn with_tid(mut self, tid: u64) -> Self {
        self.header.tid = tid;
        self
    }
}

/// The three payload segments a typed message encodes to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    /// Front segment.
    pub front: Bytes,
    /// Middle segment.
    pub middle: Bytes,
    /// Data segment.
    pub data: Bytes,
}

/// A message type with a Rust representation.
pub trait TypedMessage: Sized {
    /// The header type code.
    const TYPE: MsgType;
    /// The version this implementation encodes (`HEAD_VERSION`).
    const HEAD_VERSION: u16;
    /// The oldest decoder version that can read what we encode (`COMPAT_VERSION`).
    const COMPAT_VERSION: u16;

    /// Encodes the payload for a peer with `features`.
    fn encode_payload(&self, features: u64) -> Payload;

    /// Decodes the payload. `header.version` tells which encoding the sender used.
    fn decode_payload(header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError>;

    /// The message to send, encoded for a peer with `features`.
    fn to_message(&self, features: u64) -> Message {
        let p = self.encode_payload(features);
        Message::new(
            MessageHeader::new(Self::TYPE, Self::HEAD_VERSION, Self::COMPAT_VERSION),
            p.front,
            p.middle,
            p.data,
        )
    }

    /// Decodes `m`, which must have type [`Self::TYPE`] and a `compat_version` this decoder
    /// understands (Ceph's `decode_message` rule), without copying its segments.
    fn from_message(m: &Message) -> Result<Self, DecodeError> {
        check_decodable::<Self>(&m.header)?;
        let p = Payload {
            front: m.front.clone(),
            middle: m.middle.clone(),
            data: m.data.clone(),
        };
        Self::decode_payload(&m.header, p)
    }

    /// [`TypedMessage::from_message`] for a message the caller owns (the usual case for a
    /// received one): its segments move into the payload instead of being shared.
    fn decode(m: Message) -> Result<Self, DecodeError> {
        check_decodable::<Self>(&m.header)?;
        let p = Payload {
            front: m.front,
            middle: m.middle,
            data: m.data,
        };
        Self::decode_payload(&m.header, p)
    }
}

/// Ceph's `decode_message` checks: the right type, and a compat version we understand.
fn check_decodable<T: TypedMessage>(h: &MessageHeader) -> Result<(), DecodeError> {
    if h.ty != T::TYPE {
        return Err(DecodeError::Invalid {
            what: "message type",
        });
    }
    if h.compat_version > T::HEAD_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "message",
            compat: u8::try_from(h.compat_version).unwrap_or(u8::MAX),
            supported: u8::try_from(T::HEAD_VERSION).unwrap_or(u8::MAX),
        });
    }
    Ok(())
}

/// Decodes a whole front segment with `f`, rejecting bytes left over.
pub fn decode_front<T>(
    front: Bytes,
    what: &'static str,
    f: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = Reader::new(front);
    let v = f(&mut r)?;
    r.finish(what)?;
    Ok(v)
}

/// Encodes a front segment with `f` for a peer with `features`.
pub fn encode_front(features: u64, f: impl FnOnce(&mut Writer)) -> Bytes {
    // Most fronts are a few hundred bytes: one allocation instead of a chain of doublings.
    let mut w = Writer::with_capacity(features, 512);
    f(&mut w);
    w.finish()
}

pub mod auth;
pub mod command;
#[cfg(test)]
mod golden;
pub mod mon_get_version;
pub mod mon_subscribe;
pub mod monmap;
pub mod osd_op;
pub mod osd_types;
pub mod ping;
pub mod types;

pub use auth::{AuthEntityName, AuthNegotiate, AuthNoneAuthorizer, MAuth, MAuthReply};
pub use command::{MCommand, MCommandReply};
pub use mon_get_version::{MMonGetVersion, MMonGetVersionReply};
pub use mon_subscribe::{MMonSubscribe, MMonSubscribeAck, SubscribeItem};
pub use monmap::{MMonMap, MonInfo, MonMap};
pub use osd_op::{MOSDOp, MOSDOpReply};
pub use osd_types::{OsdOp, OsdOpCode};
pub use ping::MPing;
pub use types::{Fsid, UTime};

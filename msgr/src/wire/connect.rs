//! `ceph_msg_connect` (33 bytes, client → server) and `ceph_msg_connect_reply` (26 bytes,
//! server → client), docs §2.4. Both are followed on the wire by `authorizer_len` bytes of
//! authorizer (reply); a `SEQ` reply is further followed by a le64.

use super::tag::Tag;
use super::Field;
use crate::entity::EntityType;
use crate::error::DecodeError;

/// `CEPH_MSG_CONNECT_LOSSY`: the sender's policy is lossy (in a reply: the client must be).
pub const FLAG_LOSSY: u8 = 1;

mod field {
    use super::Field;
    pub(super) const FEATURES: Field = 0..8;
    pub(super) const HOST_TYPE: Field = 8..12;
    pub(super) const GLOBAL_SEQ: Field = 12..16;
    pub(super) const CONNECT_SEQ: Field = 16..20;
    pub(super) const PROTOCOL_VERSION: Field = 20..24;
    pub(super) const AUTHORIZER_PROTOCOL: Field = 24..28;
    pub(super) const AUTHORIZER_LEN: Field = 28..32;
    pub(super) const FLAGS: usize = 32;
    pub(super) const LEN: usize = 33;

    pub(super) mod reply {
        use super::super::Field;
        pub(in super::super) const TAG: usize = 0;
        pub(in super::super) const FEATURES: Field = 1..9;
        pub(in super::super) const GLOBAL_SEQ: Field = 9..13;
        pub(in super::super) const CONNECT_SEQ: Field = 13..17;
        pub(in super::super) const PROTOCOL_VERSION: Field = 17..21;
        pub(in super::super) const AUTHORIZER_LEN: Field = 21..25;
        pub(in super::super) const FLAGS: usize = 25;
        pub(in super::super) const LEN: usize = 26;
    }
}

fn le32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], f: Field) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[f]);
    u64::from_le_bytes(a)
}

/// A read-only view of a `ceph_msg_connect`.
#[derive(Debug, Clone)]
pub struct Connect<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Connect<T> {
    /// Size on the wire.
    pub const LEN: usize = field::LEN;

    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`Connect::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let c = Self::new_unchecked(buffer);
        c.check_len()?;
        Ok(c)
    }

    /// Ensures that no accessor will panic.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < field::LEN {
            return Err(DecodeError::Truncated {
                what: "ceph_msg_connect",
            });
        }
        Ok(())
    }

    /// Features the client supports.
    pub fn features(&self) -> u64 {
        le64(self.buffer.as_ref(), field::FEATURES)
    }
    /// The client's entity type.
    pub fn host_type(&self) -> u32 {
        le32(self.buffer.as_ref(), field::HOST_TYPE)
    }
    /// Per-messenger connect-attempt counter.
    pub fn global_seq(&self) -> u32 {
        le32(self.buffer.as_ref(), field::GLOBAL_SEQ)
    }
    /// Per-session reconnect counter.
    pub fn connect_seq(&self) -> u32 {
        le32(self.buffer.as_ref(), field::CONNECT_SEQ)
    }
    /// Protocol version for this peer-type pair.
    pub fn protocol_version(&self) -> u32 {
        le32(self.buffer.as_ref(), field::PROTOCOL_VERSION)
    }
    /// Auth method of the authorizer (0 none sent, 1 none, 2 cephx).
    pub fn authorizer_protocol(&self) -> u32 {
        le32(self.buffer.as_ref(), field::AUTHORIZER_PROTOCOL)
    }
    /// Authorizer bytes that follow.
    pub fn authorizer_len(&self) -> u32 {
        le32(self.buffer.as_ref(), field::AUTHORIZER_LEN)
    }
    /// Flags (`FLAG_LOSSY`).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
}

/// A parsed `ceph_msg_connect`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectRepr {
    /// Features the client supports.
    pub features: u64,
    /// The client's entity type.
    pub host_type: EntityType,
    /// Per-messenger connect-attempt counter.
    pub global_seq: u32,
    /// Per-session reconnect counter.
    pub connect_seq: u32,
    /// Protocol version.
    pub protocol_version: u32,
    /// Auth method of the authorizer.
    pub authorizer_protocol: u32,
    /// Authorizer bytes that follow.
    pub authorizer_len: u32,
    /// Flags.
    pub flags: u8,
}

impl ConnectRepr {
    /// Size on the wire.
    pub const LEN: usize = field::LEN;

    /// Parses a checked view. A host type that does not fit an entity type is refused.
    pub fn parse<T: AsRef<[u8]>>(c: &Connect<T>) -> Result<Self, DecodeError> {
        c.check_len()?;
        let host_type = u8::try_from(c.host_type()).map_err(|_| DecodeError::Invalid {
            what: "connect host_type",
        })?;
        Ok(Self {
            features: c.features(),
            host_type: EntityType(host_type),
            global_seq: c.global_seq(),
            connect_seq: c.connect_seq(),
            protocol_version: c.protocol_version(),
            authorizer_protocol: c.authorizer_protocol(),
            authorizer_len: c.authorizer_len(),
            flags: c.flags(),
        })
    }

    /// Whether the client's policy is lossy (informational; the server decides).
    pub fn is_lossy(&self) -> bool {
        self.flags & FLAG_LOSSY != 0
    }

    /// Encodes the 33 bytes.
    pub fn emit(&self) -> [u8; field::LEN] {
        let mut b = [0u8; field::LEN];
        b[field::FEATURES].copy_from_slice(&self.features.to_le_bytes());
        b[field::HOST_TYPE].copy_from_slice(&u32::from(self.host_type.0).to_le_bytes());
        b[field::GLOBAL_SEQ].copy_from_slice(&self.global_seq.to_le_bytes());
        b[field::CONNECT_SEQ].copy_from_slice(&self.connect_seq.to_le_bytes());
        b[field::PROTOCOL_VERSION].copy_from_slice(&self.protocol_version.to_le_bytes());
        b[field::AUTHORIZER_PROTOCOL].copy_from_slice(&self.authorizer_protocol.to_le_bytes());
        b[field::AUTHORIZER_LEN].copy_from_slice(&self.authorizer_len.to_le_bytes());
        b[field::FLAGS] = self.flags;
        b
    }
}

/// A read-only view of a `ceph_msg_connect_reply`.
#[derive(Debug, Clone)]
pub struct ConnectReply<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConnectReply<T> {
    /// Size on the wire.
    pub const LEN: usize = field::reply::LEN;

    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`ConnectReply::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let c = Self::new_unchecked(buffer);
        c.check_len()?;
        Ok(c)
    }

    /// Ensures that no accessor will panic.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < field::reply::LEN {
            return Err(DecodeError::Truncated {
                what: "ceph_msg_connect_reply",
            });
        }
        Ok(())
    }

    /// The reply tag.
    pub fn tag(&self) -> Tag {
        Tag::from(self.buffer.as_ref()[field::reply::TAG])
    }
    /// Features (meaning depends on the tag, docs §2.4).
    pub fn features(&self) -> u64 {
        le64(self.buffer.as_ref(), field::reply::FEATURES)
    }
    /// Global seq (server's new one, or the one to exceed on RETRY_GLOBAL).
    pub fn global_seq(&self) -> u32 {
        le32(self.buffer.as_ref(), field::reply::GLOBAL_SEQ)
    }
    /// Connect seq (the session's, or the one to use on RETRY_SESSION).
    pub fn connect_seq(&self) -> u32 {
        le32(self.buffer.as_ref(), field::reply::CONNECT_SEQ)
    }
    /// The server's protocol version.
    pub fn protocol_version(&self) -> u32 {
        le32(self.buffer.as_ref(), field::reply::PROTOCOL_VERSION)
    }
    /// Authorizer reply bytes that follow.
    pub fn authorizer_len(&self) -> u32 {
        le32(self.buffer.as_ref(), field::reply::AUTHORIZER_LEN)
    }
    /// Flags (`FLAG_LOSSY`).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::reply::FLAGS]
    }
}

/// A parsed `ceph_msg_connect_reply`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectReplyRepr {
    /// The reply tag.
    pub tag: Tag,
    /// Features.
    pub features: u64,
    /// Global seq.
    pub global_seq: u32,
    /// Connect seq.
    pub connect_seq: u32,
    /// Protocol version.
    pub protocol_version: u32,
    /// Authorizer reply bytes that follow.
    pub authorizer_len: u32,
    /// Flags.
    pub flags: u8,
}

impl ConnectReplyRepr {
    /// Size on the wire.
    pub const LEN: usize = field::reply::LEN;

    /// Parses a view.
    pub fn parse<T: AsRef<[u8]>>(c: &ConnectReply<T>) -> Result<Self, DecodeError> {
        c.check_len()?;
        Ok(Self {
            tag: c.tag(),
            features: c.features(),
            global_seq: c.global_seq(),
            connect_seq: c.connect_seq(),
            protocol_version: c.protocol_version(),
            authorizer_len: c.authorizer_len(),
            flags: c.flags(),
        })
    }

    /// Whether the server says the session is lossy.
    pub fn is_lossy(&self) -> bool {
        self.flags & FLAG_LOSSY != 0
    }

    /// Encodes the 26 bytes.
    pub fn emit(&self) -> [u8; field::reply::LEN] {
        let mut b = [0u8; field::reply::LEN];
        b[field::reply::TAG] = u8::from(self.tag);
        b[field::reply::FEATURES].copy_from_slice(&self.features.to_le_bytes());
        b[field::reply::GLOBAL_SEQ].copy_from_slice(&self.global_seq.to_le_bytes());
        b[field::reply::CONNECT_SEQ].copy_from_slice(&self.connect_seq.to_le_bytes());
        b[field::reply::PROTOCOL_VERSION].copy_from_slice(&self.protocol_version.to_le_bytes());
        b[field::reply::AUTHORIZER_LEN].copy_from_slice(&self.authorizer_len.to_le_bytes());
        b[field::reply::FLAGS] = self.flags;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;

    /// docs §8.3: the connect a full-feature client sends to a mon.
    const CONNECT_BYTES: [u8; 33] = [
        0xff, 0xff, 0xfd, 0xff, 0xbd, 0xcf, 0x01, 0x3f, 0x08, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
        0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ];

    #[test]
    fn deconstruct_connect() {
        let v = Connect::new_checked(&CONNECT_BYTES[..]).unwrap();
        assert_eq!(v.features(), PACIFIC_ALL);
        assert_eq!(v.host_type(), 8);
        assert_eq!(
            (v.global_seq(), v.connect_seq(), v.protocol_version()),
            (1, 0, 15)
        );
        assert_eq!(
            (v.authorizer_protocol(), v.authorizer_len(), v.flags()),
            (0, 0, 1)
        );
    }

    #[test]
    fn construct_connect() {
        let r = ConnectRepr {
            features: PACIFIC_ALL,
            host_type: EntityType::CLIENT,
            global_seq: 1,
            connect_seq: 0,
            protocol_version: 15,
            authorizer_protocol: 0,
            authorizer_len: 0,
            flags: FLAG_LOSSY,
        };
        assert_eq!(r.emit(), CONNECT_BYTES);
        assert_eq!(
            ConnectRepr::parse(&Connect::new_unchecked(&r.emit()[..])).unwrap(),
            r
        );
    }

    #[test]
    fn real_reply_from_a_pacific_mon() {
        // v1-ping capture: the reply follows the 281-byte server hello.
        let s2c = include_bytes!("../../tests/data/v1-ping-0-s2c.bin");
        let r = ConnectReplyRepr::parse(&ConnectReply::new_checked(&s2c[281..]).unwrap()).unwrap();
        assert_eq!(r.tag, Tag::Seq);
        assert_eq!(r.features, PACIFIC_ALL);
        assert_eq!(
            (r.connect_seq, r.protocol_version, r.authorizer_len),
            (1, 15, 0)
        );
        assert!(r.is_lossy());
        assert_eq!(&r.emit()[..], &s2c[281..281 + 26]);
    }

    #[test]
    fn truncated_and_impossible() {
        assert_eq!(
            Connect::new_checked(&CONNECT_BYTES[..32]).err(),
            Some(DecodeError::Truncated {
                what: "ceph_msg_connect"
            })
        );
        assert_eq!(
            ConnectReply::new_checked(&[0u8; 25][..]).err(),
            Some(DecodeError::Truncated {
                what: "ceph_msg_connect_reply"
            })
        );
        let mut b = CONNECT_BYTES;
        b[9] = 1; // host_type 0x108 is no entity type
        assert_eq!(
            ConnectRepr::parse(&Connect::new_unchecked(&b[..])),
            Err(DecodeError::Invalid {
                what: "connect host_type"
            })
        );
    }
}

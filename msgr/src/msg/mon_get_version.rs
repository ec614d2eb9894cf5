//! `MMonGetVersion` (type 19) and `MMonGetVersionReply` (type 20): "what is the newest
//! version of map X?", used to tell "does not exist" from "my map is stale".
//!
//! Follows Ceph Pacific `src/messages/MMonGetVersion.h` (`u64 handle, string what`;
//! version 1) and `src/messages/MMonGetVersionReply.h` (HEAD_VERSION 2:
//! `u64 handle, u64 version, u64 oldest_version`, the last read only when the header
//! version is at least 2). The reply's compat is 0 in Ceph's constructor, which
//! `Message::encode` turns into 2 on the wire (docs §8.1).
//!
//! The monitor echoes the request's header `tid` in the reply; that lives in the
//! [`super::MessageHeader`], not here (set it with [`super::Message::with_tid`]).

use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::error::DecodeError;

/// `MMonGetVersion`: asks for the newest version of one map.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MMonGetVersion {
    /// A caller-chosen id echoed in the reply.
    pub handle: u64,
    /// "monmap", "osdmap", "mdsmap" or "fsmap".
    pub what: String,
}

impl MMonGetVersion {
    /// A query for `what`.
    pub fn new(handle: u64, what: impl Into<String>) -> Self {
        Self {
            handle,
            what: what.into(),
        }
    }
}

impl TypedMessage for MMonGetVersion {
    const TYPE: MsgType = MsgType::MON_GET_VERSION;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.u64(self.handle);
            w.string(&self.what);
        });
        Payload {
            front,
            ..Payload::default()
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MMonGetVersion", |r| {
            Ok(Self {
                handle: r.u64()?,
                what: r.string()?,
            })
        })
    }
}

/// `MMonGetVersionReply`: the newest (and oldest kept) version of the map asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MMonGetVersionReply {
    /// The request's handle.
    pub handle: u64,
    /// The newest committed version.
    pub version: u64,
    /// The oldest version the monitor still has (0 from version-1 senders).
    pub oldest_version: u64,
}

impl TypedMessage for MMonGetVersionReply {
    const TYPE: MsgType = MsgType::MON_GET_VERSION_REPLY;
    const HEAD_VERSION: u16 = 2;
    const COMPAT_VERSION: u16 = 2;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.u64(self.handle);
            w.u64(self.version);
            w.u64(self.oldest_version);
        });
        Payload {
            front,
            ..Payload::default()
        }
    }

    fn decode_payload(header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MMonGetVersionReply", |r| {
            let handle = r.u64()?;
            let version = r.u64()?;
            let oldest_version = if header.version >= 2 { r.u64()? } else { 0 };
            Ok(Self {
                handle,
                version,
                oldest_version,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use bytes::Bytes;

    #[test]
    fn request_bytes_and_round_trip() {
        // docs §8.3 step 3: handle 42, "monmap", header tid 7.
        let m = MMonGetVersion::new(42, "monmap")
            .to_message(PACIFIC_ALL)
            .with_tid(7);
        assert_eq!(
            (
                m.header.ty,
                m.header.version,
                m.header.compat_version,
                m.header.tid
            ),
            (MsgType::MON_GET_VERSION, 1, 1, 7)
        );
        assert_eq!(
            &m.front[..],
            b"\x2a\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00monmap"
        );
        assert_eq!(
            MMonGetVersion::from_message(&m).unwrap(),
            MMonGetVersion::new(42, "monmap")
        );
    }

    #[test]
    fn reply_bytes_versions_and_round_trip() {
        let r = MMonGetVersionReply {
            handle: 42,
            version: 1,
            oldest_version: 1,
        };
        let m = r.to_message(PACIFIC_ALL).with_tid(7);
        assert_eq!((m.header.version, m.header.compat_version), (2, 2));
        let mut want = Vec::new();
        for v in [42u64, 1, 1] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(&m.front[..], &want[..]);
        let back = MMonGetVersionReply::from_message(&m).unwrap();
        assert_eq!(back, r);
        assert_eq!(m.header.tid, 7);
        // A version-1 sender stops after `version`.
        let h1 = MessageHeader::new(MsgType::MON_GET_VERSION_REPLY, 1, 1);
        let p = Payload {
            front: Bytes::copy_from_slice(&want[..16]),
            ..Payload::default()
        };
        assert_eq!(
            MMonGetVersionReply::decode_payload(&h1, p.clone()).unwrap(),
            MMonGetVersionReply {
                handle: 42,
                version: 1,
                oldest_version: 0
            }
        );
        // ...and a version-2 reply read as version 1 has trailing bytes.
        let p = Payload {
            front: m.front.clone(),
            ..Payload::default()
        };
        assert_eq!(
            MMonGetVersionReply::decode_payload(&h1, p.clone()),
            Err(DecodeError::TrailingData {
                what: "MMonGetVersionReply"
            })
        );
    }

    #[test]
    fn truncated_hostile_and_too_new_are_errors() {
        let f = MMonGetVersion::new(1, "osdmap").encode_payload(0).front;
        let h = MessageHeader::new(MsgType::MON_GET_VERSION, 1, 1);
        for cut in 0..f.len() {
            let p = Payload {
                front: f.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MMonGetVersion::decode_payload(&h, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let p = Payload {
            front: Bytes::from_static(b"\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"),
            ..Payload::default()
        };
        assert_eq!(
            MMonGetVersion::decode_payload(&h, p.clone()),
            Err(DecodeError::Truncated { what: "string" })
        );
        let rf = MMonGetVersionReply {
            handle: 1,
            version: 2,
            oldest_version: 3,
        }
        .encode_payload(0)
        .front;
        let rh = MessageHeader::new(MsgType::MON_GET_VERSION_REPLY, 2, 2);
        for cut in 0..rf.len() {
            let p = Payload {
                front: rf.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MMonGetVersionReply::decode_payload(&rh, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let mut m = MMonGetVersion::new(1, "x").to_message(0);
        m.header.compat_version = 2;
        assert!(matches!(
            MMonGetVersion::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut m = MMonGetVersionReply {
            handle: 1,
            version: 2,
            oldest_version: 3,
        }
        .to_message(0);
        m.header.compat_version = 3;
        assert!(matches!(
            MMonGetVersionReply::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}

//! `MCommand` (`MSG_COMMAND`, type 97) and `MCommandReply` (`MSG_COMMAND_REPLY`, type 98):
//! a command for a daemon (`ceph tell osd.0 ...`) and its answer.
//!
//! Follows Ceph Pacific `src/messages/MCommand.h` (`uuid_d fsid` as 16 raw bytes, then
//! `vector<string> cmd`; the data segment is the command's input bufferlist) and
//! `src/messages/MCommandReply.h` (`errorcode32_t r`, `string rs`; the data segment is the
//! output). Both are `Message` version 1 (compat 0 in the constructor, 1 on the wire). The
//! reply echoes the request's header `tid`, which lives in the message header.

use bytes::Bytes;

use super::types::Fsid;
use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::error::DecodeError;

/// `MCommand`: run `cmd` (usually one JSON string) on the receiving daemon.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MCommand {
    /// The cluster's fsid.
    pub fsid: Fsid,
    /// The command words; by convention one JSON object such as `{"prefix": "status"}`.
    pub cmd: Vec<String>,
    /// Input data (the data segment, untouched).
    pub data: Bytes,
}

impl MCommand {
    /// A command with no input data.
    pub fn new(fsid: Fsid, cmd: Vec<String>) -> Self {
        Self {
            fsid,
            cmd,
            data: Bytes::new(),
        }
    }
}

impl TypedMessage for MCommand {
    const TYPE: MsgType = MsgType::COMMAND;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.put(&self.fsid);
            w.put(&self.cmd);
        });
        Payload {
            front,
            middle: Bytes::new(),
            data: self.data.clone(),
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MCommand", |r| {
            Ok(Self {
                fsid: r.decode()?,
                cmd: r.vec()?,
                data: payload.data.clone(),
            })
        })
    }
}

/// `MCommandReply`: a command's result code, status string and output.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MCommandReply {
    /// 0 or a negative errno.
    pub r: i32,
    /// Human-readable status (`rs`).
    pub rs: String,
    /// Output data (the data segment, untouched).
    pub data: Bytes,
}

impl TypedMessage for MCommandReply {
    const TYPE: MsgType = MsgType::COMMAND_REPLY;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.i32(self.r);
            w.string(&self.rs);
        });
        Payload {
            front,
            middle: Bytes::new(),
            data: self.data.clone(),
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MCommandReply", |r| {
            Ok(Self {
                r: r.i32()?,
                rs: r.string()?,
                data: payload.data.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;

    fn fsid() -> Fsid {
        Fsid([0x11; 16])
    }

    #[test]
    fn command_bytes_and_zero_copy_data() {
        let input = Bytes::from(vec![9u8; 1000]);
        let c = MCommand {
            fsid: fsid(),
            cmd: vec![r#"{"prefix":"status"}"#.into()],
            data: input.clone(),
        };
        let m = c.to_message(PACIFIC_ALL).with_tid(5);
        assert_eq!(
            (m.header.ty, m.header.version, m.header.compat_version),
            (MsgType::COMMAND, 1, 1)
        );
        let mut want = vec![0x11; 16];
        want.extend_from_slice(&[1, 0, 0, 0, 19, 0, 0, 0]);
        want.extend_from_slice(br#"{"prefix":"status"}"#);
        assert_eq!(&m.front[..], &want[..]);
        assert_eq!(m.data.as_ptr(), input.as_ptr());
        let back = MCommand::from_message(&m).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.data.as_ptr(), input.as_ptr());
    }

    #[test]
    fn reply_bytes_and_round_trip() {
        let r = MCommandReply {
            r: -22,
            rs: "bad".into(),
            data: Bytes::from_static(b"out"),
        };
        let m = r.to_message(PACIFIC_ALL);
        assert_eq!(&m.front[..], b"\xea\xff\xff\xff\x03\x00\x00\x00bad");
        assert_eq!(&m.data[..], b"out");
        assert_eq!(MCommandReply::from_message(&m).unwrap(), r);
    }

    #[test]
    fn truncated_hostile_and_too_new_are_errors() {
        let h = MessageHeader::new(MsgType::COMMAND, 1, 1);
        let f = MCommand::new(fsid(), vec!["a".into(), "bc".into()])
            .encode_payload(0)
            .front;
        for cut in 0..f.len() {
            let p = Payload {
                front: f.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MCommand::decode_payload(&h, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let mut hostile = vec![0x11; 16];
        hostile.extend_from_slice(&[0xff; 4]);
        hostile.extend_from_slice(&[0; 8]);
        let p = Payload {
            front: Bytes::from(hostile),
            ..Payload::default()
        };
        assert_eq!(
            MCommand::decode_payload(&h, p.clone()),
            Err(DecodeError::Truncated { what: "container" })
        );
        let rh = MessageHeader::new(MsgType::COMMAND_REPLY, 1, 1);
        let rf = MCommandReply {
            r: 0,
            rs: "ok".into(),
            data: Bytes::new(),
        }
        .encode_payload(0)
        .front;
        for cut in 0..rf.len() {
            let p = Payload {
                front: rf.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MCommandReply::decode_payload(&rh, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let mut m = MCommand::new(fsid(), vec![]).to_message(0);
        m.header.compat_version = 2;
        assert!(matches!(
            MCommand::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut m = MCommandReply {
            r: 0,
            rs: String::new(),
            data: Bytes::new(),
        }
        .to_message(0);
        m.header.compat_version = 2;
        assert!(matches!(
            MCommandReply::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}

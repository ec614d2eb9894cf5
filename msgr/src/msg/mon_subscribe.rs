//! `MMonSubscribe` (type 15) and `MMonSubscribeAck` (type 16): asking a monitor to push
//! maps (monmap, osdmap, config, ...) as they change.
//!
//! Follows Ceph Pacific:
//! - `src/messages/MMonSubscribe.h`: HEAD_VERSION 3, COMPAT_VERSION 1. `encode_payload`
//!   writes `map<string, ceph_mon_subscribe_item>` and the hostname (v3) for peers with
//!   `SUBSCRIBE2`; `decode_payload` also reads v2 (no hostname) and the pre-`SUBSCRIBE2`
//!   form (header version 0/1: `map<string, ceph_mon_subscribe_item_old>`).
//! - `src/include/ceph_fs.h`: `ceph_mon_subscribe_item` is a packed `le64 start, u8 flags`
//!   (9 bytes); `CEPH_SUBSCRIBE_ONETIME` = 1.
//! - `src/messages/MMonSubscribeAck.h`: `u32 interval`, `uuid_d fsid` (16 raw bytes). Only
//!   sent to peers without `MON_STATEFUL_SUB`, so a Pacific client never sees one.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::types::Fsid;
use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::denc::{Decode, Encode, Reader, Writer};
use crate::error::DecodeError;

/// `CEPH_SUBSCRIBE_ONETIME`: send the map once, then drop the subscription.
pub const SUBSCRIBE_ONETIME: u8 = 1;

/// `ceph_mon_subscribe_item`: what to send from which version on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SubscribeItem {
    /// The first version wanted (0: the current one).
    pub start: u64,
    /// [`SUBSCRIBE_ONETIME`] or 0.
    pub flags: u8,
}

impl Encode for SubscribeItem {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.start);
        w.u8(self.flags);
    }
}

impl Decode for SubscribeItem {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            start: r.u64()?,
            flags: r.u8()?,
        })
    }
}

/// `ceph_mon_subscribe_item_old` (pre-`SUBSCRIBE2`): `le64 unused, le64 have, u8 onetime`.
fn decode_old_item(r: &mut Reader) -> Result<SubscribeItem, DecodeError> {
    let _unused = r.u64()?;
    let have = r.u64()?;
    let onetime = r.u8()?;
    // Ceph's conversion: "have n" means "start at n + 1".
    let start = if have == 0 { 0 } else { have.saturating_add(1) };
    Ok(SubscribeItem {
        start,
        flags: if onetime != 0 { SUBSCRIBE_ONETIME } else { 0 },
    })
}

/// `MMonSubscribe`: the maps a client wants pushed.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MMonSubscribe {
    /// Map name ("monmap", "osdmap", "config", "mgrmap", ...) to what is wanted.
    pub what: BTreeMap<String, SubscribeItem>,
    /// The client's hostname (v3).
    pub hostname: String,
}

impl MMonSubscribe {
    /// An empty subscription from `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        Self {
            what: BTreeMap::new(),
            hostname: hostname.into(),
        }
    }

    /// Adds (or replaces) a subscription (builder style), as Ceph's `sub_want`.
    pub fn want(mut self, what: impl Into<String>, start: u64, flags: u8) -> Self {
        self.what
            .insert(what.into(), SubscribeItem { start, flags });
        self
    }
}

impl TypedMessage for MMonSubscribe {
    const TYPE: MsgType = MsgType::MON_SUBSCRIBE;
    const HEAD_VERSION: u16 = 3;
    const COMPAT_VERSION: u16 = 1;

    /// The v3 encoding. Peers without `SUBSCRIBE2` (pre-2010 Ceph) would need the old
    /// version-0 form, which we never send.
    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.map(&self.what);
            w.string(&self.hostname);
        });
        Payload {
            front,
            ..Payload::default()
        }
    }

    fn decode_payload(header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MMonSubscribe", |r| {
            if header.version < 2 {
                let n = r.count(17)?;
                let mut what = BTreeMap::new();
                for _ in 0..n {
                    let k = r.string()?;
                    what.insert(k, decode_old_item(r)?);
                }
                return Ok(Self {
                    what,
                    hostname: String::new(),
                });
            }
            let what = r.map()?;
            let hostname = if header.version >= 3 {
                r.string()?
            } else {
                String::new()
            };
            Ok(Self { what, hostname })
        })
    }
}

/// `MMonSubscribeAck`: how often to renew subscriptions (old protocol only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MMonSubscribeAck {
    /// Renewal interval in seconds.
    pub interval: u32,
    /// The cluster's fsid.
    pub fsid: Fsid,
}

impl TypedMessage for MMonSubscribeAck {
    const TYPE: MsgType = MsgType::MON_SUBSCRIBE_ACK;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.u32(self.interval);
            w.put(&self.fsid);
        });
        Payload {
            front,
            middle: Bytes::new(),
            data: Bytes::new(),
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MMonSubscribeAck", |r| {
            Ok(Self {
                interval: r.u32()?,
                fsid: r.decode()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use crate::msg::golden;

    fn hdr(version: u16) -> MessageHeader {
        MessageHeader::new(MsgType::MON_SUBSCRIBE, version, 1)
    }

    #[test]
    fn construct_matches_hand_checked_bytes() {
        // docs §8.3 step 4: {"monmap": start 0, flags 0}, hostname "test".
        let m = MMonSubscribe::new("test")
            .want("monmap", 0, 0)
            .to_message(PACIFIC_ALL);
        assert_eq!((m.header.version, m.header.compat_version), (3, 1));
        let want: &[u8] = b"\x01\x00\x00\x00\x06\x00\x00\x00monmap\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00test";
        assert_eq!(&m.front[..], want);
        let back = MMonSubscribe::from_message(&m).unwrap();
        assert_eq!(back.what["monmap"], SubscribeItem { start: 0, flags: 0 });
        assert_eq!(back.hostname, "test");
    }

    #[test]
    fn golden_subscribes_from_ceph_cli_reencode_identically() {
        let msgs = golden::of_type("v1-status-1-c2s.bin", MsgType::MON_SUBSCRIBE);
        assert_eq!(msgs.len(), 3);
        let subs: Vec<MMonSubscribe> = msgs
            .iter()
            .map(|m| MMonSubscribe::from_message(m).unwrap())
            .collect();
        assert_eq!(
            subs[0],
            MMonSubscribe::new("vm")
                .want("config", 0, 0)
                .want("monmap", 0, 0),
            "the first subscription of `ceph -s`"
        );
        assert_eq!(subs[1], MMonSubscribe::new("vm").want("mgrmap", 0, 0));
        assert_eq!(
            subs[2],
            MMonSubscribe::new("vm").want("osdmap", 0, SUBSCRIBE_ONETIME)
        );
        for (s, m) in subs.iter().zip(&msgs) {
            assert_eq!((m.header.version, m.header.compat_version), (3, 1));
            assert_eq!(s.to_message(PACIFIC_ALL).front, m.front);
        }
        for file in [
            "v1-status-0-c2s.bin",
            "v1-status-2-c2s.bin",
            "v1-status-3-c2s.bin",
        ] {
            for m in golden::of_type(file, MsgType::MON_SUBSCRIBE) {
                let s = MMonSubscribe::from_message(&m).unwrap();
                assert_eq!(s.encode_payload(PACIFIC_ALL).front, m.front, "{file}");
            }
        }
    }

    #[test]
    fn older_versions_decode() {
        // v2: no hostname.
        let p = Payload {
            front: Bytes::from_static(
                b"\x01\x00\x00\x00\x01\x00\x00\x00x\x05\x00\x00\x00\x00\x00\x00\x00\x01",
            ),
            ..Payload::default()
        };
        let m = MMonSubscribe::decode_payload(&hdr(2), p.clone()).unwrap();
        assert_eq!(m.what["x"], SubscribeItem { start: 5, flags: 1 });
        assert_eq!(m.hostname, "");
        // v0: {unused, have 7, onetime 1} means start 8, ONETIME.
        let mut f = b"\x02\x00\x00\x00\x01\x00\x00\x00a".to_vec();
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&7u64.to_le_bytes());
        f.push(1);
        f.extend_from_slice(b"\x01\x00\x00\x00b");
        f.extend_from_slice(&[0; 17]);
        let p = Payload {
            front: Bytes::from(f),
            ..Payload::default()
        };
        let m = MMonSubscribe::decode_payload(&hdr(0), p.clone()).unwrap();
        assert_eq!(
            m.what["a"],
            SubscribeItem {
                start: 8,
                flags: SUBSCRIBE_ONETIME
            }
        );
        assert_eq!(m.what["b"], SubscribeItem { start: 0, flags: 0 });
    }

    #[test]
    fn truncated_and_hostile_inputs_are_errors() {
        let f = MMonSubscribe::new("host")
            .want("osdmap", 3, 1)
            .encode_payload(0)
            .front;
        for cut in 0..f.len() {
            let p = Payload {
                front: f.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MMonSubscribe::decode_payload(&hdr(3), p.clone()).is_err(),
                "cut {cut}"
            );
        }
        let p = Payload {
            front: f.clone(),
            ..Payload::default()
        };
        assert_eq!(
            MMonSubscribe::decode_payload(&hdr(2), p.clone()),
            Err(DecodeError::TrailingData {
                what: "MMonSubscribe"
            })
        );
        for version in [0, 3] {
            let p = Payload {
                front: Bytes::from_static(b"\xff\xff\xff\xff\x00\x00"),
                ..Payload::default()
            };
            assert_eq!(
                MMonSubscribe::decode_payload(&hdr(version), p.clone()),
                Err(DecodeError::Truncated { what: "container" })
            );
        }
        let mut m = MMonSubscribe::new("h").to_message(PACIFIC_ALL);
        m.header.compat_version = 4;
        assert!(matches!(
            MMonSubscribe::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn subscribe_ack_bytes() {
        let fsid: Fsid = "dd9a8e03-1acc-4040-892d-e1fe7581188b".parse().unwrap();
        let ack = MMonSubscribeAck {
            interval: 300,
            fsid,
        };
        let m = ack.to_message(PACIFIC_ALL);
        let mut want = vec![0x2c, 0x01, 0, 0];
        want.extend_from_slice(&fsid.0);
        assert_eq!(&m.front[..], &want[..]);
        assert_eq!(MMonSubscribeAck::from_message(&m).unwrap(), ack);
        let h = MessageHeader::new(MsgType::MON_SUBSCRIBE_ACK, 1, 1);
        for cut in 0..want.len() {
            let p = Payload {
                front: m.front.slice(..cut),
                ..Payload::default()
            };
            assert!(MMonSubscribeAck::decode_payload(&h, p.clone()).is_err());
        }
        let mut m2 = m.clone();
        m2.header.compat_version = 2;
        assert!(MMonSubscribeAck::from_message(&m2).is_err());
    }
}

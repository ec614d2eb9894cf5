//! `MPing` (`CEPH_MSG_PING`, type 2): a liveness probe any peer may send before auth.
//!
//! Follows Ceph Pacific `src/messages/MPing.h`, whose `encode_payload`/`decode_payload` do
//! nothing: a client's ping has an empty front. A monitor answers with an `MPing` whose front
//! it filled in itself (`Monitor::handle_ping` encodes a `std::string`: `u32` length plus a
//! JSON health/mon_status report) and whose header says version 1, compat 0 (docs §8.1).
//! Ceph's messenger tests also put arbitrary bytes in the data segment of pings; we keep
//! that segment too.

use bytes::Bytes;

use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::error::DecodeError;

/// A ping, or a monitor's answer to one.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MPing {
    /// The front as a string: `None` for a plain ping (empty front), `Some(json)` for a
    /// monitor's reply.
    pub payload: Option<String>,
    /// The data segment, untouched (empty in pings between clients and monitors).
    pub data: Bytes,
}

impl MPing {
    /// A plain ping with an empty front.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ping whose front carries `text`, as a monitor's reply does.
    pub fn with_payload(text: impl Into<String>) -> Self {
        Self {
            payload: Some(text.into()),
            data: Bytes::new(),
        }
    }
}

impl TypedMessage for MPing {
    const TYPE: MsgType = MsgType::PING;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = match &self.payload {
            None => Bytes::new(),
            Some(s) => encode_front(features, |w| w.string(s)),
        };
        Payload {
            front,
            middle: Bytes::new(),
            data: self.data.clone(),
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        let text = if payload.front.is_empty() {
            None
        } else {
            Some(decode_front(payload.front, "MPing", |r| r.string())?)
        };
        Ok(Self {
            payload: text,
            data: payload.data.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use crate::msg::golden;

    #[test]
    fn empty_ping_round_trips() {
        let m = MPing::new().to_message(PACIFIC_ALL);
        assert_eq!(
            (m.header.ty, m.header.version, m.header.compat_version),
            (MsgType::PING, 1, 1)
        );
        assert!(m.front.is_empty() && m.data.is_empty());
        assert_eq!(MPing::from_message(&m).unwrap(), MPing::new());
    }

    #[test]
    fn payload_string_bytes() {
        let m = MPing::with_payload("{}").to_message(PACIFIC_ALL);
        assert_eq!(&m.front[..], b"\x02\x00\x00\x00{}");
        assert_eq!(
            MPing::from_message(&m).unwrap().payload.as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn data_segment_is_kept_without_copying() {
        let data = Bytes::from(vec![7u8; 4096]);
        let m = MPing {
            payload: None,
            data: data.clone(),
        }
        .to_message(PACIFIC_ALL);
        assert_eq!(m.data.as_ptr(), data.as_ptr());
        let back = MPing::from_message(&m).unwrap();
        assert_eq!(back.data.as_ptr(), data.as_ptr());
    }

    #[test]
    fn golden_client_ping_is_empty() {
        let pings = golden::of_type("v1-ping-0-c2s.bin", MsgType::PING);
        assert_eq!(pings.len(), 1);
        let m = &pings[0];
        assert_eq!((m.header.version, m.header.compat_version), (1, 1));
        assert_eq!(MPing::from_message(m).unwrap(), MPing::new());
        assert_eq!(MPing::new().encode_payload(PACIFIC_ALL).front, m.front);
    }

    #[test]
    fn golden_mon_reply_carries_json_and_reencodes_identically() {
        let replies = golden::of_type("v1-ping-0-s2c.bin", MsgType::PING);
        assert_eq!(replies.len(), 1);
        let m = &replies[0];
        // The mon pre-fills the payload, so Message::encode leaves compat at 0 (docs §2.6).
        assert_eq!((m.header.version, m.header.compat_version), (1, 0));
        let ping = MPing::from_message(m).unwrap();
        let json = ping.payload.as_deref().unwrap();
        assert!(
            json.starts_with('{') && json.contains("\"health\""),
            "{json}"
        );
        assert_eq!(json.len() + 4, m.front.len());
        assert_eq!(ping.encode_payload(PACIFIC_ALL).front, m.front);
    }

    #[test]
    fn bad_fronts_are_errors() {
        let h = MessageHeader::new(MsgType::PING, 1, 1);
        let p = |front: &'static [u8]| Payload {
            front: Bytes::from_static(front),
            ..Payload::default()
        };
        assert_eq!(
            MPing::decode_payload(&h, p(b"\x05\x00\x00\x00ab")),
            Err(DecodeError::Truncated { what: "string" })
        );
        assert_eq!(
            MPing::decode_payload(&h, p(b"\x01\x00")),
            Err(DecodeError::Truncated { what: "u32" })
        );
        assert_eq!(
            MPing::decode_payload(&h, p(b"\x00\x00\x00\x00x")),
            Err(DecodeError::TrailingData { what: "MPing" })
        );
        assert_eq!(
            MPing::decode_payload(&h, p(b"\xff\xff\xff\xff")),
            Err(DecodeError::Truncated { what: "string" })
        );
    }

    #[test]
    fn newer_compat_is_refused() {
        let mut m = MPing::new().to_message(PACIFIC_ALL);
        m.header.compat_version = 2;
        assert!(matches!(
            MPing::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}

//! `MAuth` (type 17) and `MAuthReply` (type 18): authentication with a monitor over msgr v1,
//! plus the auth-none payloads that travel inside them and inside v1 authorizers.
//!
//! Follows Ceph Pacific:
//! - `src/messages/MAuth.h` (`encode_payload`/`decode_payload`): the `PaxosServiceMessage`
//!   prefix, `u32 protocol`, bufferlist `auth_payload`, `u32 monmap_epoch` (optional on
//!   decode: absent means 0);
//! - `src/messages/MAuthReply.h`: `u32 protocol, s32 result, u64 global_id,
//!   bufferlist result_bl, string result_msg`;
//! - `src/mon/MonClient.cc` (`MonConnection::authenticate`) and `src/mon/AuthMonitor.cc`
//!   (`prep_auth`) for the protocol-0 negotiation payload: `u8 struct_v = 1`, the supported
//!   methods, the `EntityName`, `u64 global_id` (docs §8.2);
//! - `src/common/entity_name.h` (`EntityName::encode`: `u32 type, string id`);
//! - `src/auth/none/AuthNoneProtocol.h` (`AuthNoneAuthorizer::build_authorizer`:
//!   `u8 1, EntityName, u64 global_id`, docs §3).
//!
//! Both messages have `Message` version 1; Ceph constructs them with compat 0, which
//! `Message::encode` turns into compat = version = 1 on the wire (seen in the captures).

use std::fmt;

use bytes::Bytes;

use super::types::PaxosHeader;
use super::{decode_front, encode_front, MessageHeader, MsgType, Payload, TypedMessage};
use crate::denc::{Decode, Encode, Reader, Writer};
use crate::entity::EntityType;
use crate::error::DecodeError;

/// `CEPH_AUTH_*`: authentication method codes (`src/include/ceph_fs.h`).
pub mod method {
    /// `CEPH_AUTH_UNKNOWN`: in an `MAuth`, "negotiate: here is what I support".
    pub const UNKNOWN: u32 = 0;
    /// `CEPH_AUTH_NONE`.
    pub const NONE: u32 = 1;
    /// `CEPH_AUTH_CEPHX`.
    pub const CEPHX: u32 = 2;
}

/// The `EntityName` auth uses (`client.admin`): a type and a free-form id.
///
/// Not to be confused with [`crate::entity::EntityName`] (`entity_name_t`, type + number),
/// which names a messenger endpoint.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AuthEntityName {
    /// The entity's type (`u32` on the wire).
    pub ty: EntityType,
    /// The id after the dot (`admin` in `client.admin`).
    pub id: String,
}

impl AuthEntityName {
    /// A name.
    pub fn new(ty: EntityType, id: impl Into<String>) -> Self {
        Self { ty, id: id.into() }
    }

    /// `client.<id>`.
    pub fn client(id: impl Into<String>) -> Self {
        Self::new(EntityType::CLIENT, id)
    }
}

impl fmt::Display for AuthEntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ty, self.id)
    }
}

impl Encode for AuthEntityName {
    fn encode(&self, w: &mut Writer) {
        w.u32(u32::from(self.ty.0));
        w.string(&self.id);
    }
}

impl Decode for AuthEntityName {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // Entity types are one byte everywhere else on the wire; a wider value is not a
        // type Ceph could have meant.
        let ty = u8::try_from(r.u32()?).map_err(|_| DecodeError::Invalid {
            what: "EntityName type",
        })?;
        Ok(Self {
            ty: EntityType(ty),
            id: r.string()?,
        })
    }
}

/// The `auth_payload` of an `MAuth` with protocol 0: the client's opening offer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthNegotiate {
    /// Methods the client supports, in preference order (`CEPH_AUTH_*`).
    pub supported: Vec<u32>,
    /// Who the client says it is.
    pub name: AuthEntityName,
    /// Its global id from an earlier session, or 0.
    pub global_id: u64,
}

impl AuthNegotiate {
    /// The only `struct_v` Ceph writes here.
    const STRUCT_V: u8 = 1;

    /// Encodes the payload bytes.
    pub fn to_bytes(&self) -> Bytes {
        encode_front(0, |w| self.encode(w))
    }

    /// Decodes payload bytes, rejecting leftovers.
    pub fn from_bytes(b: &Bytes) -> Result<Self, DecodeError> {
        decode_front(b.clone(), "auth negotiation payload", Self::decode)
    }
}

impl Encode for AuthNegotiate {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::STRUCT_V);
        w.put(&self.supported);
        w.put(&self.name);
        w.u64(self.global_id);
    }
}

impl Decode for AuthNegotiate {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        // AuthMonitor::prep_auth reads and ignores struct_v; so do we.
        let _struct_v = r.u8()?;
        Ok(Self {
            supported: r.vec()?,
            name: r.decode()?,
            global_id: r.u64()?,
        })
    }
}

/// The auth-none authorizer a v1 client sends in `ceph_msg_connect` to an OSD/MDS/MGR
/// (`AuthNoneAuthorizer::build_authorizer`): `u8 1`, `EntityName`, `u64 global_id`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthNoneAuthorizer {
    /// Who the client is.
    pub name: AuthEntityName,
    /// The global id the monitor assigned (`MAuthReply::global_id`).
    pub global_id: u64,
}

impl AuthNoneAuthorizer {
    /// `AUTH_MODE_AUTHORIZER`, the leading byte.
    const MODE_AUTHORIZER: u8 = 1;

    /// The authorizer bytes (docs §3: 22 bytes for `client.admin`).
    pub fn to_bytes(&self) -> Bytes {
        encode_front(0, |w| {
            w.u8(Self::MODE_AUTHORIZER);
            w.put(&self.name);
            w.u64(self.global_id);
        })
    }

    /// Decodes authorizer bytes. Like `AuthNoneAuthorizeHandler`, it accepts any leading
    /// mode byte and ignores bytes after the global id.
    pub fn from_bytes(b: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b.clone());
        let _mode = r.u8()?;
        Ok(Self {
            name: r.decode()?,
            global_id: r.u64()?,
        })
    }
}

/// `MAuth`: a client's authentication request to a monitor.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MAuth {
    /// The `PaxosServiceMessage` prefix.
    pub paxos: PaxosHeader,
    /// The method this payload is for; [`method::UNKNOWN`] (0) to negotiate.
    pub protocol: u32,
    /// Method-specific bytes ([`AuthNegotiate`] when `protocol` is 0).
    pub auth_payload: Bytes,
    /// The epoch of the client's monmap; 0 asks the monitor to send its current map.
    pub monmap_epoch: u32,
}

impl MAuth {
    /// The opening request: negotiate, offering `supported` methods.
    pub fn negotiate(
        supported: Vec<u32>,
        name: AuthEntityName,
        global_id: u64,
        monmap_epoch: u32,
    ) -> Self {
        let payload = AuthNegotiate {
            supported,
            name,
            global_id,
        };
        Self {
            paxos: PaxosHeader::default(),
            protocol: method::UNKNOWN,
            auth_payload: payload.to_bytes(),
            monmap_epoch,
        }
    }

    /// The opening request of an auth-none client that has no global id or monmap yet:
    /// offers only `CEPH_AUTH_NONE` (docs §8.2).
    pub fn auth_none_request(name: AuthEntityName) -> Self {
        Self::negotiate(vec![method::NONE], name, 0, 0)
    }

    /// Decodes [`Self::auth_payload`] as a negotiation offer (valid when `protocol` is 0).
    pub fn negotiation(&self) -> Result<AuthNegotiate, DecodeError> {
        AuthNegotiate::from_bytes(&self.auth_payload)
    }
}

impl TypedMessage for MAuth {
    const TYPE: MsgType = MsgType::AUTH;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.put(&self.paxos);
            w.u32(self.protocol);
            w.bufferlist(&self.auth_payload);
            w.u32(self.monmap_epoch);
        });
        Payload {
            front,
            ..Payload::default()
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MAuth", |r| {
            let paxos = r.decode()?;
            let protocol = r.u32()?;
            let auth_payload = r.bufferlist()?;
            // Very old clients stop here; Ceph then assumes epoch 0.
            let monmap_epoch = if r.remaining() == 0 { 0 } else { r.u32()? };
            Ok(Self {
                paxos,
                protocol,
                auth_payload,
                monmap_epoch,
            })
        })
    }
}

/// `MAuthReply`: the monitor's answer to an [`MAuth`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MAuthReply {
    /// The method the monitor chose (or continues with).
    pub protocol: u32,
    /// 0 on success, a negative errno on failure (e.g. -95 `EOPNOTSUPP`).
    pub result: i32,
    /// The global id assigned to the client (0 if meaningless).
    pub global_id: u64,
    /// Method-specific bytes (empty for auth none).
    pub result_bl: Bytes,
    /// A human-readable message (usually empty).
    pub result_msg: String,
}

impl TypedMessage for MAuthReply {
    const TYPE: MsgType = MsgType::AUTH_REPLY;
    const HEAD_VERSION: u16 = 1;
    const COMPAT_VERSION: u16 = 1;

    fn encode_payload(&self, features: u64) -> Payload {
        let front = encode_front(features, |w| {
            w.u32(self.protocol);
            w.i32(self.result);
            w.u64(self.global_id);
            w.bufferlist(&self.result_bl);
            w.string(&self.result_msg);
        });
        Payload {
            front,
            ..Payload::default()
        }
    }

    fn decode_payload(_header: &MessageHeader, payload: Payload) -> Result<Self, DecodeError> {
        decode_front(payload.front, "MAuthReply", |r| {
            Ok(Self {
                protocol: r.u32()?,
                result: r.i32()?,
                global_id: r.u64()?,
                result_bl: r.bufferlist()?,
                result_msg: r.string()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::PACIFIC_ALL;
    use crate::msg::golden;

    /// docs §8.2: the 30-byte negotiation payload for client.admin.
    const ADMIN_PAYLOAD: &[u8] = &[
        0x01, // struct_v
        0x01, 0, 0, 0, 0x01, 0, 0, 0, // vector<u32> [CEPH_AUTH_NONE]
        0x08, 0, 0, 0, 0x05, 0, 0, 0, b'a', b'd', b'm', b'i', b'n', // EntityName client.admin
        0, 0, 0, 0, 0, 0, 0, 0, // global_id
    ];

    fn front(f: &'static [u8]) -> Payload {
        Payload {
            front: Bytes::from_static(f),
            ..Payload::default()
        }
    }

    #[test]
    fn auth_none_request_matches_docs_bytes() {
        let m = MAuth::auth_none_request(AuthEntityName::client("admin"));
        assert_eq!(&m.auth_payload[..], ADMIN_PAYLOAD);
        let msg = m.to_message(PACIFIC_ALL);
        assert_eq!(
            (msg.header.ty, msg.header.version, msg.header.compat_version),
            (MsgType::AUTH, 1, 1)
        );
        let mut want = vec![0u8; 8];
        want.extend_from_slice(&[0xff, 0xff]);
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&[0; 4]); // protocol 0
        want.extend_from_slice(&[30, 0, 0, 0]);
        want.extend_from_slice(ADMIN_PAYLOAD);
        want.extend_from_slice(&[0; 4]); // monmap_epoch
        assert_eq!(&msg.front[..], &want[..]);
        let back = MAuth::from_message(&msg).unwrap();
        assert_eq!(back, m);
        let neg = back.negotiation().unwrap();
        assert_eq!(neg.supported, vec![method::NONE]);
        assert_eq!(neg.name.to_string(), "client.admin");
        assert_eq!(neg.global_id, 0);
    }

    #[test]
    fn golden_mauth_from_ceph_cli_reencodes_identically() {
        // `ceph -s` as client.admin, and `ceph ping`, which sends an empty type-0 name.
        for (file, name) in [
            ("v1-status-0-c2s.bin", "client.admin"),
            ("v1-ping-0-c2s.bin", "type0."),
        ] {
            let msgs = golden::of_type(file, MsgType::AUTH);
            assert_eq!(msgs.len(), 1, "{file}");
            let m = MAuth::from_message(&msgs[0]).unwrap();
            assert_eq!(m.paxos, PaxosHeader::default());
            assert_eq!((m.protocol, m.monmap_epoch), (0, 0));
            let neg = m.negotiation().unwrap();
            assert_eq!(neg.name.to_string(), name, "{file}");
            assert_eq!(neg.supported, vec![method::NONE]);
            assert_eq!(neg.to_bytes(), m.auth_payload);
            assert_eq!(m.encode_payload(PACIFIC_ALL).front, msgs[0].front, "{file}");
        }
        // The real client.admin request is exactly what our constructor builds.
        let real = &golden::of_type("v1-status-0-c2s.bin", MsgType::AUTH)[0];
        let ours =
            MAuth::auth_none_request(AuthEntityName::client("admin")).to_message(PACIFIC_ALL);
        assert_eq!(ours.front, real.front);
        assert_eq!(
            (ours.header.version, ours.header.compat_version),
            (real.header.version, real.header.compat_version)
        );
    }

    #[test]
    fn golden_mauth_reply() {
        for file in ["v1-ping-0-s2c.bin", "v1-status-1-s2c.bin"] {
            let msgs = golden::of_type(file, MsgType::AUTH_REPLY);
            assert_eq!(msgs.len(), 1);
            let r = MAuthReply::from_message(&msgs[0]).unwrap();
            assert_eq!(
                r,
                MAuthReply {
                    protocol: method::NONE,
                    result: 0,
                    global_id: r.global_id,
                    result_bl: Bytes::new(),
                    result_msg: String::new()
                }
            );
            assert!(r.global_id >= 4096, "{}", r.global_id);
            assert_eq!(r.encode_payload(PACIFIC_ALL).front, msgs[0].front);
        }
    }

    #[test]
    fn mauth_without_epoch_decodes_as_zero() {
        // An 18-byte paxos prefix, protocol 1, empty payload, no epoch.
        let mut f = vec![0u8; 8];
        f.extend_from_slice(&[0xff, 0xff]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let p = Payload {
            front: Bytes::from(f),
            ..Payload::default()
        };
        let m = MAuth::decode_payload(&MessageHeader::new(MsgType::AUTH, 1, 1), p.clone()).unwrap();
        assert_eq!(
            (m.protocol, m.monmap_epoch, m.auth_payload.len()),
            (1, 0, 0)
        );
    }

    #[test]
    fn truncated_and_hostile_inputs_are_errors() {
        let full = MAuth::auth_none_request(AuthEntityName::client("admin"))
            .to_message(PACIFIC_ALL)
            .front;
        let h = MessageHeader::new(MsgType::AUTH, 1, 1);
        for cut in [0, 5, 17, 21, 25, 40] {
            let p = Payload {
                front: full.slice(..cut),
                ..Payload::default()
            };
            assert!(MAuth::decode_payload(&h, p.clone()).is_err(), "cut {cut}");
        }
        // A cut inside the epoch is an error too (only a fully absent epoch is allowed).
        let p = Payload {
            front: full.slice(..full.len() - 2),
            ..Payload::default()
        };
        assert!(MAuth::decode_payload(&h, p.clone()).is_err());
        // A bufferlist claiming 4 GiB.
        let mut f = full.to_vec();
        f[22..26].copy_from_slice(&[0xff; 4]);
        let p = Payload {
            front: Bytes::from(f),
            ..Payload::default()
        };
        assert_eq!(
            MAuth::decode_payload(&h, p.clone()),
            Err(DecodeError::Truncated { what: "bufferlist" })
        );
        // A supported-methods vector claiming 4 billion entries.
        let mut neg = ADMIN_PAYLOAD.to_vec();
        neg[1..5].copy_from_slice(&[0xff; 4]);
        assert_eq!(
            AuthNegotiate::from_bytes(&Bytes::from(neg)),
            Err(DecodeError::Truncated { what: "container" })
        );
        // An EntityName type that does not fit a byte.
        let mut neg = ADMIN_PAYLOAD.to_vec();
        neg[10] = 1;
        assert_eq!(
            AuthNegotiate::from_bytes(&Bytes::from(neg)),
            Err(DecodeError::Invalid {
                what: "EntityName type"
            })
        );
        // MAuthReply cut anywhere.
        let reply = MAuthReply {
            protocol: 1,
            result: 0,
            global_id: 4097,
            result_bl: Bytes::from_static(b"x"),
            result_msg: "ok".into(),
        };
        let f = reply.encode_payload(0).front;
        let rh = MessageHeader::new(MsgType::AUTH_REPLY, 1, 1);
        for cut in 0..f.len() {
            let p = Payload {
                front: f.slice(..cut),
                ..Payload::default()
            };
            assert!(
                MAuthReply::decode_payload(&rh, p.clone()).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(
            MAuthReply::decode_payload(
                &rh,
                Payload {
                    front: f,
                    ..Payload::default()
                }
            )
            .unwrap(),
            reply
        );
        assert!(matches!(
            MAuthReply::decode_payload(&rh, front(b"\x01")),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn newer_compat_is_refused() {
        let mut m = MAuthReply {
            protocol: 1,
            result: 0,
            global_id: 1,
            result_bl: Bytes::new(),
            result_msg: String::new(),
        }
        .to_message(PACIFIC_ALL);
        m.header.compat_version = 2;
        assert!(matches!(
            MAuthReply::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut m = MAuth::auth_none_request(AuthEntityName::client("a")).to_message(PACIFIC_ALL);
        m.header.compat_version = 9;
        assert!(matches!(
            MAuth::from_message(&m),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn auth_none_authorizer_matches_docs_bytes() {
        let a = AuthNoneAuthorizer {
            name: AuthEntityName::client("admin"),
            global_id: 4097,
        };
        let b = a.to_bytes();
        assert_eq!(
            &b[..],
            &[
                1, 8, 0, 0, 0, 5, 0, 0, 0, b'a', b'd', b'm', b'i', b'n', 0x01, 0x10, 0, 0, 0, 0, 0,
                0
            ]
        );
        assert_eq!(AuthNoneAuthorizer::from_bytes(&b).unwrap(), a);
        assert!(AuthNoneAuthorizer::from_bytes(&b.slice(..10)).is_err());
    }
}

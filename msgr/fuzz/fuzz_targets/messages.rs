//! Every typed-message decoder (and the payload decoders they lean on) fed arbitrary bytes.
//! Whatever decodes must re-encode to something that decodes to the same value.
//! Seeds: every message in the real captures (`msgr/fuzz/seed-corpus.py`).
//!
//! Input layout (keep in sync with `KINDS` in `seed-corpus.py`):
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | decoder: index into [`Kind`] (modulo the number of kinds) |
//! | 1 | header `version` |
//! | 2 | header `compat_version` |
//! | 3..5 | le16 data length `d`, taken modulo `rest.len() + 1` (data-carrying messages only) |
//! | 5.. | `rest`: the front segment, whose last `d` bytes are split off as the data segment |
//!
//! Round-trip checks, `decode(encode(decode(x))) == decode(x)`, encoding for a Pacific peer
//! (`PACIFIC_ALL`). Where an encoding is lossy on purpose, only what it keeps is compared:
//! a monmap for pre-Nautilus peers (legacy forms drop ranks, weights, crush locations...),
//! an address in the legacy 136-byte form (no type field), an addrvec for peers without
//! `MSG_ADDR2` (only its v1 address survives).
#![no_main]

use std::fmt::Debug;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use msgr::denc::{Decode, Encode, Reader, Writer};
use msgr::entity::{AddrType, EntityAddr, EntityAddrVec, EntityName, EntityType};
use msgr::features::{self, PACIFIC_ALL};
use msgr::msg::osd_types::StatResult;
use msgr::msg::{
    AuthNegotiate, AuthNoneAuthorizer, MAuth, MAuthReply, MCommand, MCommandReply, MMonGetVersion,
    MMonGetVersionReply, MMonMap, MMonSubscribe, MMonSubscribeAck, MOSDOp, MOSDOpReply, MPing,
    Message, MessageHeader, MonMap, MsgType, TypedMessage,
};

/// The decoders, in selector order. Append only: the seed corpus names them by index.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ping,
    Auth,
    AuthReply,
    MonMapMsg,
    MonSubscribe,
    MonSubscribeAck,
    MonGetVersion,
    MonGetVersionReply,
    OsdOp,
    OsdOpReply,
    Command,
    CommandReply,
    MonMapRaw,
    Addr,
    AddrVec,
    AuthNegotiatePayload,
    AuthNoneAuthorizerPayload,
    StatResultPayload,
}

const KINDS: [Kind; 18] = [
    Kind::Ping,
    Kind::Auth,
    Kind::AuthReply,
    Kind::MonMapMsg,
    Kind::MonSubscribe,
    Kind::MonSubscribeAck,
    Kind::MonGetVersion,
    Kind::MonGetVersionReply,
    Kind::OsdOp,
    Kind::OsdOpReply,
    Kind::Command,
    Kind::CommandReply,
    Kind::MonMapRaw,
    Kind::Addr,
    Kind::AddrVec,
    Kind::AuthNegotiatePayload,
    Kind::AuthNoneAuthorizerPayload,
    Kind::StatResultPayload,
];

/// Feature sets that select the older encodings (monmap v1, v2, v5; legacy addresses).
const OLD_PEERS: [u64; 5] = [
    0,
    features::MONNAMES,
    features::MONNAMES | features::MONENC,
    features::MONNAMES | features::MONENC | features::MSG_ADDR2,
    PACIFIC_ALL & !features::MSG_ADDR2,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let kind = KINDS[usize::from(data[0]) % KINDS.len()];
    let version = u16::from(data[1]);
    let compat = u16::from(data[2]);
    let dlen = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let rest = Bytes::copy_from_slice(&data[5..]);
    let split = |ty: MsgType, with_data: bool| {
        let d = if with_data {
            dlen % (rest.len() + 1)
        } else {
            0
        };
        let at = rest.len() - d;
        let mut h = MessageHeader::new(ty, version, compat);
        h.tid = 0x0102_0304_0506_0708;
        h.src = EntityName::new(EntityType::CLIENT, 4242);
        Message::new(h, rest.slice(..at), Bytes::new(), rest.slice(at..))
    };
    match kind {
        Kind::Ping => {
            typed::<MPing>(&split(MsgType::PING, true));
        }
        Kind::Auth => {
            if let Some(m) = typed::<MAuth>(&split(MsgType::AUTH, false)) {
                if let Ok(n) = m.negotiation() {
                    negotiate(&n);
                }
            }
        }
        Kind::AuthReply => {
            typed::<MAuthReply>(&split(MsgType::AUTH_REPLY, false));
        }
        Kind::MonMapMsg => {
            let msg = split(MsgType::MON_MAP, false);
            if let Some(mm) = typed::<MMonMap>(&msg) {
                let map = mm.decode_monmap().ok();
                if let Some(map) = &map {
                    monmap(map);
                }
                // What an old peer gets: the map re-encoded for it (or passed through).
                for f in OLD_PEERS {
                    let p = mm.encode_payload(f);
                    let mut m = msg.clone();
                    m.front = p.front;
                    let old = MMonMap::from_message(&m).expect("MMonMap for an old peer decodes");
                    if map.is_some() {
                        old.decode_monmap()
                            .expect("monmap re-encoded for an old peer decodes");
                    }
                }
            }
        }
        Kind::MonSubscribe => {
            typed::<MMonSubscribe>(&split(MsgType::MON_SUBSCRIBE, false));
        }
        Kind::MonSubscribeAck => {
            typed::<MMonSubscribeAck>(&split(MsgType::MON_SUBSCRIBE_ACK, false));
        }
        Kind::MonGetVersion => {
            typed::<MMonGetVersion>(&split(MsgType::MON_GET_VERSION, false));
        }
        Kind::MonGetVersionReply => {
            typed::<MMonGetVersionReply>(&split(MsgType::MON_GET_VERSION_REPLY, false));
        }
        Kind::OsdOp => {
            if let Some(op) = typed::<MOSDOp>(&split(MsgType::OSD_OP, true)) {
                // The helpers a server would call on it must not panic either.
                for o in &op.ops {
                    let _ = o.extent();
                    let _ = o.op.name();
                }
                let _ = op.data();
            }
        }
        Kind::OsdOpReply => {
            if let Some(r) = typed::<MOSDOpReply>(&split(MsgType::OSD_OPREPLY, true)) {
                for o in &r.ops {
                    if let Ok(s) = StatResult::from_bytes(&o.data) {
                        assert_eq!(StatResult::from_bytes(&s.to_bytes()), Ok(s));
                    }
                }
            }
        }
        Kind::Command => {
            typed::<MCommand>(&split(MsgType::COMMAND, true));
        }
        Kind::CommandReply => {
            typed::<MCommandReply>(&split(MsgType::COMMAND_REPLY, true));
        }
        Kind::MonMapRaw => {
            if let Ok(map) = MonMap::from_bytes(&rest) {
                monmap(&map);
            }
        }
        Kind::Addr => {
            if let Ok(a) = Reader::new(rest).decode::<EntityAddr>() {
                addr(&a);
            }
        }
        Kind::AddrVec => {
            if let Ok(v) = Reader::new(rest).decode::<EntityAddrVec>() {
                addrvec(&v);
            }
        }
        Kind::AuthNegotiatePayload => {
            if let Ok(n) = AuthNegotiate::from_bytes(&rest) {
                negotiate(&n);
            }
        }
        Kind::AuthNoneAuthorizerPayload => {
            if let Ok(a) = AuthNoneAuthorizer::from_bytes(&rest) {
                let b =
                    AuthNoneAuthorizer::from_bytes(&a.to_bytes()).expect("authorizer re-decodes");
                assert_eq!(a, b);
            }
        }
        Kind::StatResultPayload => {
            if let Ok(s) = StatResult::from_bytes(&rest) {
                assert_eq!(StatResult::from_bytes(&s.to_bytes()), Ok(s));
            }
        }
    }
});

/// Decodes `m` as a `T`; if that works, checks that `T`'s own message decodes to the same.
fn typed<T: TypedMessage + PartialEq + Debug>(m: &Message) -> Option<T> {
    let a = T::from_message(m).ok()?;
    let again = a.to_message(PACIFIC_ALL);
    assert_eq!(
        (
            again.header.ty,
            again.header.version,
            again.header.compat_version
        ),
        (T::TYPE, T::HEAD_VERSION, T::COMPAT_VERSION)
    );
    let b = T::from_message(&again).unwrap_or_else(|e| {
        panic!(
            "{} re-encoded from {a:?} does not decode: {e:?}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(a, b, "{} round trip", std::any::type_name::<T>());
    Some(a)
}

fn encode_for<T: Encode>(v: &T, features: u64) -> Bytes {
    let mut w = Writer::new(features);
    w.put(v);
    w.finish()
}

fn decode_all<T: Decode>(b: Bytes) -> T {
    let mut r = Reader::new(b);
    let v = r
        .decode::<T>()
        .unwrap_or_else(|e| panic!("re-encoded value does not decode: {e:?}"));
    assert_eq!(r.remaining(), 0, "re-encoded value has trailing bytes");
    v
}

fn negotiate(n: &AuthNegotiate) {
    let b = AuthNegotiate::from_bytes(&n.to_bytes()).expect("negotiation payload re-decodes");
    assert_eq!(*n, b);
}

/// Pacific peers: exact. Older peers: the encoding decodes and keeps what its form has.
fn monmap(a: &MonMap) {
    let b = MonMap::from_bytes(&a.to_bytes(PACIFIC_ALL)).expect("monmap re-decodes");
    assert_eq!(*a, b, "monmap round trip");
    for f in OLD_PEERS {
        let o = MonMap::from_bytes(&a.to_bytes(f))
            .unwrap_or_else(|e| panic!("monmap for features {f:#x} does not decode: {e:?}"));
        assert_eq!(
            (o.fsid, o.epoch, o.last_changed, o.created),
            (a.fsid, a.epoch, a.last_changed, a.created),
            "features {f:#x}"
        );
        if features::has(f, features::MONNAMES) {
            assert!(o.mon_info.keys().eq(a.mon_info.keys()), "features {f:#x}");
        } else {
            // The v1 form is a vector of monitors in rank order.
            assert_eq!(o.mon_info.len(), a.ranks.len(), "features {f:#x}");
        }
        if features::has(f, features::MONENC) {
            assert_eq!(
                (o.persistent_features, o.optional_features),
                (a.persistent_features, a.optional_features)
            );
            for (name, info) in &a.mon_info {
                assert_eq!(o.mon_info[name].name, info.name);
                assert_eq!(o.mon_info[name].priority, info.priority);
            }
        }
    }
}

/// New form: exact. Legacy form: no type field, so the type becomes v1 (or none when
/// there is no socket address); nonce and address survive.
fn addr(a: &EntityAddr) {
    assert_eq!(
        decode_all::<EntityAddr>(encode_for(a, PACIFIC_ALL)),
        *a,
        "entity_addr_t"
    );
    let legacy = decode_all::<EntityAddr>(encode_for(a, 0));
    assert_eq!(legacy, as_v1(a), "legacy entity_addr_t");
    assert_eq!(EntityAddr::from_legacy(&a.to_legacy()), Ok(as_v1(a)));
}

fn as_v1(a: &EntityAddr) -> EntityAddr {
    EntityAddr {
        ty: if a.addr.is_some() {
            AddrType::LEGACY
        } else {
            AddrType::NONE
        },
        ..*a
    }
}

fn addrvec(v: &EntityAddrVec) {
    assert_eq!(
        decode_all::<EntityAddrVec>(encode_for(v, PACIFIC_ALL)),
        *v,
        "entity_addrvec_t"
    );
    for a in &v.0 {
        addr(a);
    }
    // Without MSG_ADDR2 only the v1 address (or a blank one) goes on the wire.
    let legacy = decode_all::<EntityAddrVec>(encode_for(v, 0));
    let want = v.legacy_addr().map_or_else(EntityAddr::none, |a| as_v1(&a));
    assert_eq!(legacy.0, vec![want], "legacy entity_addrvec_t");
}

//! The client's reaction to every connect-reply tag (docs §2.8, "Client side"), and to a
//! bad server hello. Each test drives one client engine by hand: it plays the server's
//! bytes and reads what the client writes back.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use msgr::entity::{EntityAddr, EntityName, EntityType};
use msgr::error::DecodeError;
use msgr::features;
use msgr::msg::{Message, MessageHeader, MsgType};
use msgr::proto::{
    Config, Connection, Event, Fault, PeerIncompatible, PeerMisbehaved, Phase, Policy,
};
use msgr::time::Instant;
use msgr::wire::banner::{ServerHello, BANNER};
use msgr::wire::{Connect, ConnectReplyRepr, ConnectRepr, Tag};

const T0: Instant = Instant::from_nanos(5_000_000_000);

fn server_addr() -> EntityAddr {
    "v1:127.0.0.1:6800/77".parse().unwrap()
}

struct Client {
    c: Connection,
    now: Instant,
    rx: BytesMut,
}

impl Client {
    /// A client that has dialed, read the server hello and sent its connect.
    fn at_reply(policy: Policy) -> (Self, ConnectRepr) {
        let mut cfg = Config::new(
            EntityName::new(EntityType::CLIENT, 4100),
            "v1:127.0.0.1:0/42".parse().unwrap(),
        );
        cfg.policies.default = policy;
        let mut c = Connection::connect(Arc::new(cfg), T0, server_addr(), EntityType::OSD, 9);
        assert!(matches!(c.poll_event(), Some(Event::Dial)));
        c.handle_connected(T0);
        assert_eq!(c.poll_transmit(T0).unwrap(), Bytes::from_static(BANNER));
        let mut me = Self {
            c,
            now: T0,
            rx: BytesMut::new(),
        };
        let hello = ServerHello {
            server_addr: server_addr(),
            client_addr: "v1:127.0.0.1:33000/0".parse().unwrap(),
        };
        me.feed(&hello.emit()).unwrap();
        let out = me.written();
        assert_eq!(out.len(), 136 + 33, "my address then the connect");
        let connect = ConnectRepr::parse(&Connect::new_checked(&out[136..]).unwrap()).unwrap();
        (me, connect)
    }

    fn feed(&mut self, b: &[u8]) -> Result<(), Fault> {
        self.rx.extend_from_slice(b);
        self.c.handle_input(self.now, &mut self.rx).map(drop)
    }

    fn written(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = self.c.poll_transmit(self.now) {
            v.extend_from_slice(&b);
        }
        v
    }

    fn events(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.c.poll_event())
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn reply(&mut self, tag: Tag, global_seq: u32, connect_seq: u32) -> Result<(), Fault> {
        let r = ConnectReplyRepr {
            tag,
            features: features::PACIFIC_ALL,
            global_seq,
            connect_seq,
            protocol_version: 24,
            authorizer_len: 0,
            flags: 0,
        };
        self.feed(&r.emit())
    }

    fn resent_connect(&mut self) -> ConnectRepr {
        let out = self.written();
        assert_eq!(
            out.len(),
            33,
            "only the connect is resent, on the same transport"
        );
        ConnectRepr::parse(&Connect::new_checked(&out[..]).unwrap()).unwrap()
    }
}

fn ping(tag: u8) -> Message {
    Message::new(
        MessageHeader::new(MsgType::PING, 1, 1),
        Bytes::copy_from_slice(&[tag]),
        Bytes::new(),
        Bytes::new(),
    )
}

#[test]
fn first_connect_is_what_ceph_sends() {
    let (_, c) = Client::at_reply(Policy::lossy_client(0));
    assert_eq!(c.features, features::PACIFIC_ALL);
    assert_eq!(c.host_type, EntityType::CLIENT);
    assert_eq!(
        (c.global_seq, c.connect_seq, c.protocol_version),
        (1, 0, 24)
    );
    assert_eq!(
        (c.authorizer_protocol, c.authorizer_len, c.flags),
        (0, 0, 1),
        "lossy flag, no authorizer"
    );
}

#[test]
fn seq_opens_after_the_in_seq_exchange() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    cl.reply(Tag::Seq, 77, 1).unwrap();
    assert_eq!(
        cl.c.phase(),
        Phase::Connecting,
        "waiting for the server's acked seq"
    );
    cl.feed(&0u64.to_le_bytes()).unwrap();
    assert_eq!(cl.written(), 0u64.to_le_bytes().to_vec(), "our in_seq");
    assert!(cl.c.is_open());
    assert_eq!(cl.events(), vec!["Connected"]);
    assert_eq!((cl.c.peer_global_seq(), cl.c.connect_seq()), (77, 1));
    assert_eq!(cl.c.features(), features::PACIFIC_ALL);
}

#[test]
fn ready_opens_at_once_and_adopts_the_lossy_flag() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let r = ConnectReplyRepr {
        tag: Tag::Ready,
        features: features::PACIFIC_ALL & !features::MSG_AUTH,
        global_seq: 3,
        connect_seq: 1,
        protocol_version: 24,
        authorizer_len: 0,
        flags: 1,
    };
    cl.feed(&r.emit()).unwrap();
    assert!(cl.c.is_open());
    assert!(cl.c.policy().lossy, "the server decides lossiness");
    assert_eq!(
        cl.c.features() & features::MSG_AUTH,
        0,
        "features are the intersection"
    );
}

#[test]
fn features_reply_faults() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::Features, 0, 0).unwrap_err();
    assert!(matches!(
        e,
        Fault::Incompatible(PeerIncompatible::MissingFeatures { .. })
    ));
    assert_eq!(cl.c.phase(), Phase::Backoff);
    assert_eq!(
        cl.c.poll_timeout(),
        Some(T0 + Duration::from_millis(200)),
        "ms_initial_backoff"
    );
}

#[test]
fn badprotover_faults() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::BadProtoVer, 0, 0).unwrap_err();
    assert_eq!(
        e,
        Fault::Incompatible(PeerIncompatible::ProtocolVersion {
            ours: 24,
            theirs: 24
        })
    );
}

#[test]
fn badauthorizer_faults() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    assert_eq!(
        cl.reply(Tag::BadAuthorizer, 0, 0).unwrap_err(),
        Fault::Incompatible(PeerIncompatible::AuthorizerRejected)
    );
}

#[test]
fn challenge_authorizer_is_unsupported() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    assert_eq!(
        cl.reply(Tag::ChallengeAuthorizer, 0, 0).unwrap_err(),
        Fault::Incompatible(PeerIncompatible::ChallengeUnsupported)
    );
}

#[test]
fn resetsession_resets_and_retries_with_cseq_0() {
    let (mut cl, first) = Client::at_reply(Policy::lossless_client(0));
    let now = cl.now;
    cl.c.send_message(now, ping(1)).unwrap();
    cl.reply(Tag::ResetSession, 0, 0).unwrap();
    assert_eq!(cl.events(), vec!["RemoteReset"]);
    assert_eq!(cl.c.queued(), 0, "queued messages are discarded");
    let again = cl.resent_connect();
    assert_eq!((again.connect_seq, again.global_seq), (0, first.global_seq));
}

#[test]
fn retry_global_moves_past_the_servers_value() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    cl.reply(Tag::RetryGlobal, 500, 0).unwrap();
    assert_eq!(cl.resent_connect().global_seq, 501);
}

#[test]
fn retry_session_adopts_the_servers_connect_seq() {
    let (mut cl, first) = Client::at_reply(Policy::lossless_client(0));
    cl.reply(Tag::RetrySession, 0, 4).unwrap();
    let again = cl.resent_connect();
    assert_eq!((again.connect_seq, again.global_seq), (4, first.global_seq));
    // And the session then opens with cseq 5.
    cl.reply(Tag::Ready, 9, 5).unwrap();
    assert_eq!(cl.c.connect_seq(), 5);
}

#[test]
fn retry_session_that_does_not_increase_is_misbehaviour() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::RetrySession, 0, 0).unwrap_err();
    assert_eq!(
        e,
        Fault::Misbehaved(PeerMisbehaved::RetrySessionNotIncreasing { ours: 0, theirs: 0 })
    );
}

#[test]
fn wait_backs_off_the_maximum() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    assert_eq!(cl.reply(Tag::Wait, 0, 0).unwrap_err(), Fault::Wait);
    assert_eq!(cl.c.phase(), Phase::Backoff);
    assert_eq!(
        cl.c.poll_timeout(),
        Some(T0 + Duration::from_secs(15)),
        "ms_max_backoff"
    );
    // When it expires the client redials with a new global_seq.
    let t = T0 + Duration::from_secs(15);
    cl.c.handle_timeout(t).unwrap();
    assert_eq!(cl.events(), vec!["Dial"]);
}

#[test]
fn lossy_client_resets_on_a_failed_handshake() {
    let (mut cl, _) = Client::at_reply(Policy::lossy_client(0));
    cl.reply(Tag::Features, 0, 0).unwrap_err();
    assert!(cl.c.is_closed());
    assert_eq!(cl.events(), vec!["Reset"]);
}

#[test]
fn ready_with_wrong_connect_seq_is_misbehaviour() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::Ready, 1, 7).unwrap_err();
    assert_eq!(
        e,
        Fault::Misbehaved(PeerMisbehaved::ConnectSeqMismatch {
            expected: 1,
            theirs: 7
        })
    );
}

#[test]
fn stream_tags_are_not_replies() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::Msg, 1, 1).unwrap_err();
    assert_eq!(
        e,
        Fault::Misbehaved(PeerMisbehaved::UnexpectedReplyTag(Tag::Msg))
    );
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let e = cl.reply(Tag::Unknown(99), 1, 1).unwrap_err();
    assert_eq!(
        e,
        Fault::Misbehaved(PeerMisbehaved::UnexpectedReplyTag(Tag::Unknown(99)))
    );
}

#[test]
fn reply_lacking_required_features_faults() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(features::MSG_ADDR2));
    let r = ConnectReplyRepr {
        tag: Tag::Ready,
        features: 0,
        global_seq: 1,
        connect_seq: 1,
        protocol_version: 24,
        authorizer_len: 0,
        flags: 0,
    };
    let e = cl.feed(&r.emit()).unwrap_err();
    assert_eq!(
        e,
        Fault::Incompatible(PeerIncompatible::MissingFeatures {
            missing: features::MSG_ADDR2
        })
    );
}

#[test]
fn oversized_authorizer_reply_is_refused_before_buffering() {
    let (mut cl, _) = Client::at_reply(Policy::lossless_client(0));
    let r = ConnectReplyRepr {
        tag: Tag::Ready,
        features: 0,
        global_seq: 1,
        connect_seq: 1,
        protocol_version: 24,
        authorizer_len: 1 << 30,
        flags: 0,
    };
    let e = cl.feed(&r.emit()).unwrap_err();
    assert!(matches!(
        e,
        Fault::Decode(DecodeError::TooLarge {
            what: "authorizer reply",
            ..
        })
    ));
}

fn dialed() -> Connection {
    let cfg = Config::new(EntityName::new(EntityType::CLIENT, -1), EntityAddr::none());
    let mut c = Connection::connect(Arc::new(cfg), T0, server_addr(), EntityType::MON, 1);
    let _ = c.poll_event();
    c.handle_connected(T0);
    let _ = c.poll_transmit(T0);
    c
}

#[test]
fn bad_banner_and_wrong_server_address_fault() {
    let mut c = dialed();
    let mut hello = ServerHello {
        server_addr: server_addr(),
        client_addr: EntityAddr::none(),
    }
    .emit()
    .to_vec();
    hello[0] = b'x';
    let mut rx = BytesMut::from(&hello[..]);
    assert_eq!(
        c.handle_input(T0, &mut rx).unwrap_err(),
        Fault::Decode(DecodeError::BadBanner)
    );

    let mut c = dialed();
    let other: EntityAddr = "v1:127.0.0.1:6801/77".parse().unwrap();
    let hello = ServerHello {
        server_addr: other,
        client_addr: EntityAddr::none(),
    }
    .emit();
    let mut rx = BytesMut::from(&hello[..]);
    assert!(matches!(
        c.handle_input(T0, &mut rx).unwrap_err(),
        Fault::Misbehaved(PeerMisbehaved::AddressMismatch { .. })
    ));

    // A blank server IP with the right port and nonce is the same node (Ceph accepts it).
    let mut c = dialed();
    let blank: EntityAddr = "v1:0.0.0.0:6800/77".parse().unwrap();
    let hello = ServerHello {
        server_addr: blank,
        client_addr: EntityAddr::none(),
    }
    .emit();
    let mut rx = BytesMut::from(&hello[..]);
    c.handle_input(T0, &mut rx).unwrap();
}

#[test]
fn client_learns_its_address_from_the_server() {
    let mut c = dialed();
    let seen: EntityAddr = "v1:10.1.2.3:41000/0".parse().unwrap();
    let hello = ServerHello {
        server_addr: server_addr(),
        client_addr: seen,
    }
    .emit();
    let mut rx = BytesMut::from(&hello[..]);
    c.handle_input(T0, &mut rx).unwrap();
    let learned = c.my_addr();
    assert_eq!(learned.addr.unwrap().ip().to_string(), "10.1.2.3");
    assert_eq!(learned.port(), 0, "the port stays ours");
    assert!(matches!(c.poll_event(), Some(Event::AddrLearned(a)) if a == learned));
    let mut sent = Vec::new();
    while let Some(b) = c.poll_transmit(T0) {
        sent.extend_from_slice(&b);
    }
    assert_eq!(sent.len(), 136 + 33, "our address, then the connect");
    assert_eq!(EntityAddr::from_legacy(&sent[..136]).unwrap(), learned);
    // To a mon, a non-mon client sends no authorizer and protocol 15.
    let connect = ConnectRepr::parse(&Connect::new_checked(&sent[136..]).unwrap()).unwrap();
    assert_eq!((connect.protocol_version, connect.authorizer_len), (15, 0));
}

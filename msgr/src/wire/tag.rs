//! `CEPH_MSGR_TAG_*`: the one-byte tags of connect replies and of the message stream.

/// A v1 tag. Codes v1 does not define decode as [`Tag::Unknown`] so nothing is lost when
/// logging; the engine faults the connection on them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Tag {
    /// Connect reply: session open, no SEQ exchange.
    Ready,
    /// Connect reply: the server has no session; reset and reconnect.
    ResetSession,
    /// Connect reply: connection race lost by the incoming side; back off.
    Wait,
    /// Connect reply: retry with the given `connect_seq`.
    RetrySession,
    /// Connect reply: retry with a `global_seq` above the given one.
    RetryGlobal,
    /// Stream: the peer is closing.
    Close,
    /// Stream: a message follows.
    Msg,
    /// Stream: le64 seq, everything up to it was received.
    Ack,
    /// Stream: keepalive without timestamp.
    Keepalive,
    /// Connect reply: protocol version mismatch.
    BadProtoVer,
    /// Connect reply: authorizer rejected.
    BadAuthorizer,
    /// Connect reply: missing required features.
    Features,
    /// Connect reply: session open; a le64 in_seq exchange follows.
    Seq,
    /// Stream: keepalive with the sender's timestamp.
    Keepalive2,
    /// Stream: echo of a KEEPALIVE2 timestamp.
    Keepalive2Ack,
    /// Connect reply: cephx challenge.
    ChallengeAuthorizer,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for Tag {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::Ready,
            2 => Self::ResetSession,
            3 => Self::Wait,
            4 => Self::RetrySession,
            5 => Self::RetryGlobal,
            6 => Self::Close,
            7 => Self::Msg,
            8 => Self::Ack,
            9 => Self::Keepalive,
            10 => Self::BadProtoVer,
            11 => Self::BadAuthorizer,
            12 => Self::Features,
            13 => Self::Seq,
            14 => Self::Keepalive2,
            15 => Self::Keepalive2Ack,
            16 => Self::ChallengeAuthorizer,
            other => Self::Unknown(other),
        }
    }
}

impl From<Tag> for u8 {
    fn from(t: Tag) -> Self {
        match t {
            Tag::Ready => 1,
            Tag::ResetSession => 2,
            Tag::Wait => 3,
            Tag::RetrySession => 4,
            Tag::RetryGlobal => 5,
            Tag::Close => 6,
            Tag::Msg => 7,
            Tag::Ack => 8,
            Tag::Keepalive => 9,
            Tag::BadProtoVer => 10,
            Tag::BadAuthorizer => 11,
            Tag::Features => 12,
            Tag::Seq => 13,
            Tag::Keepalive2 => 14,
            Tag::Keepalive2Ack => 15,
            Tag::ChallengeAuthorizer => 16,
            Tag::Unknown(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tag;

    #[test]
    fn every_code_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Tag::from(v)), v);
        }
        assert_eq!(Tag::from(13), Tag::Seq);
        assert_eq!(Tag::from(0), Tag::Unknown(0));
        assert_eq!(Tag::from(17), Tag::Unknown(17));
    }
}

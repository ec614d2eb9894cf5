//! The open-session byte stream: what follows the handshake in both directions.
//!
//! Each item is a one-byte [`Tag`] and a tag-specific body (docs §2.5–2.6):
//!
//! | tag | body |
//! |---|---|
//! | `MSG` (7) | 53-byte header, front, middle, data, footer (21 or 13 bytes) |
//! | `ACK` (8) | le64 seq |
//! | `KEEPALIVE` (9) | nothing |
//! | `KEEPALIVE2` (14), `KEEPALIVE2_ACK` (15) | `ceph_timespec` (le32 sec, le32 nsec) |
//! | `CLOSE` (6) | nothing |
//!
//! Decoding is split so that the engine can apply throttles between seeing a message's
//! header and reading its body: [`peek`] parses the next item's head (verifying the header
//! CRC and the length limits) and says how many bytes the whole item takes; [`decode_msg`]
//! then turns a complete frame, handed over as one [`Bytes`], into a [`Message`] whose
//! segments are slices of that frame (no copy).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::footer::{FooterKind, FooterRepr, FLAG_COMPLETE, FLAG_NOCRC};
use super::header::{Header, HeaderRepr};
use super::tag::Tag;
use crate::crc::ceph_crc32c;
use crate::error::DecodeError;
use crate::msg::Message;
use crate::time::Instant;

/// Upper bounds on lengths a peer may announce. A frame above a limit faults the
/// connection before any of its body is buffered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Limits {
    /// Largest front segment accepted.
    pub max_front: u32,
    /// Largest middle segment accepted.
    pub max_middle: u32,
    /// Largest data segment accepted.
    pub max_data: u32,
    /// Largest authorizer (or authorizer reply) accepted in the handshake.
    pub max_authorizer: u32,
}

impl Default for Limits {
    /// 64 MiB front and middle (a mon command result is tens of KB; a full-cluster map can
    /// reach a few MB), 256 MiB data (above Ceph's 90 MB `osd_max_write_size`), 4 KiB
    /// authorizer (Ceph asserts the same bound on replies).
    fn default() -> Self {
        Self {
            max_front: 64 << 20,
            max_middle: 64 << 20,
            max_data: 256 << 20,
            max_authorizer: 4096,
        }
    }
}

/// How a connection frames messages once its features are known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameConfig {
    /// Footer size (from `MSG_AUTH`).
    pub footer: FooterKind,
    /// `ms_crc_header`: compute and check header, front and middle CRCs.
    pub crc_header: bool,
    /// `ms_crc_data`: compute and check the data CRC.
    pub crc_data: bool,
    /// Length limits.
    pub limits: Limits,
}

impl Default for FrameConfig {
    fn default() -> Self {
        Self {
            footer: FooterKind::New,
            crc_header: true,
            crc_data: true,
            limits: Limits::default(),
        }
    }
}

/// `ceph_timespec`: what KEEPALIVE2 carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Timespec {
    /// Seconds.
    pub sec: u32,
    /// Nanoseconds.
    pub nsec: u32,
}

impl Timespec {
    /// The stamp for a driver instant (its seconds wrap after 136 years of uptime).
    pub fn from_instant(t: Instant) -> Self {
        let n = t.as_nanos();
        Self {
            sec: (n / 1_000_000_000) as u32,
            nsec: (n % 1_000_000_000) as u32,
        }
    }

    /// The instant a stamp made by [`Timespec::from_instant`] stands for.
    pub fn to_instant(self) -> Instant {
        Instant::from_nanos(
            u64::from(self.sec) * 1_000_000_000 + u64::from(self.nsec.min(999_999_999)),
        )
    }

    fn parse(b: &[u8]) -> Self {
        Self {
            sec: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            nsec: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The head of the next stream item.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peek {
    /// A message; the whole frame (tag included) is `frame_len` bytes.
    Msg {
        /// Its header, CRC-checked.
        header: HeaderRepr,
        /// Bytes from the tag to the end of the footer.
        frame_len: usize,
    },
    /// An ack of everything up to `seq`.
    Ack(u64),
    /// A keepalive (no timestamp).
    Keepalive,
    /// A keepalive with the sender's stamp; answer with KEEPALIVE2_ACK.
    Keepalive2(Timespec),
    /// The echo of one of our KEEPALIVE2 stamps.
    Keepalive2Ack(Timespec),
    /// The peer is closing.
    Close,
}

impl Peek {
    /// Bytes the item takes in the stream, tag included.
    pub fn frame_len(&self) -> usize {
        match self {
            Self::Msg { frame_len, .. } => *frame_len,
            Self::Ack(_) => 9,
            Self::Keepalive | Self::Close => 1,
            Self::Keepalive2(_) | Self::Keepalive2Ack(_) => 9,
        }
    }
}

fn check_limit(what: &'static str, len: u32, limit: u32) -> Result<(), DecodeError> {
    if len > limit {
        return Err(DecodeError::TooLarge {
            what,
            len: u64::from(len),
            limit: u64::from(limit),
        });
    }
    Ok(())
}

/// Parses the head of the next item in `buf`. `Ok(None)` means "not enough bytes yet to
/// know"; for a message, the answer comes as soon as its header is in, before the body.
pub fn peek(buf: &[u8], cfg: &FrameConfig) -> Result<Option<Peek>, DecodeError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let body = &buf[1..];
    let fixed = |n: usize| {
        if body.len() >= n {
            Some(&body[..n])
        } else {
            None
        }
    };
    Ok(match Tag::from(tag) {
        Tag::Msg => {
            let Some(h) = fixed(HeaderRepr::LEN) else {
                return Ok(None);
            };
            let header = HeaderRepr::parse(&Header::new_unchecked(h), cfg.crc_header)?;
            check_limit("front", header.front_len, cfg.limits.max_front)?;
            check_limit("middle", header.middle_len, cfg.limits.max_middle)?;
            check_limit("data", header.data_len, cfg.limits.max_data)?;
            // Bounded by the limits above, so this cannot overflow a usize on 64-bit hosts.
            let frame_len = 1 + HeaderRepr::LEN + header.payload_len() as usize + cfg.footer.size();
            Some(Peek::Msg { header, frame_len })
        }
        Tag::Ack => fixed(8).map(|b| {
            Peek::Ack(u64::from_le_bytes([
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            ]))
        }),
        Tag::Keepalive => Some(Peek::Keepalive),
        Tag::Keepalive2 => fixed(8).map(|b| Peek::Keepalive2(Timespec::parse(b))),
        Tag::Keepalive2Ack => fixed(8).map(|b| Peek::Keepalive2Ack(Timespec::parse(b))),
        Tag::Close => Some(Peek::Close),
        _ => return Err(DecodeError::UnknownTag(tag)),
    })
}

fn check_crc(what: &'static str, data: &[u8], expected: u32) -> Result<(), DecodeError> {
    if cfg!(fuzzing) {
        return Ok(());
    }
    let computed = ceph_crc32c(0, data);
    if computed != expected {
        return Err(DecodeError::BadCrc {
            what,
            expected,
            computed,
        });
    }
    Ok(())
}

/// Decodes a complete message frame (`frame` = the `frame_len` bytes [`peek`] announced,
/// tag included). Checks the footer's COMPLETE flag and the segment CRCs as Ceph's receiver
/// does: front and middle iff `crc_header`, data iff `crc_data` and the sender did not set
/// NOCRC. The message's segments share `frame`'s memory.
pub fn decode_msg(
    frame: Bytes,
    header: &HeaderRepr,
    cfg: &FrameConfig,
) -> Result<(Message, FooterRepr), DecodeError> {
    let front_at = 1 + HeaderRepr::LEN;
    let middle_at = front_at + header.front_len as usize;
    let data_at = middle_at + header.middle_len as usize;
    let footer_at = data_at + header.data_len as usize;
    if frame.len() != footer_at + cfg.footer.size() {
        return Err(DecodeError::Truncated {
            what: "message frame",
        });
    }
    let footer = FooterRepr::parse(&frame[footer_at..], cfg.footer)?;
    if !footer.is_complete() {
        return Err(DecodeError::Invalid {
            what: "footer (message aborted: COMPLETE flag clear)",
        });
    }
    let front = frame.slice(front_at..middle_at);
    let middle = frame.slice(middle_at..data_at);
    let data = frame.slice(data_at..footer_at);
    if cfg.crc_header {
        check_crc("front", &front, footer.front_crc)?;
        check_crc("middle", &middle, footer.middle_crc)?;
    }
    if cfg.crc_data && footer.flags & FLAG_NOCRC == 0 {
        check_crc("data", &data, footer.data_crc)?;
    }
    Ok((Message::new(header.header, front, middle, data), footer))
}

/// Segments up to this size are copied into the surrounding chunk instead of being sent
/// as their own buffer (Ceph coalesces payloads of at most 256 bytes the same way).
const COALESCE: usize = 256;

/// Bytes waiting for the transport, in order: whole chunks, then a buffer of small pieces
/// (headers, footers, small segments, control frames) that the next chunk boundary cuts.
///
/// Small pieces of consecutive frames share one buffer (a footer and the next header go out
/// together), and large segments pass through uncopied, so a burst of messages costs a few
/// buffers and `writev` entries, not several per message.
#[derive(Debug, Default)]
pub struct TxQueue {
    chunks: VecDeque<Bytes>,
    small: BytesMut,
}

impl TxQueue {
    /// Room the small buffer grows by when it runs out.
    const SMALL_BLOCK: usize = 8 * 1024;

    /// Appends small bytes (copied).
    pub fn put_small(&mut self, b: &[u8]) {
        if self.small.capacity() - self.small.len() < b.len() {
            self.small.reserve(b.len().max(Self::SMALL_BLOCK));
        }
        self.small.put_slice(b);
    }

    /// Appends a large buffer (not copied), after everything queued so far.
    pub fn put_large(&mut self, b: Bytes) {
        self.cut();
        self.chunks.push_back(b);
    }

    /// Ends the current small buffer: what it holds becomes a chunk.
    pub fn cut(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push_back(self.small.split().freeze());
        }
    }

    /// The next whole chunk, if one is ready (small bytes not yet cut are not).
    pub fn pop_chunk(&mut self) -> Option<Bytes> {
        self.chunks.pop_front()
    }

    /// Small bytes waiting to be cut.
    pub fn small_len(&self) -> usize {
        self.small.len()
    }

    /// Whether nothing at all is queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.small.is_empty()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.small.clear();
    }
}

/// Appends the frame of `m` (whose `header.seq`, `priority` and `src` the engine has set)
/// to `tx`: header, small segments and footer as small bytes, large segments uncopied.
pub fn encode_msg(m: &Message, cfg: &FrameConfig, tx: &mut TxQueue) {
    let repr = HeaderRepr {
        header: m.header,
        front_len: len32(m.front.len()),
        middle_len: len32(m.middle.len()),
        data_len: len32(m.data.len()),
    };
    let mut footer = FooterRepr {
        flags: FLAG_COMPLETE,
        ..FooterRepr::default()
    };
    if cfg.crc_header {
        footer.front_crc = ceph_crc32c(0, &m.front);
        footer.middle_crc = ceph_crc32c(0, &m.middle);
    }
    if cfg.crc_data {
        footer.data_crc = ceph_crc32c(0, &m.data);
    } else {
        footer.flags |= FLAG_NOCRC;
    }
    tx.put_small(&[u8::from(Tag::Msg)]);
    tx.put_small(&repr.emit(cfg.crc_header));
    for seg in [&m.front, &m.middle, &m.data] {
        if seg.len() <= COALESCE {
            tx.put_small(seg);
        } else {
            tx.put_large(seg.clone());
        }
    }
    let mut f = [0u8; 21];
    footer.emit(cfg.footer, &mut f);
    tx.put_small(&f[..cfg.footer.size()]);
}

fn len32(n: usize) -> u32 {
    // Messages are built from Bytes no larger than the limits; saturating keeps a
    // pathological caller from wrapping a length silently (the peer then rejects it).
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `TAG_ACK` + le64 seq.
pub fn encode_ack(seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_u8(Tag::Ack.into());
    b.put_u64_le(seq);
    b.freeze()
}

/// `TAG_KEEPALIVE2` (or `_ACK` when `ack`) + timespec.
pub fn encode_keepalive2(stamp: Timespec, ack: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_u8(
        if ack {
            Tag::Keepalive2Ack
        } else {
            Tag::Keepalive2
        }
        .into(),
    );
    b.put_u32_le(stamp.sec);
    b.put_u32_le(stamp.nsec);
    b.freeze()
}

/// A tag with no body (`KEEPALIVE`, `CLOSE`).
pub fn encode_bare(tag: Tag) -> Bytes {
    Bytes::copy_from_slice(&[u8::from(tag)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{MessageHeader, MsgType};

    fn cfg() -> FrameConfig {
        FrameConfig::default()
    }

    fn flatten(q: &mut TxQueue) -> Bytes {
        q.cut();
        let mut b = BytesMut::new();
        while let Some(c) = q.pop_chunk() {
            b.extend_from_slice(&c);
        }
        b.freeze()
    }

    fn msg(front: usize, data: usize) -> Message {
        let mut h = MessageHeader::new(MsgType::PING, 1, 1);
        h.seq = 5;
        h.priority = 127;
        let front = Bytes::from((0..front).map(|i| i as u8).collect::<Vec<_>>());
        let data = Bytes::from((0..data).map(|i| (i * 3) as u8).collect::<Vec<_>>());
        Message::new(h, front, Bytes::new(), data)
    }

    fn round_trip(m: &Message, c: &FrameConfig) -> Message {
        let mut q = TxQueue::default();
        encode_msg(m, c, &mut q);
        let wire = flatten(&mut q);
        let Some(Peek::Msg { header, frame_len }) = peek(&wire, c).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(frame_len, wire.len());
        decode_msg(wire, &header, c).unwrap().0
    }

    #[test]
    fn message_round_trips_with_both_footers() {
        for footer in [FooterKind::New, FooterKind::Old] {
            let c = FrameConfig { footer, ..cfg() };
            for (f, d) in [(0, 0), (10, 0), (300, 5000), (0, 1 << 20)] {
                let m = msg(f, d);
                assert_eq!(round_trip(&m, &c), m);
            }
        }
    }

    #[test]
    fn real_mping_reply_decodes() {
        // v1-ping capture, server side: hello (281) + reply (26) + seq (8), then items.
        let s2c = Bytes::from_static(include_bytes!("../../tests/data/v1-ping-0-s2c.bin"));
        let mut at = 281 + 26 + 8;
        let mut types = Vec::new();
        while at < s2c.len() {
            let p = peek(&s2c[at..], &cfg()).unwrap().expect("complete capture");
            if let Peek::Msg { header, frame_len } = p {
                let (m, footer) =
                    decode_msg(s2c.slice(at..at + frame_len), &header, &cfg()).unwrap();
                assert!(footer.is_complete());
                types.push(m.ty());
            }
            at += p.frame_len();
        }
        assert_eq!(at, s2c.len());
        // MAuthReply, MMonMap, MPing (with the health JSON).
        assert_eq!(
            types,
            vec![MsgType::AUTH_REPLY, MsgType::MON_MAP, MsgType::PING]
        );
    }

    #[test]
    fn segments_are_not_copied() {
        let m = msg(0, 4096);
        let mut q = TxQueue::default();
        encode_msg(&m, &cfg(), &mut q);
        q.cut();
        let chunks: Vec<Bytes> = std::iter::from_fn(|| q.pop_chunk()).collect();
        assert!(
            chunks.iter().any(|c| c.as_ptr() == m.data.as_ptr()),
            "data passed through"
        );
        let mut w = BytesMut::new();
        for c in &chunks {
            w.extend_from_slice(c);
        }
        let wire = w.freeze();
        let Some(Peek::Msg { header, .. }) = peek(&wire, &cfg()).unwrap() else {
            panic!()
        };
        let (back, _) = decode_msg(wire.clone(), &header, &cfg()).unwrap();
        assert_eq!(
            back.data.as_ptr(),
            wire[1 + 53..].as_ptr(),
            "data is a slice of the frame"
        );
    }

    #[test]
    fn bad_crcs_and_aborted_messages() {
        let m = msg(8, 8);
        let mut q = TxQueue::default();
        encode_msg(&m, &cfg(), &mut q);
        let wire = flatten(&mut q);
        let Some(Peek::Msg { header, frame_len }) = peek(&wire, &cfg()).unwrap() else {
            panic!()
        };
        let corrupt = |at: usize| {
            let mut b = wire.to_vec();
            b[at] ^= 1;
            decode_msg(Bytes::from(b), &header, &cfg()).unwrap_err()
        };
        assert!(matches!(
            corrupt(1 + 53),
            DecodeError::BadCrc { what: "front", .. }
        ));
        assert!(matches!(
            corrupt(1 + 53 + 8),
            DecodeError::BadCrc { what: "data", .. }
        ));
        assert!(
            matches!(corrupt(frame_len - 1), DecodeError::Invalid { .. }),
            "COMPLETE cleared"
        );
        let mut b = wire.to_vec();
        b[3] ^= 1;
        assert!(matches!(
            peek(&b, &cfg()),
            Err(DecodeError::BadCrc { what: "header", .. })
        ));
        // NOCRC: the receiver skips the data check.
        let nocrc = FrameConfig {
            crc_data: false,
            ..cfg()
        };
        let mut q = TxQueue::default();
        encode_msg(&m, &nocrc, &mut q);
        let mut b = flatten(&mut q).to_vec();
        b[1 + 53 + 8] ^= 1;
        assert!(decode_msg(Bytes::from(b), &header, &cfg()).is_ok());
    }

    #[test]
    fn limits_are_enforced_before_the_body() {
        let c = FrameConfig {
            limits: Limits {
                max_data: 100,
                ..Limits::default()
            },
            ..cfg()
        };
        let mut q = TxQueue::default();
        encode_msg(&msg(0, 101), &cfg(), &mut q);
        let wire = flatten(&mut q);
        let head = &wire[..54];
        assert_eq!(
            peek(head, &c),
            Err(DecodeError::TooLarge {
                what: "data",
                len: 101,
                limit: 100
            })
        );
    }

    #[test]
    fn small_items_and_partial_input() {
        assert_eq!(peek(&encode_ack(7), &cfg()).unwrap(), Some(Peek::Ack(7)));
        assert_eq!(peek(&encode_ack(7)[..8], &cfg()).unwrap(), None);
        let ts = Timespec { sec: 3, nsec: 4 };
        assert_eq!(
            peek(&encode_keepalive2(ts, false), &cfg()).unwrap(),
            Some(Peek::Keepalive2(ts))
        );
        assert_eq!(
            peek(&encode_keepalive2(ts, true), &cfg()).unwrap(),
            Some(Peek::Keepalive2Ack(ts))
        );
        assert_eq!(
            peek(&encode_bare(Tag::Close), &cfg()).unwrap(),
            Some(Peek::Close)
        );
        assert_eq!(peek(&[9], &cfg()).unwrap(), Some(Peek::Keepalive));
        assert_eq!(peek(&[], &cfg()).unwrap(), None);
        assert_eq!(peek(&[7; 20], &cfg()).unwrap(), None);
        assert_eq!(
            peek(&[1], &cfg()),
            Err(DecodeError::UnknownTag(1)),
            "READY is not a stream tag"
        );
        assert_eq!(peek(&[200], &cfg()), Err(DecodeError::UnknownTag(200)));
        let t = Instant::from_nanos(12_345_000_000_789);
        assert_eq!(Timespec::from_instant(t).to_instant(), t);
    }
}

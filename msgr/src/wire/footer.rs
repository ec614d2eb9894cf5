//! `ceph_msg_footer` (21 bytes) and `ceph_msg_footer_old` (13 bytes), docs §2.6.
//!
//! The new footer adds an 8-byte cephx signature before the flags. Which one a connection
//! uses is fixed by the negotiated features: the new one iff `MSG_AUTH`.

use crate::error::DecodeError;
use crate::features;

/// Footer flag: the message is complete (a receiver faults on a footer without it).
pub const FLAG_COMPLETE: u8 = 1;
/// Footer flag: the data CRC was not computed.
pub const FLAG_NOCRC: u8 = 2;
/// Footer flag: signed (defined, unused by AsyncMessenger).
pub const FLAG_SIGNED: u8 = 4;

/// Which footer a connection uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FooterKind {
    /// 21 bytes with signature (`MSG_AUTH` negotiated).
    New,
    /// 13 bytes without signature.
    Old,
}

impl FooterKind {
    /// The footer for a connection with `features`.
    pub fn for_features(f: u64) -> Self {
        if features::has(f, features::MSG_AUTH) {
            Self::New
        } else {
            Self::Old
        }
    }

    /// Size on the wire.
    pub const fn size(self) -> usize {
        match self {
            Self::New => 21,
            Self::Old => 13,
        }
    }
}

/// A parsed footer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FooterRepr {
    /// `ceph_crc32c(0, front)`.
    pub front_crc: u32,
    /// `ceph_crc32c(0, middle)`.
    pub middle_crc: u32,
    /// `ceph_crc32c(0, data)`, unless `FLAG_NOCRC`.
    pub data_crc: u32,
    /// cephx signature (0 without session security; absent in the old footer).
    pub sig: u64,
    /// `FLAG_*`.
    pub flags: u8,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl FooterRepr {
    /// Parses a footer of `kind`.
    pub fn parse(buf: &[u8], kind: FooterKind) -> Result<Self, DecodeError> {
        if buf.len() < kind.size() {
            return Err(DecodeError::Truncated {
                what: "ceph_msg_footer",
            });
        }
        let (sig, flags) = match kind {
            FooterKind::New => {
                let mut s = [0u8; 8];
                s.copy_from_slice(&buf[12..20]);
                (u64::from_le_bytes(s), buf[20])
            }
            FooterKind::Old => (0, buf[12]),
        };
        Ok(Self {
            front_crc: le32(buf, 0),
            middle_crc: le32(buf, 4),
            data_crc: le32(buf, 8),
            sig,
            flags,
        })
    }

    /// Encodes the footer into the first `kind.size()` bytes of `out`.
    pub fn emit(&self, kind: FooterKind, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.front_crc.to_le_bytes());
        out[4..8].copy_from_slice(&self.middle_crc.to_le_bytes());
        out[8..12].copy_from_slice(&self.data_crc.to_le_bytes());
        match kind {
            FooterKind::New => {
                out[12..20].copy_from_slice(&self.sig.to_le_bytes());
                out[20] = self.flags;
            }
            FooterKind::Old => out[12] = self.flags,
        }
    }

    /// Whether the sender marked the message complete.
    pub fn is_complete(&self) -> bool {
        self.flags & FLAG_COMPLETE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip_at_their_sizes() {
        let f = FooterRepr {
            front_crc: 1,
            middle_crc: 2,
            data_crc: 3,
            sig: 0x0102_0304_0506_0708,
            flags: FLAG_COMPLETE,
        };
        let mut b = [0xaau8; 21];
        f.emit(FooterKind::New, &mut b);
        assert_eq!(
            b,
            [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 1]
        );
        assert_eq!(FooterRepr::parse(&b, FooterKind::New).unwrap(), f);
        let mut o = [0u8; 13];
        f.emit(FooterKind::Old, &mut o);
        assert_eq!(o[12], FLAG_COMPLETE);
        assert_eq!(
            FooterRepr::parse(&o, FooterKind::Old).unwrap(),
            FooterRepr { sig: 0, ..f }
        );
        assert_eq!(
            FooterRepr::parse(&o, FooterKind::New),
            Err(DecodeError::Truncated {
                what: "ceph_msg_footer"
            })
        );
    }

    #[test]
    fn kind_follows_msg_auth() {
        assert_eq!(
            FooterKind::for_features(features::PACIFIC_ALL),
            FooterKind::New
        );
        assert_eq!(
            FooterKind::for_features(features::PACIFIC_ALL & !features::MSG_AUTH),
            FooterKind::Old
        );
        assert_eq!((FooterKind::New.size(), FooterKind::Old.size()), (21, 13));
    }
}

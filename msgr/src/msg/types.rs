//! Small value types that several messages share: `uuid_d` (cluster fsids), `utime_t`,
//! and the prefix every `PaxosServiceMessage` starts with.
//!
//! Follows Ceph Pacific `src/include/uuid.h` (`uuid_d::encode`: 16 raw bytes, no length),
//! `src/include/utime.h` (`utime_t::encode`: `u32 sec, u32 nsec`) and
//! `src/messages/PaxosServiceMessage.h` (`paxos_encode` / `paxos_decode`).

use std::fmt;
use std::str::FromStr;

use crate::denc::{Decode, Encode, Reader, Writer};
use crate::error::DecodeError;

/// `uuid_d`: a cluster fsid, 16 raw bytes on the wire (no length prefix).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Fsid(pub [u8; 16]);

impl Fsid {
    /// The all-zero fsid (Ceph's default-constructed `uuid_d`).
    pub const ZERO: Self = Self([0; 16]);

    /// Whether this is the all-zero fsid.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Fsid {
    /// The usual uuid form, `8-4-4-4-12` lowercase hex digits, as `ceph fsid` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Fsid {
    type Err = String;
    /// Parses the `8-4-4-4-12` hex form (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(format!("fsid {s:?} is not in 8-4-4-4-12 form"));
        }
        let hex: String = groups.concat();
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = hex
                .get(2 * i..2 * i + 2)
                .ok_or_else(|| format!("fsid {s:?} is not hex"))?;
            *o = u8::from_str_radix(pair, 16).map_err(|_| format!("fsid {s:?} is not hex"))?;
        }
        Ok(Self(out))
    }
}

impl Encode for Fsid {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
}

impl Decode for Fsid {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.raw::<16>().map(Self)
    }
}

/// `utime_t` (and the wire-identical `ceph_timespec`): seconds and nanoseconds, 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct UTime {
    /// Seconds since the Unix epoch.
    pub sec: u32,
    /// Nanoseconds within the second.
    pub nsec: u32,
}

impl UTime {
    /// A time from seconds and nanoseconds.
    pub const fn new(sec: u32, nsec: u32) -> Self {
        Self { sec, nsec }
    }
}

impl Encode for UTime {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.sec);
        w.u32(self.nsec);
    }
}

impl Decode for UTime {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            sec: r.u32()?,
            nsec: r.u32()?,
        })
    }
}

/// The fields every `PaxosServiceMessage` (MAuth, MMonCommand, ...) puts before its own.
///
/// Clients send the defaults: version 0, session mon -1, session mon tid 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PaxosHeader {
    /// The paxos version the sender has seen (`version_t version`).
    pub version: u64,
    /// `deprecated_session_mon` (s16); -1 from clients.
    pub deprecated_session_mon: i16,
    /// `deprecated_session_mon_tid` (u64); 0 from clients.
    pub deprecated_session_mon_tid: u64,
}

impl Default for PaxosHeader {
    fn default() -> Self {
        Self {
            version: 0,
            deprecated_session_mon: -1,
            deprecated_session_mon_tid: 0,
        }
    }
}

impl Encode for PaxosHeader {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.version);
        w.i16(self.deprecated_session_mon);
        w.u64(self.deprecated_session_mon_tid);
    }
}

impl Decode for PaxosHeader {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.u64()?,
            deprecated_session_mon: r.i16()?,
            deprecated_session_mon_tid: r.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn fsid_display_parse_and_wire() {
        let f = Fsid([
            0xdd, 0x9a, 0x8e, 0x03, 0x1a, 0xcc, 0x40, 0x40, 0x89, 0x2d, 0xe1, 0xfe, 0x75, 0x81,
            0x18, 0x8b,
        ]);
        assert_eq!(f.to_string(), "dd9a8e03-1acc-4040-892d-e1fe7581188b");
        assert_eq!(
            "DD9A8E03-1ACC-4040-892D-E1FE7581188B"
                .parse::<Fsid>()
                .unwrap(),
            f
        );
        assert!("dd9a8e03-1acc-4040-892d".parse::<Fsid>().is_err());
        assert!("zz9a8e03-1acc-4040-892d-e1fe7581188b"
            .parse::<Fsid>()
            .is_err());
        let mut w = Writer::new(0);
        w.put(&f);
        let b = w.finish();
        assert_eq!(&b[..], &f.0[..]);
        assert_eq!(Reader::new(b).decode::<Fsid>().unwrap(), f);
        assert_eq!(
            Reader::new(Bytes::from_static(&[1; 15])).decode::<Fsid>(),
            Err(DecodeError::Truncated {
                what: "fixed array"
            })
        );
    }

    #[test]
    fn paxos_header_bytes() {
        let mut w = Writer::new(0);
        w.put(&PaxosHeader::default());
        let b = w.finish();
        assert_eq!(
            &b[..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            Reader::new(b).decode::<PaxosHeader>().unwrap(),
            PaxosHeader::default()
        );
    }

    #[test]
    fn utime_bytes() {
        let mut w = Writer::new(0);
        w.put(&UTime::new(0x6b01_0587, 0x388c_0269));
        assert_eq!(
            &w.finish()[..],
            &[0x87, 0x05, 0x01, 0x6b, 0x69, 0x02, 0x8c, 0x38]
        );
    }
}

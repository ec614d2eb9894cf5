//! `ceph_msg_header`: the 53-byte header after `TAG_MSG` (docs §2.6).
//!
//! The last four bytes are `ceph_crc32c(0, first 49 bytes)`, computed by the sender after
//! it assigns the sequence number.

use super::Field;
use crate::crc::ceph_crc32c;
use crate::entity::{EntityName, EntityType};
use crate::error::DecodeError;
use crate::msg::{MessageHeader, MsgType};

mod field {
    use super::Field;
    pub(super) const SEQ: Field = 0..8;
    pub(super) const TID: Field = 8..16;
    pub(super) const TYPE: Field = 16..18;
    pub(super) const PRIORITY: Field = 18..20;
    pub(super) const VERSION: Field = 20..22;
    pub(super) const FRONT_LEN: Field = 22..26;
    pub(super) const MIDDLE_LEN: Field = 26..30;
    pub(super) const DATA_LEN: Field = 30..34;
    pub(super) const DATA_OFF: Field = 34..36;
    pub(super) const SRC_TYPE: usize = 36;
    pub(super) const SRC_NUM: Field = 37..45;
    pub(super) const COMPAT_VERSION: Field = 45..47;
    pub(super) const RESERVED: Field = 47..49;
    pub(super) const CRC: Field = 49..53;
    pub(super) const LEN: usize = 53;
}

/// A view of a `ceph_msg_header`.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

macro_rules! getter {
    ($name:ident, $field:ident, $t:ty, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(&self) -> $t {
            let mut a = [0u8; core::mem::size_of::<$t>()];
            a.copy_from_slice(&self.buffer.as_ref()[field::$field]);
            <$t>::from_le_bytes(a)
        }
    };
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Size on the wire.
    pub const LEN: usize = field::LEN;

    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`Header::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Ensures that no accessor will panic.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < field::LEN {
            return Err(DecodeError::Truncated {
                what: "ceph_msg_header",
            });
        }
        Ok(())
    }

    getter!(seq, SEQ, u64, "Sequence number.");
    getter!(tid, TID, u64, "Transaction id.");
    getter!(msg_type, TYPE, u16, "Message type.");
    getter!(priority, PRIORITY, u16, "Priority.");
    getter!(version, VERSION, u16, "Payload encoding version.");
    getter!(front_len, FRONT_LEN, u32, "Front segment length.");
    getter!(middle_len, MIDDLE_LEN, u32, "Middle segment length.");
    getter!(data_len, DATA_LEN, u32, "Data segment length.");
    getter!(data_off, DATA_OFF, u16, "Data page-offset hint.");
    getter!(src_num, SRC_NUM, i64, "Source entity number.");
    getter!(
        compat_version,
        COMPAT_VERSION,
        u16,
        "Oldest decoder version."
    );
    getter!(reserved, RESERVED, u16, "Reserved (0).");
    getter!(crc, CRC, u32, "Header CRC as sent.");

    /// Source entity type.
    pub fn src_type(&self) -> u8 {
        self.buffer.as_ref()[field::SRC_TYPE]
    }

    /// CRC of the first 49 bytes, as the receiver computes it.
    pub fn compute_crc(&self) -> u32 {
        ceph_crc32c(0, &self.buffer.as_ref()[..field::CRC.start])
    }
}

/// A parsed header: the logical [`MessageHeader`] plus the segment lengths.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeaderRepr {
    /// The logical header.
    pub header: MessageHeader,
    /// Front segment length.
    pub front_len: u32,
    /// Middle segment length.
    pub middle_len: u32,
    /// Data segment length.
    pub data_len: u32,
}

impl HeaderRepr {
    /// Size on the wire.
    pub const LEN: usize = field::LEN;

    /// Parses a header, verifying its CRC when `check_crc` (Ceph's `ms_crc_header`).
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>, check_crc: bool) -> Result<Self, DecodeError> {
        h.check_len()?;
        if check_crc && !cfg!(fuzzing) {
            let computed = h.compute_crc();
            if computed != h.crc() {
                return Err(DecodeError::BadCrc {
                    what: "header",
                    expected: h.crc(),
                    computed,
                });
            }
        }
        Ok(Self {
            header: MessageHeader {
                seq: h.seq(),
                tid: h.tid(),
                ty: MsgType(h.msg_type()),
                priority: h.priority(),
                version: h.version(),
                compat_version: h.compat_version(),
                data_off: h.data_off(),
                src: EntityName::new(EntityType(h.src_type()), h.src_num()),
            },
            front_len: h.front_len(),
            middle_len: h.middle_len(),
            data_len: h.data_len(),
        })
    }

    /// Total payload bytes that follow the header.
    pub fn payload_len(&self) -> u64 {
        u64::from(self.front_len) + u64::from(self.middle_len) + u64::from(self.data_len)
    }

    /// Encodes the 53 bytes; the CRC is computed when `with_crc`, else left 0 (a sender
    /// with `ms_crc_header` off).
    pub fn emit(&self, with_crc: bool) -> [u8; field::LEN] {
        let h = &self.header;
        let mut b = [0u8; field::LEN];
        b[field::SEQ].copy_from_slice(&h.seq.to_le_bytes());
        b[field::TID].copy_from_slice(&h.tid.to_le_bytes());
        b[field::TYPE].copy_from_slice(&h.ty.0.to_le_bytes());
        b[field::PRIORITY].copy_from_slice(&h.priority.to_le_bytes());
        b[field::VERSION].copy_from_slice(&h.version.to_le_bytes());
        b[field::FRONT_LEN].copy_from_slice(&self.front_len.to_le_bytes());
        b[field::MIDDLE_LEN].copy_from_slice(&self.middle_len.to_le_bytes());
        b[field::DATA_LEN].copy_from_slice(&self.data_len.to_le_bytes());
        b[field::DATA_OFF].copy_from_slice(&h.data_off.to_le_bytes());
        b[field::SRC_TYPE] = h.src.ty.0;
        b[field::SRC_NUM].copy_from_slice(&h.src.num.to_le_bytes());
        b[field::COMPAT_VERSION].copy_from_slice(&h.compat_version.to_le_bytes());
        if with_crc {
            let crc = ceph_crc32c(0, &b[..field::CRC.start]);
            b[field::CRC].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs §8.3: the MPing header a client sends to a mon first (crc 0x2d2492e0).
    const MPING_HEADER: [u8; 53] = [
        0x01, 0, 0, 0, 0, 0, 0, 0, // seq 1
        0, 0, 0, 0, 0, 0, 0, 0, // tid
        0x02, 0, // type PING
        0x7f, 0, // prio 127
        0x01, 0, // version 1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // front, middle, data len
        0, 0, // data_off
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // client.-1
        0x01, 0, // compat 1
        0, 0, // reserved
        0xe0, 0x92, 0x24, 0x2d,
    ];

    fn mping_repr() -> HeaderRepr {
        let mut header = MessageHeader::new(MsgType::PING, 1, 1);
        header.seq = 1;
        header.priority = 127;
        HeaderRepr {
            header,
            front_len: 0,
            middle_len: 0,
            data_len: 0,
        }
    }

    #[test]
    fn construct_matches_ceph() {
        assert_eq!(mping_repr().emit(true), MPING_HEADER);
    }

    #[test]
    fn deconstruct() {
        let v = Header::new_checked(&MPING_HEADER[..]).unwrap();
        assert_eq!(v.crc(), 0x2d24_92e0);
        assert_eq!(v.compute_crc(), v.crc());
        assert_eq!((v.src_type(), v.src_num()), (8, -1));
        assert_eq!(HeaderRepr::parse(&v, true).unwrap(), mping_repr());
    }

    #[test]
    fn bad_crc_is_typed() {
        let mut b = MPING_HEADER;
        b[8] = 1; // tid changed after the crc was computed
        let e = HeaderRepr::parse(&Header::new_unchecked(&b[..]), true).unwrap_err();
        assert!(matches!(
            e,
            DecodeError::BadCrc {
                what: "header",
                expected: 0x2d24_92e0,
                ..
            }
        ));
        // With header CRCs off (ms_crc_header=false) the same bytes parse.
        assert!(HeaderRepr::parse(&Header::new_unchecked(&b[..]), false).is_ok());
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Header::new_checked(&MPING_HEADER[..52]).err(),
            Some(DecodeError::Truncated {
                what: "ceph_msg_header"
            })
        );
    }
}

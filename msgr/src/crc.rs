//! Ceph's CRC32C convention (`ceph_crc32c`), on the `crc32c` crate's hardware path.
//!
//! Ceph's register starts at the given seed and is neither inverted on input nor on output,
//! unlike the standard CRC-32C (docs/ceph-msgr-wire.md §1.1). The two are related by
//! `ceph(seed, d) = !std_append(!seed, d)`, which lets us use the crate's SSE4.2/ARMv8 code.

/// `ceph_crc32c(seed, data)`: reflected Castagnoli CRC with Ceph's seed convention.
///
/// v1 uses seed 0 for the header, front, middle and data CRCs.
#[inline]
pub fn ceph_crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

#[cfg(test)]
mod tests {
    use super::ceph_crc32c;

    /// Vectors from Ceph's own `src/test/common/test_crc32c.cc`.
    #[test]
    fn ceph_test_vectors() {
        assert_eq!(ceph_crc32c(0, b"foo bar baz"), 4_119_623_852);
        assert_eq!(ceph_crc32c(1234, b"foo bar baz"), 881_700_046);
        assert_eq!(ceph_crc32c(0, b"whiz bang boom"), 2_360_230_088);
    }

    #[test]
    fn empty_input_returns_seed() {
        assert_eq!(ceph_crc32c(0, b""), 0);
        assert_eq!(ceph_crc32c(u32::MAX, b""), u32::MAX);
        assert_eq!(ceph_crc32c(77, b""), 77);
    }

    #[test]
    fn relation_to_standard_crc32c() {
        // ceph(-1, d) = !crc32c(d); the standard check value of "123456789" is 0xE3069283.
        assert_eq!(!ceph_crc32c(u32::MAX, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn chaining_equals_one_pass() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let (a, b) = data.split_at(1000);
        assert_eq!(ceph_crc32c(ceph_crc32c(0, a), b), ceph_crc32c(0, &data));
    }
}

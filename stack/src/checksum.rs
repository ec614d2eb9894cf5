//! Internet checksums (RFC 1071) for the stack's own receive checks and for transmit
//! offload, and what a device can do about them.
//!
//! The stack verifies received IPv4 headers and TCP segments itself, in `demux`, before any
//! smoltcp Interface sees them: a device that verified a frame says so in the frame
//! ([`RxChecksum`], from the mbuf's `RTE_MBUF_F_RX_*_CKSUM_*` flags), and only the rest is
//! summed in software. smoltcp's own receive check is therefore switched off; on transmit
//! it fills in what the device does not ([`TxChecksum`]).

/// What a device says about one checksum of a received frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RxState {
    /// Not checked (no offload, or a packet the device does not parse): verify in software.
    #[default]
    Unknown,
    /// Checked and correct.
    Good,
    /// Checked and wrong: drop.
    Bad,
    /// The field is not a finished checksum but the data is intact (a virtio peer left it
    /// partial for the last hop to fill in: `RTE_MBUF_F_RX_L4_CKSUM_NONE`). Treated as good;
    /// software verification would wrongly fail it.
    Partial,
}

impl RxState {
    /// Whether the device vouches for the data.
    pub fn trusted(self) -> bool {
        matches!(self, Self::Good | Self::Partial)
    }
}

/// The device's verdicts on a received frame: IPv4 header and TCP/UDP checksums.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxChecksum {
    pub ip: RxState,
    pub l4: RxState,
}

/// Checksums the device computes for frames marked with [`crate::Port::offload_tx`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxChecksum {
    /// The IPv4 header checksum (`RTE_ETH_TX_OFFLOAD_IPV4_CKSUM`).
    pub ipv4: bool,
    /// The TCP checksum (`RTE_ETH_TX_OFFLOAD_TCP_CKSUM`); the stack leaves the pseudo-header
    /// sum in the field, as DPDK's drivers expect.
    pub tcp: bool,
}

impl TxChecksum {
    pub const NONE: Self = Self {
        ipv4: false,
        tcp: false,
    };

    pub fn any(self) -> bool {
        self.ipv4 || self.tcp
    }
}

/// Adds `data` to a running one's-complement sum (unfolded; see [`fold`]). Big-endian
/// 16-bit words, an odd last byte padded with zero. Four bytes at a time into a 64-bit
/// accumulator: 2^16 ≡ 1 (mod 2^16 − 1), so 32-bit words fold to the same sum.
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a running sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The IPv4 pseudo-header sum of a TCP/UDP segment of `l4_len` bytes (folded, not
/// complemented: what a driver doing checksum offload expects in the checksum field).
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u16 {
    let acc = sum(sum(0, &src), &dst) + u64::from(proto) + u64::from(l4_len);
    fold(acc)
}

/// Whether an IPv4 header (`ihl` bytes, options included) carries a correct checksum.
pub fn ipv4_header_ok(header: &[u8]) -> bool {
    fold(sum(0, header)) == 0xffff
}

/// Whether a TCP/UDP segment `l4` from `src` to `dst` carries a correct checksum.
pub fn l4_ok(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> bool {
    let Ok(len) = u16::try_from(l4.len()) else {
        return false;
    };
    let acc = sum(u64::from(pseudo_header(src, dst, proto, len)), l4);
    fold(acc) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv4Packet, TcpPacket};

    fn rand_bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &d)), 0xddf2);
        // Odd length: the last byte is the high half of a zero-padded word.
        assert_eq!(fold(sum(0, &[0x12])), 0x1200);
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    /// Our sums against smoltcp's independent implementation, on random segments of every
    /// length from 20 to 300 bytes plus a few large ones.
    #[test]
    fn agrees_with_smoltcp() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let src = Ipv4Address::new(10, 0, 0, 1);
        let dst = Ipv4Address::new(10, 0, 0, 2);
        let lens = (20..300).chain([1460, 8192, 65_000]);
        for len in lens {
            let mut seg = rand_bytes(&mut seed, len);
            seg[12] = 0x50; // data offset 5
            let mut pkt = TcpPacket::new_unchecked(&mut seg[..]);
            pkt.fill_checksum(&src.into(), &dst.into());
            assert!(l4_ok(src.octets(), dst.octets(), 6, &seg), "len {len}");
            seg[len / 2] ^= 0x40;
            assert!(!l4_ok(src.octets(), dst.octets(), 6, &seg), "len {len}");
            let pkt = TcpPacket::new_unchecked(&seg[..]);
            assert!(!pkt.verify_checksum(&src.into(), &dst.into()));
        }
        for ihl in [20usize, 24, 60] {
            let mut h = rand_bytes(&mut seed, ihl);
            h[0] = 0x40 | (ihl / 4) as u8;
            let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
            p.fill_checksum();
            assert!(ipv4_header_ok(&h));
            h[8] = h[8].wrapping_add(1);
            assert!(!ipv4_header_ok(&h));
        }
    }

    /// What a device does with an offloaded segment: starting from the pseudo-header sum
    /// left in the field, sum the segment and store the complement. The result verifies.
    #[test]
    fn pseudo_header_completes_like_a_device() {
        let mut seed = 7u64;
        let (src, dst) = ([192, 168, 1, 9], [10, 1, 2, 3]);
        for len in [20usize, 21, 33, 1480] {
            let mut seg = rand_bytes(&mut seed, len);
            let l4_len = u16::try_from(len).unwrap();
            seg[16..18].copy_from_slice(&pseudo_header(src, dst, 6, l4_len).to_be_bytes());
            let device = !fold(sum(0, &seg));
            seg[16..18].copy_from_slice(&device.to_be_bytes());
            assert!(l4_ok(src, dst, 6, &seg), "len {len}");
        }
    }
}

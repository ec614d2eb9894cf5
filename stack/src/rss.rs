//! RSS in software: the Toeplitz hash a NIC computes over a received packet's addresses and
//! ports, and the redirection table (RETA) that maps it to a queue.
//!
//! An outbound connection's replies must arrive on the queue of the worker that owns the
//! connection, so the worker picks a local port whose hash, as the NIC will compute it on
//! the *reply* (source = the peer, destination = us), lands on its own queue. The stack
//! programs its own key and RETA into the device, so both sides agree on them.

use smoltcp::wire::Ipv4Address;

/// The key every Microsoft RSS verification vector uses (40 bytes); also DPDK's default.
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key` (input at most `key.len() - 4` bytes).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // A 32-bit window of the key, sliding left one bit per input bit.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// The hash of an IPv4/TCP packet from `src` to `dst`, as a NIC computes it.
pub fn hash_v4_tcp(key: &[u8], src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16) -> u32 {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&src.octets());
    input[4..8].copy_from_slice(&dst.octets());
    input[8..10].copy_from_slice(&sport.to_be_bytes());
    input[10..].copy_from_slice(&dport.to_be_bytes());
    toeplitz(key, &input)
}

/// How received packets are spread over queues: key and redirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steering {
    pub key: Vec<u8>,
    /// Queue for each `hash % reta.len()` (NICs use the low bits).
    pub reta: Vec<u16>,
}

impl Steering {
    /// `queues` queues, spread round-robin over a table of `size` entries.
    pub fn round_robin(queues: u16, size: usize) -> Self {
        let q = queues.max(1);
        Self {
            key: DEFAULT_KEY.to_vec(),
            reta: (0..size.max(1))
                .map(|i| (i % usize::from(q)) as u16)
                .collect(),
        }
    }

    /// One queue: every packet lands on queue 0 (a device without RSS).
    pub fn single() -> Self {
        Self::round_robin(1, 1)
    }

    /// The queue a packet from `src:sport` to `dst:dport` arrives on.
    pub fn queue_of(&self, src: Ipv4Address, dst: Ipv4Address, sport: u16, dport: u16) -> u16 {
        if self.reta.len() == 1 {
            return self.reta[0];
        }
        let h = hash_v4_tcp(&self.key, src, dst, sport, dport);
        self.reta[h as usize % self.reta.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: [u8; 4]) -> Ipv4Address {
        Ipv4Address::from(a)
    }

    /// Microsoft's RSS verification suite, IPv4 with TCP ports (input order: source
    /// address, destination address, source port, destination port).
    #[test]
    fn microsoft_verification_vectors() {
        let cases = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x51cc_c178u32,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xc626_b0ea,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0x5c2b_394a,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0xafc7_327f,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x10e8_28a2,
            ),
        ];
        for (src, sport, dst, dport, want) in cases {
            let h = hash_v4_tcp(&DEFAULT_KEY, ip(src), ip(dst), sport, dport);
            assert_eq!(h, want, "{src:?}:{sport} -> {dst:?}:{dport}");
        }
    }

    #[test]
    fn reta_maps_hashes_to_queues() {
        let s = Steering::round_robin(4, 128);
        let mut seen = [0usize; 4];
        for port in 1024..3072u16 {
            let q = s.queue_of(ip([10, 0, 0, 1]), ip([10, 0, 0, 2]), 6800, port);
            seen[q as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 300), "all queues used: {seen:?}");
        assert_eq!(
            Steering::single().queue_of(ip([1, 1, 1, 1]), ip([2, 2, 2, 2]), 1, 2),
            0
        );
    }
}

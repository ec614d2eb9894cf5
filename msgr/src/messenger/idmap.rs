//! Maps keyed by integers the messenger hands out itself (connection ids, poll tokens).
//!
//! std's default hasher (SipHash) resists keys an attacker chooses; these keys are never
//! chosen by a peer, and SipHash was 11% of the user-space instructions of a 64 B
//! ping-pong (callgrind). One multiply by the golden-ratio constant spreads sequential
//! keys over both the low bits (bucket index) and the top bits (hashbrown's tag byte).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A hasher for integer keys; other input is folded in byte by byte.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` for keys the messenger assigns.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_keys_spread_over_buckets_and_tags() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for k in 0u64..1024 {
            let h = b.hash_one(k);
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        assert_eq!(low.len(), 1024, "a bijection on the low bits");
        assert_eq!(top.len(), 128, "every tag value used");
    }

    #[test]
    fn works_as_a_map() {
        let mut m: IdMap<u64, &str> = IdMap::default();
        for k in 0..10_000u64 {
            m.insert(k * 7, "v");
        }
        assert_eq!(m.len(), 10_000);
        assert!(m.contains_key(&(9_999 * 7)));
        assert!(!m.contains_key(&1));
    }
}

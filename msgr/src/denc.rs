//! Ceph's encoding primitives ("denc"), as bounded readers and growable writers.
//!
//! Everything is little-endian. Strings and bufferlists are a `u32` length plus bytes;
//! vectors, lists, sets and maps are a `u32` count plus elements; versioned structs start
//! with `ENCODE_START(v, compat)`: `u8 v, u8 compat, u32 len` followed by `len` bytes of body,
//! so a decoder that knows version N can skip the unknown trailing fields of version N+k
//! (docs/ceph-msgr-wire.md §1).
//!
//! [`Reader`] reads from a [`Bytes`] and hands out sub-slices of it (bufferlists, raw runs)
//! without copying. It never panics and never allocates more than the input could fill:
//! a count read from the wire only reserves as many elements as there are bytes left.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::DecodeError;

/// Types that decode from Ceph's encoding.
pub trait Decode: Sized {
    /// Decodes one value from `r`, consuming exactly its bytes.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;
}

/// Types that encode to Ceph's encoding.
pub trait Encode {
    /// Appends the encoding of `self`. Encodings that depend on the peer's features (entity
    /// addresses, for example) read them from [`Writer::features`].
    fn encode(&self, w: &mut Writer);
}

/// A bounded cursor over received bytes.
#[derive(Clone, Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
    /// End of the readable window: the buffer's end, or the end of the innermost struct.
    end: usize,
}

/// The header of a versioned struct, returned by [`Reader::struct_start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "pass the header to Reader::struct_end"]
pub struct StructHeader {
    /// The encoder's struct version.
    pub version: u8,
    /// The oldest decoder version that can read it.
    pub compat: u8,
    outer_end: usize,
}

impl Reader {
    /// A reader over all of `buf`.
    pub fn new(buf: Bytes) -> Self {
        let end = buf.len();
        Self { buf, pos: 0, end }
    }

    /// Bytes left in the current window (the innermost struct, or the whole input).
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Bytes consumed so far from the start of the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1, "u8")?[0])
    }
    /// The next byte without consuming it (a format marker or version to dispatch on).
    pub fn peek_u8(&self) -> Result<u8, DecodeError> {
        if self.remaining() == 0 {
            return Err(DecodeError::Truncated { what: "u8" });
        }
        Ok(self.buf[self.pos])
    }
    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array("u16").map(u16::from_le_bytes)
    }
    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array("u32").map(u32::from_le_bytes)
    }
    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array("u64").map(u64::from_le_bytes)
    }
    /// A little-endian `i16`.
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        self.array("i16").map(i16::from_le_bytes)
    }
    /// A little-endian `i32`.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.array("i32").map(i32::from_le_bytes)
    }
    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array("i64").map(i64::from_le_bytes)
    }
    /// A `bool` (one byte; any non-zero value is true, as in Ceph).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }

    /// `n` raw bytes, shared with the input (no copy).
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what: "bytes" });
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// `N` raw bytes with no length prefix (a fixed array, e.g. a uuid).
    pub fn raw<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.array("fixed array")
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n, "skipped bytes").map(drop)
    }

    /// A length prefix that must fit in what is left of the window.
    fn len_prefix(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.remaining() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(n)
    }

    /// A bufferlist field: `u32` length plus bytes, shared with the input.
    pub fn bufferlist(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.len_prefix("bufferlist")?;
        self.bytes(n)
    }

    /// A `std::string` that must be UTF-8 (names, JSON, keys).
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len_prefix("string")?;
        let raw = self.take(n, "string")?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid {
            what: "utf-8 string",
        })
    }

    /// A `u32` element count, bounded so that a hostile count cannot reserve more elements
    /// than `min_elem` bytes each could fill.
    pub fn count(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(DecodeError::Truncated { what: "container" });
        }
        Ok(n)
    }

    /// A `vector<T>` / `list<T>`.
    pub fn vec<T: Decode>(&mut self) -> Result<Vec<T>, DecodeError> {
        let n = self.count(1)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }

    /// A `set<T>`.
    pub fn set<T: Decode + Ord>(&mut self) -> Result<BTreeSet<T>, DecodeError> {
        let n = self.count(1)?;
        let mut s = BTreeSet::new();
        for _ in 0..n {
            s.insert(T::decode(self)?);
        }
        Ok(s)
    }

    /// A `map<K, V>`.
    pub fn map<K: Decode + Ord, V: Decode>(&mut self) -> Result<BTreeMap<K, V>, DecodeError> {
        let n = self.count(1)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = K::decode(self)?;
            let v = V::decode(self)?;
            m.insert(k, v);
        }
        Ok(m)
    }

    /// Any `T: Decode`.
    pub fn decode<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// `DECODE_START(supported, bl)`: reads `v, compat, len`, rejects structs whose compat
    /// version is newer than `supported`, and narrows the window to the struct's body.
    /// Pair it with [`Reader::struct_end`].
    pub fn struct_start(
        &mut self,
        what: &'static str,
        supported: u8,
    ) -> Result<StructHeader, DecodeError> {
        let version = self.u8()?;
        let compat = self.u8()?;
        if compat > supported {
            return Err(DecodeError::UnsupportedVersion {
                what,
                compat,
                supported,
            });
        }
        let len = self.u32()? as usize;
        if len > self.remaining() {
            return Err(DecodeError::Truncated { what });
        }
        let outer_end = self.end;
        self.end = self.pos + len;
        Ok(StructHeader {
            version,
            compat,
            outer_end,
        })
    }

    /// `DECODE_FINISH`: skips the fields a newer encoder appended and restores the window.
    pub fn struct_end(&mut self, h: StructHeader) {
        self.pos = self.end;
        self.end = h.outer_end;
    }

    /// Ends decoding: everything must have been consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::TrailingData { what });
        }
        Ok(())
    }
}

/// A growable output buffer that knows the features the peer negotiated.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    features: u64,
}

/// Position of an open `ENCODE_START`, closed by [`Writer::struct_finish`].
#[derive(Debug)]
#[must_use = "close the struct with Writer::struct_finish"]
pub struct StructMark(usize);

impl Writer {
    /// An empty writer encoding for a peer with `features`.
    pub fn new(features: u64) -> Self {
        Self {
            buf: Vec::new(),
            features,
        }
    }

    /// An empty writer with room for `cap` bytes.
    pub fn with_capacity(features: u64, cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
            features,
        }
    }

    /// The peer's features, for encodings that depend on them.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A little-endian `i16`.
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A little-endian `i32`.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A little-endian `i64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `bool` as one byte.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    /// Raw bytes with no length prefix.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A 32-bit length or count. Ceph's containers cannot describe more than `u32::MAX`
    /// items; anything that large is a caller bug, so it saturates instead of wrapping.
    fn len32(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// A bufferlist field: `u32` length plus bytes.
    pub fn bufferlist(&mut self, v: &[u8]) {
        self.len32(v.len());
        self.raw(v);
    }

    /// A `std::string`.
    pub fn string(&mut self, v: &str) {
        self.bufferlist(v.as_bytes());
    }

    /// A `vector<T>` / `list<T>` / `set<T>` from any iterator with a known length.
    pub fn seq<'a, T: Encode + 'a, I>(&mut self, items: I)
    where
        I: IntoIterator<Item = &'a T>,
        I::IntoIter: ExactSizeIterator,
    {
        let it = items.into_iter();
        self.len32(it.len());
        for v in it {
            v.encode(self);
        }
    }

    /// A `map<K, V>`.
    pub fn map<K: Encode, V: Encode>(&mut self, m: &BTreeMap<K, V>) {
        self.len32(m.len());
        for (k, v) in m {
            k.encode(self);
            v.encode(self);
        }
    }

    /// Any `T: Encode`.
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode(self);
    }

    /// `ENCODE_START(version, compat)`: writes the header with a length placeholder.
    pub fn struct_start(&mut self, version: u8, compat: u8) -> StructMark {
        self.u8(version);
        self.u8(compat);
        let at = self.buf.len();
        self.u32(0);
        StructMark(at)
    }

    /// `ENCODE_FINISH`: fills in the struct's length.
    pub fn struct_finish(&mut self, mark: StructMark) {
        let body = self.buf.len() - mark.0 - 4;
        let len = u32::try_from(body).unwrap_or(u32::MAX).to_le_bytes();
        self.buf[mark.0..mark.0 + 4].copy_from_slice(&len);
    }

    /// The encoded bytes.
    pub fn finish(self) -> Bytes {
        Bytes::from(self.buf)
    }
}

macro_rules! denc_int {
    ($($t:ident),*) => {$(
        impl Decode for $t {
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> { r.$t() }
        }
        impl Encode for $t {
            fn encode(&self, w: &mut Writer) { w.$t(*self) }
        }
    )*};
}
denc_int!(u8, u16, u32, u64, i16, i32, i64, bool);

impl Decode for String {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.string()
    }
}
impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.string(self)
    }
}
impl Encode for str {
    fn encode(&self, w: &mut Writer) {
        w.string(self)
    }
}
/// `Bytes` encodes as a bufferlist (`u32` length + bytes).
impl Decode for Bytes {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.bufferlist()
    }
}
impl Encode for Bytes {
    fn encode(&self, w: &mut Writer) {
        w.bufferlist(self)
    }
}
impl<T: Decode> Decode for Vec<T> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.vec()
    }
}
impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        w.seq(self.iter())
    }
}
impl<T: Decode + Ord> Decode for BTreeSet<T> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.set()
    }
}
impl<T: Encode> Encode for BTreeSet<T> {
    fn encode(&self, w: &mut Writer) {
        w.seq(self.iter())
    }
}
impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.map()
    }
}
impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, w: &mut Writer) {
        w.map(self)
    }
}
impl<A: Decode, B: Decode> Decode for (A, B) {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((A::decode(r)?, B::decode(r)?))
    }
}
impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, w: &mut Writer) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(b: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(b))
    }

    #[test]
    fn ints_are_little_endian() {
        let mut w = Writer::new(0);
        w.u16(0x0102);
        w.u32(0x0304_0506);
        w.i64(-2);
        let b = w.finish();
        assert_eq!(
            &b[..],
            &[2, 1, 6, 5, 4, 3, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let mut r = Reader::new(b);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u32().unwrap(), 0x0304_0506);
        assert_eq!(r.i64().unwrap(), -2);
        r.finish("ints").unwrap();
    }

    #[test]
    fn string_and_bufferlist_share_the_input() {
        let input = Bytes::from_static(b"\x05\x00\x00\x00admin\x02\x00\x00\x00xy");
        let mut r = Reader::new(input.clone());
        assert_eq!(r.string().unwrap(), "admin");
        let bl = r.bufferlist().unwrap();
        assert_eq!(&bl[..], b"xy");
        // Zero copy: the slice points into the input's allocation.
        assert_eq!(bl.as_ptr(), input[13..].as_ptr());
    }

    #[test]
    fn truncated_and_hostile_lengths_error_without_allocating() {
        assert_eq!(
            rd(b"\x01\x00").u32(),
            Err(DecodeError::Truncated { what: "u32" })
        );
        assert_eq!(
            rd(b"\xff\xff\xff\xff").string(),
            Err(DecodeError::Truncated { what: "string" })
        );
        // A vector claiming four billion elements fails before reserving them.
        assert_eq!(
            rd(b"\xff\xff\xff\xff\x00").vec::<u8>(),
            Err(DecodeError::Truncated { what: "container" })
        );
        assert_eq!(
            rd(b"\x02\x00\x00\x00\xff\xfe").string(),
            Err(DecodeError::Invalid {
                what: "utf-8 string"
            })
        );
    }

    #[test]
    fn containers_round_trip() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), 1u32);
        m.insert("b".to_string(), 2u32);
        let v = vec![7u64, 8, 9];
        let s: BTreeSet<i32> = [3, -1].into_iter().collect();
        let mut w = Writer::new(0);
        w.put(&m);
        w.put(&v);
        w.put(&s);
        let mut r = Reader::new(w.finish());
        assert_eq!(r.decode::<BTreeMap<String, u32>>().unwrap(), m);
        assert_eq!(r.decode::<Vec<u64>>().unwrap(), v);
        assert_eq!(r.decode::<BTreeSet<i32>>().unwrap(), s);
        r.finish("containers").unwrap();
    }

    #[test]
    fn struct_skips_unknown_trailing_fields() {
        // A v3 struct (compat 1) with one known u32 and four unknown bytes, then a sentinel.
        let mut w = Writer::new(0);
        let m = w.struct_start(3, 1);
        w.u32(42);
        w.u32(0xdead_beef);
        w.struct_finish(m);
        w.u8(0x55);
        let b = w.finish();
        assert_eq!(&b[..6], &[3, 1, 8, 0, 0, 0]);
        let mut r = Reader::new(b);
        let h = r.struct_start("test", 2).unwrap();
        assert_eq!((h.version, h.compat), (3, 1));
        assert_eq!(r.u32().unwrap(), 42);
        r.struct_end(h);
        assert_eq!(r.u8().unwrap(), 0x55);
        r.finish("test").unwrap();
    }

    #[test]
    fn struct_window_bounds_reads() {
        // struct_len 2 but the body tries to read a u32: Truncated, not an overrun.
        let mut r = rd(b"\x01\x01\x02\x00\x00\x00\xaa\xbb\xcc\xdd");
        let _h = r.struct_start("s", 1).unwrap();
        assert_eq!(r.u32(), Err(DecodeError::Truncated { what: "u32" }));
    }

    #[test]
    fn struct_rejects_newer_compat_and_lying_length() {
        assert_eq!(
            rd(b"\x05\x04\x00\x00\x00\x00").struct_start("s", 3),
            Err(DecodeError::UnsupportedVersion {
                what: "s",
                compat: 4,
                supported: 3
            })
        );
        assert_eq!(
            rd(b"\x01\x01\x09\x00\x00\x00\x00").struct_start("s", 1),
            Err(DecodeError::Truncated { what: "s" })
        );
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = rd(b"\x01\x02");
        r.u8().unwrap();
        assert_eq!(r.finish("x"), Err(DecodeError::TrailingData { what: "x" }));
    }
}

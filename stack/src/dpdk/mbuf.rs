//! An owned packet buffer.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::slice;

use dpdk_sys as sys;

use crate::checksum::{RxChecksum, RxState, TxChecksum};

/// One `rte_mbuf` (with any chained segments), owned: dropping it returns it to its pool
/// (`rte_pktmbuf_free`). `'a` is how long its pool is known to live.
///
/// The bytes it exposes ([`Mbuf::data`], `AsRef`/`AsMut`) are its first segment, the only
/// one frames built here have; check [`Mbuf::is_contiguous`] on received ones.
///
/// `Send` (the mempool's default ops are multi-producer, so any thread may free it) but not
/// `Sync`. The layout is exactly an `rte_mbuf *` (`repr(transparent)`), so bursts move arrays
/// of them to and from DPDK without copying.
#[repr(transparent)]
pub struct Mbuf<'a> {
    raw: NonNull<sys::rte_mbuf>,
    _pool: PhantomData<&'a ()>,
}

// SAFETY: an Mbuf is the only handle to its buffer; freeing it from another thread goes
// through the pool's thread-safe put (or the lcore cache of that thread, if it is an lcore).
unsafe impl Send for Mbuf<'_> {}

impl<'a> Mbuf<'a> {
    /// Takes ownership of a buffer.
    ///
    /// # Safety
    /// `raw` is a valid mbuf that nothing else owns or uses, from a pool alive for `'a`.
    pub(crate) unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Self {
        Self {
            raw,
            _pool: PhantomData,
        }
    }

    fn hdr(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as `self` lives.
        unsafe { self.raw.as_ref() }
    }

    /// Bytes in the first segment.
    pub fn len(&self) -> usize {
        usize::from(self.hdr().data_len)
    }

    pub fn is_empty(&self) -> bool {
        self.hdr().data_len == 0
    }

    /// Bytes in the whole packet (all segments).
    pub fn pkt_len(&self) -> usize {
        self.hdr().pkt_len as usize
    }

    /// Segments in the chain.
    pub fn segments(&self) -> u16 {
        self.hdr().nb_segs
    }

    /// Whether the whole packet is in [`Mbuf::data`].
    pub fn is_contiguous(&self) -> bool {
        self.hdr().nb_segs == 1
    }

    /// The port it was received on.
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// Offload flags (`RTE_MBUF_F_*`).
    pub fn ol_flags(&self) -> u64 {
        self.hdr().ol_flags
    }

    /// The device's verdicts on the checksums of a received frame (from `ol_flags`; all
    /// unknown unless the port enabled the RX checksum offloads).
    pub fn rx_checksum(&self) -> RxChecksum {
        let f = self.hdr().ol_flags;
        let state = |mask: u64, good: u64, bad: u64| match f & mask {
            m if m == mask => RxState::Partial,
            m if m == good => RxState::Good,
            m if m == bad => RxState::Bad,
            _ => RxState::Unknown,
        };
        RxChecksum {
            ip: state(
                sys::RTE_MBUF_F_RX_IP_CKSUM_MASK,
                sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD,
                sys::RTE_MBUF_F_RX_IP_CKSUM_BAD,
            ),
            l4: state(
                sys::RTE_MBUF_F_RX_L4_CKSUM_MASK,
                sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD,
                sys::RTE_MBUF_F_RX_L4_CKSUM_BAD,
            ),
        }
    }

    /// Marks an IPv4 frame (Ethernet header of `l2_len`, IP header of `l3_len` bytes) for
    /// the device to fill in the checksums of `what`; the TCP field must hold the
    /// pseudo-header sum. `false` (no change) if a length is out of range.
    pub fn offload_checksums(&mut self, what: TxChecksum, l2_len: usize, l3_len: usize) -> bool {
        let mut flags = sys::RTE_MBUF_F_TX_IPV4;
        if what.ipv4 {
            flags |= sys::RTE_MBUF_F_TX_IP_CKSUM;
        }
        if what.tcp {
            flags |= sys::RTE_MBUF_F_TX_TCP_CKSUM;
        }
        self.set_tx_offload(flags, l2_len, l3_len)
    }

    /// Asks the device for transmit offloads: sets `flags` (`RTE_MBUF_F_TX_*`, added to
    /// those set) and the header lengths it needs to find the fields: `l2_len` (< 128)
    /// and `l3_len` (< 512) bytes. `false` (and no change) if a length is out of range.
    pub fn set_tx_offload(&mut self, flags: u64, l2_len: usize, l3_len: usize) -> bool {
        if l2_len >= 1 << 7 || l3_len >= 1 << 9 {
            return false;
        }
        // SAFETY: we own a valid mbuf and hold the only reference (exclusive borrow); the
        // bitfield setters write inside `tx_offload`, a plain u64 in every variant of the
        // union.
        unsafe {
            let h = self.raw.as_mut();
            h.ol_flags |= flags;
            let lens = &mut h.__bindgen_anon_3.__bindgen_anon_1;
            lens.set_l2_len(l2_len as u64);
            lens.set_l3_len(l3_len as u64);
        }
        true
    }

    /// The header lengths set by [`Mbuf::set_tx_offload`] (or by a driver): (l2, l3).
    pub fn header_lens(&self) -> (usize, usize) {
        // SAFETY: every bit pattern of the union is a valid u64 bitfield.
        let lens = unsafe { &self.hdr().__bindgen_anon_3.__bindgen_anon_1 };
        (lens.l2_len() as usize, lens.l3_len() as usize)
    }

    /// Room before the data.
    pub fn headroom(&self) -> usize {
        usize::from(self.hdr().data_off)
    }

    /// Room after the data in the first segment.
    pub fn tailroom(&self) -> usize {
        let h = self.hdr();
        usize::from(h.buf_len).saturating_sub(usize::from(h.data_off) + usize::from(h.data_len))
    }

    fn data_ptr(&self) -> *mut u8 {
        let h = self.hdr();
        // SAFETY: data_off is within the buffer (DPDK keeps data_off + data_len <= buf_len).
        unsafe { h.buf_addr.cast::<u8>().add(usize::from(h.data_off)) }
    }

    /// The first segment's bytes.
    pub fn data(&self) -> &[u8] {
        // SAFETY: [data_ptr, +data_len) lies inside the buffer we own; the shared borrow of
        // self keeps it from being changed or freed meanwhile.
        unsafe { slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    /// The first segment's bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        debug_assert_eq!(self.refcnt(), 1, "a shared mbuf is not writable");
        // SAFETY: as in `data`; the buffer is ours alone (refcount 1: this module never
        // clones or attaches mbufs) and the exclusive borrow of self makes this the only view.
        unsafe { slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
    }

    fn refcnt(&self) -> u16 {
        // SAFETY: a valid mbuf; an atomic read.
        unsafe { sys::rte_mbuf_refcnt_read(self.raw.as_ptr()) }
    }

    /// Extends the data by `len` bytes at the end of the (last) segment and returns them;
    /// `None` when the tailroom is too small. The new bytes hold whatever the buffer held.
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let n = u16::try_from(len).ok()?;
        // SAFETY: a valid mbuf we own; DPDK checks the tailroom and returns NULL if short.
        let p = unsafe { sys::rte_pktmbuf_append(self.raw.as_ptr(), n) };
        let p = NonNull::new(p.cast::<u8>())?;
        // SAFETY: DPDK just reserved [p, p + len) inside the buffer for this data; the
        // exclusive borrow of self makes this the only view.
        Some(unsafe { slice::from_raw_parts_mut(p.as_ptr(), len) })
    }

    /// Removes `len` bytes from the end; `false` (and no change) if there are fewer.
    pub fn trim(&mut self, len: usize) -> bool {
        let Ok(n) = u16::try_from(len) else {
            return false;
        };
        // SAFETY: a valid mbuf we own; DPDK checks the length.
        unsafe { sys::rte_pktmbuf_trim(self.raw.as_ptr(), n) == 0 }
    }

    /// Frees many at once (`rte_pktmbuf_free_bulk`), leaving `mbufs` empty.
    pub fn free_bulk(mbufs: &mut Vec<Self>) {
        let n = mbufs.len();
        if n == 0 {
            return;
        }
        let count = u32::try_from(n).expect("fewer than 2^32 mbufs");
        let p = mbufs.as_mut_ptr().cast::<*mut sys::rte_mbuf>();
        // SAFETY: the Vec no longer owns its elements (set_len first), so each mbuf is freed
        // exactly once, by DPDK; `Mbuf` is a transparent `rte_mbuf *`, so the buffer is an
        // array of `count` valid mbuf pointers. The allocation itself stays the Vec's.
        unsafe {
            mbufs.set_len(0);
            sys::rte_pktmbuf_free_bulk(p, count);
        }
    }
}

impl Drop for Mbuf<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf (chain) and nothing uses it after this.
        unsafe { sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl AsRef<[u8]> for Mbuf<'_> {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl fmt::Debug for Mbuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("addr", &self.raw)
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("segments", &self.segments())
            .finish()
    }
}

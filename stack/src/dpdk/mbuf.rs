//! An owned packet buffer.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::slice;

use dpdk_sys as sys;

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

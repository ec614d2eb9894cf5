//! Packet-buffer pools, and how big to make them.

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::{c_name, errno, non_null, DpdkError, Eal, Mbuf};

/// A pktmbuf pool (`rte_pktmbuf_pool_create`), freed on drop. It cannot outlive the [`Eal`],
/// and no [`Mbuf`] can outlive it: mbufs borrow the pool they come from.
///
/// How many mbufs: see [`PoolSizing`]. Memory: each mbuf costs its data room plus about 192
/// bytes (the 128-byte `rte_mbuf` and the mempool's object header, cache-line aligned): with
/// the default 2176-byte data room (2048 + 128 headroom), 8191 mbufs take about 19 MiB.
///
/// `Send` and `Sync`: the default mempool ops are multi-producer/multi-consumer; each EAL
/// lcore gets and puts through its own cache, other threads go to the shared ring.
pub struct Mempool<'eal> {
    raw: NonNull<sys::rte_mempool>,
    _eal: PhantomData<&'eal ()>,
}

// SAFETY: the pool's get/put operations are thread-safe (ring_mp_mc ops); the handle itself
// is only a pointer that is freed once, by Drop.
unsafe impl Send for Mempool<'_> {}
// SAFETY: as above; every &self method is a thread-safe DPDK call or a read of a field that
// never changes after creation.
unsafe impl Sync for Mempool<'_> {}

impl<'eal> Mempool<'eal> {
    /// A pool of `n` mbufs with `data_room` bytes each (including the
    /// `RTE_PKTMBUF_HEADROOM` of 128: use `RTE_MBUF_DEFAULT_BUF_SIZE`, 2176, for 1500-byte
    /// frames), a per-lcore cache of `cache` (at most 512, and `n` must exceed 1.5 × cache;
    /// 0 disables it), on NUMA `socket` (`SOCKET_ID_ANY` for any). Names are unique per
    /// process, at most 25 bytes.
    pub fn pktmbuf(
        _eal: &'eal Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Self, DpdkError> {
        const OP: &str = "rte_pktmbuf_pool_create";
        if cache > sys::RTE_MEMPOOL_CACHE_MAX_SIZE {
            return Err(DpdkError::new(OP, errno::EINVAL));
        }
        let cname = c_name(name, OP)?;
        // SAFETY: EAL is initialised (we hold a borrow of the guard); the name is a
        // NUL-terminated string DPDK copies; sizes are checked by DPDK.
        let raw =
            unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        Ok(Self {
            raw: non_null(raw, OP)?,
            _eal: PhantomData,
        })
    }

    /// One empty mbuf (headroom reserved, no data), or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf<'_>> {
        // SAFETY: a valid pool; DPDK returns NULL when it is empty.
        let m = unsafe { sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a fresh mbuf from this pool, owned by nobody else.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// `n` empty mbufs appended to `out`, all or none (`ENOENT` when the pool has fewer).
    pub fn alloc_bulk<'p>(&'p self, out: &mut Vec<Mbuf<'p>>, n: usize) -> Result<(), DpdkError> {
        const OP: &str = "rte_pktmbuf_alloc_bulk";
        let count = u32::try_from(n).map_err(|_| DpdkError::new(OP, errno::EINVAL))?;
        out.reserve(n);
        let len = out.len();
        // SAFETY: `out` has room for n more elements; Mbuf is a transparent `rte_mbuf *`, so
        // DPDK fills n slots with valid mbuf pointers, or none of them on failure.
        unsafe {
            let slots = out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>();
            rte_call!(rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), slots, count))?;
            out.set_len(len + n);
        }
        Ok(())
    }

    /// Mbufs the pool was created with.
    pub fn size(&self) -> u32 {
        // SAFETY: a valid pool; `size` never changes after creation.
        unsafe { self.raw.as_ref().size }
    }

    /// Mbufs available (in the shared ring and in the lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: a valid pool.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs out of the pool: held by the application, in device rings, in a ring link.
    pub fn in_use(&self) -> u32 {
        // SAFETY: a valid pool.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// Data room of each mbuf, headroom included.
    pub fn data_room(&self) -> u16 {
        // SAFETY: a valid pktmbuf pool (its private area holds the data room).
        unsafe { sys::rte_pktmbuf_data_room_size(self.raw.as_ptr()) }
    }

    pub fn name(&self) -> String {
        // SAFETY: a valid pool; `name` is a NUL-terminated array inside it.
        unsafe { CStr::from_ptr(self.raw.as_ref().name.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool<'_> {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use > 0 {
            // Only leaked mbufs can still be out (the rest borrowed the pool): they are never
            // touched again, so freeing the pool under them is harmless; say so.
            tracing::warn!(pool = %self.name(), in_use, "mempool freed with mbufs out");
        }
        // SAFETY: nothing that may still use the pool exists (mbufs and ports borrow it).
        unsafe { sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Mempool<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// How many mbufs a pool needs so that no stage ever waits for one.
///
/// Every mbuf is in exactly one place at any time, so a pool must cover the sum of all the
/// places that can hold its mbufs at once:
/// - `rx_descs`: every RX descriptor of every queue this pool feeds holds an mbuf, posted in
///   advance (a ring link has no descriptors: count its ring here, since the peer's frames
///   wait there);
/// - `tx_descs`: a TX ring keeps sent mbufs until the device reports them done and the PMD
///   frees them, lazily (`tx_free_thresh`);
/// - `in_flight`: what the application holds: received frames queued in shards, frames
///   queued for the device (`StackConfig::tx_queue_max`), frames waiting for ARP, bursts in
///   hand;
/// - `lcores × cache × 1.5`: each lcore's cache may hold up to 1.5 × its size (the flush
///   threshold), which other lcores cannot reach;
/// - `retransmit`: segments pinned for retransmission by a zero-copy transmit path (this
///   stack copies payload into smoltcp's socket buffers and pins none, but keep a margin for
///   bursts and for a future zero-copy path).
///
/// [`PoolSizing::mbufs`] rounds the sum up to 2^k − 1, the size DPDK's ring-based pool
/// stores most efficiently. Example: one port, 1024 RX + 1024 TX descriptors, 1024 frames
/// queued, one lcore with a 256 cache, 512 spare → 3968 → 4095 mbufs (about 9.5 MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSizing {
    pub rx_descs: u32,
    pub tx_descs: u32,
    pub in_flight: u32,
    pub lcores: u32,
    pub cache: u32,
    pub retransmit: u32,
}

impl PoolSizing {
    /// The pool size: the sum above, rounded up to 2^k − 1.
    pub fn mbufs(&self) -> u32 {
        let caches = u64::from(self.lcores) * u64::from(self.cache) * 3 / 2;
        let sum = u64::from(self.rx_descs)
            + u64::from(self.tx_descs)
            + u64::from(self.in_flight)
            + caches
            + u64::from(self.retransmit);
        let size = (sum + 1).next_power_of_two() - 1;
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::PoolSizing;

    #[test]
    fn pool_sizing_sums_and_rounds_to_two_to_the_k_minus_one() {
        let s = PoolSizing {
            rx_descs: 1024,
            tx_descs: 1024,
            in_flight: 1024,
            lcores: 1,
            cache: 256,
            retransmit: 512,
        };
        assert_eq!(s.mbufs(), 4095);
        assert_eq!(
            PoolSizing {
                rx_descs: 4095,
                ..PoolSizing::default()
            }
            .mbufs(),
            4095
        );
        assert_eq!(
            PoolSizing {
                rx_descs: 4096,
                ..PoolSizing::default()
            }
            .mbufs(),
            8191
        );
    }
}

//! [`Port`] over one RX/TX queue pair of a DPDK port: what a [`crate::NetStack`] runs on in
//! production. Safe code only; the DPDK calls are in [`crate::dpdk`].

use std::collections::VecDeque;

use crate::checksum::{RxChecksum, TxChecksum};
use crate::dpdk::{
    self, DpdkError, Eal, EthPort, Mbuf, Mempool, PoolSizing, RxQueue, Started, TxQueue,
};
use crate::l2::ETH_HLEN;
use crate::port::Port;

/// Counters of one queue pair, beyond the device's own ([`EthPort::stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DpdkPortStats {
    pub rx_frames: u64,
    /// Received frames spread over several mbufs (the stack reads one segment): dropped.
    pub rx_chained: u64,
    pub tx_frames: u64,
    /// `tx_burst` calls where the device took fewer frames than offered (ring full); the
    /// rest stayed queued, in order.
    pub tx_partial: u64,
    /// Allocations that failed because the pool was empty.
    pub nombuf: u64,
    /// Allocations refused because the frame does not fit one mbuf.
    pub too_long: u64,
}

/// RX and TX queue `queue` of a started port, with the pool that transmit buffers come
/// from. The frames are [`Mbuf`]s: received ones are handed over as they came (no copy),
/// transmitted ones go to the device as they were filled.
pub struct DpdkPort<'p, 'a> {
    rx: RxQueue<'p, 'a>,
    tx: TxQueue<'p, 'a>,
    pool: &'a Mempool<'a>,
    mtu: usize,
    /// Largest frame one mbuf of `pool` holds.
    max_frame: usize,
    /// Checksums the device computes on transmit (enabled at configure).
    tx_checksum: TxChecksum,
    stats: DpdkPortStats,
}

impl<'p, 'a> DpdkPort<'p, 'a> {
    /// Takes RX and TX queue `queue` of `port` (each once per start) and allocates transmit
    /// frames from `pool`. The MTU is the port's, capped to what one mbuf holds. The
    /// checksum offloads are those the port was configured with.
    pub fn new(
        port: &'p EthPort<'a, Started>,
        queue: u16,
        pool: &'a Mempool<'a>,
    ) -> Result<Self, DpdkError> {
        let rx = port.rx_queue(queue)?;
        let tx = port.tx_queue(queue)?;
        let headroom = dpdk::PKTMBUF_HEADROOM;
        let max_frame = usize::from(pool.data_room()).saturating_sub(headroom);
        let mtu = usize::from(port.mtu()?).min(max_frame.saturating_sub(ETH_HLEN));
        Ok(Self {
            rx,
            tx,
            pool,
            mtu,
            max_frame,
            tx_checksum: port.config().tx_checksum(),
            stats: DpdkPortStats::default(),
        })
    }

    pub fn stats(&self) -> DpdkPortStats {
        self.stats
    }

    pub fn port_id(&self) -> u16 {
        self.rx.port_id()
    }

    pub fn queue_id(&self) -> u16 {
        self.rx.queue_id()
    }

    pub fn pool(&self) -> &'a Mempool<'a> {
        self.pool
    }
}

impl<'a> Port for DpdkPort<'_, 'a> {
    type Frame = Mbuf<'a>;

    fn rx_burst(&mut self, out: &mut Vec<Mbuf<'a>>, max: usize) -> usize {
        let start = out.len();
        let n = self.rx.rx_burst(out, max);
        if n == 0 {
            return 0;
        }
        // Chained frames are rare (jumbo frames with scatter RX); keep arrival order.
        if out[start..].iter().any(|m| !m.is_contiguous()) {
            let mut i = start;
            while i < out.len() {
                if out[i].is_contiguous() {
                    i += 1;
                } else {
                    out.remove(i);
                    self.stats.rx_chained += 1;
                }
            }
        }
        let kept = out.len() - start;
        self.stats.rx_frames += kept as u64;
        kept
    }

    fn alloc(&mut self, len: usize) -> Option<Mbuf<'a>> {
        if len > self.max_frame {
            self.stats.too_long += 1;
            return None;
        }
        let Some(mut m) = self.pool.alloc() else {
            self.stats.nombuf += 1;
            return None;
        };
        // Cannot fail: a fresh mbuf has data_room - headroom >= len bytes of tailroom.
        m.append(len)?;
        Some(m)
    }

    fn tx_burst(&mut self, frames: &mut VecDeque<Mbuf<'a>>) -> usize {
        let offered = frames.len();
        let n = self.tx.tx_burst(frames);
        if n < offered {
            self.stats.tx_partial += 1;
        }
        self.stats.tx_frames += n as u64;
        n
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn rx_checksum(&self, frame: &Mbuf<'a>) -> RxChecksum {
        frame.rx_checksum()
    }

    fn tx_checksum(&self) -> TxChecksum {
        self.tx_checksum
    }

    fn offload_tx(&self, frame: &mut Mbuf<'a>, ihl: usize, what: TxChecksum) {
        frame.offload_checksums(what, ETH_HLEN, ihl);
    }
}

/// A pool for one stack on one queue pair: what the stack holds at once with default bounds
/// ([`crate::netstack::DEFAULT_FRAMES_HELD`]), what the device keeps in its rings
/// (`rx_descs`, `tx_descs`: zero for PMDs that copy frames in and out, like af_packet and
/// vhost), one lcore's cache of `cache`, and retransmission headroom.
pub fn stack_pool<'e>(
    eal: &'e Eal,
    name: &str,
    rx_descs: u32,
    tx_descs: u32,
    cache: u32,
) -> Result<Mempool<'e>, DpdkError> {
    stack_pool_mtu(eal, name, rx_descs, tx_descs, cache, 1500)
}

/// The mbuf data room (headroom included) that holds one frame of an `mtu`-byte IP packet
/// in a single segment: the standard 2176 bytes up to MTU 1500 (and a little beyond), more
/// for jumbo frames.
pub fn data_room_for(mtu: u16) -> u16 {
    // Ethernet header, a VLAN tag, the FCS, room for a device's own header in the buffer
    // (virtio's net header: virtio_user refuses a queue whose buffers cannot take a whole
    // frame with it), then the headroom; a cache-line multiple.
    let need = u32::from(mtu) + 14 + 4 + 4 + 64 + 128;
    let need = need.div_ceil(64) * 64;
    u16::try_from(need.max(u32::from(dpdk::MBUF_DEFAULT_DATA_ROOM))).unwrap_or(u16::MAX)
}

/// [`stack_pool`] for frames of an `mtu`-byte IP packet (jumbo frames: bigger mbufs, so a
/// frame never spans a chain).
pub fn stack_pool_mtu<'e>(
    eal: &'e Eal,
    name: &str,
    rx_descs: u32,
    tx_descs: u32,
    cache: u32,
    mtu: u16,
) -> Result<Mempool<'e>, DpdkError> {
    let sizing = PoolSizing {
        rx_descs,
        tx_descs,
        in_flight: crate::netstack::DEFAULT_FRAMES_HELD as u32,
        lcores: 1,
        cache,
        retransmit: 512,
    };
    Mempool::pktmbuf(
        eal,
        name,
        sizing.mbufs(),
        cache,
        data_room_for(mtu),
        eal.socket_id(),
    )
}

//! A queue pair that moves Ethernet frames: what a [`crate::NetStack`] runs on.

use crate::checksum::{RxChecksum, TxChecksum};

/// One RX/TX queue pair of a device, owned by one worker.
pub trait Port {
    /// A received or to-be-sent frame (an mbuf handle, or a `Vec<u8>` in tests).
    type Frame: AsRef<[u8]> + AsMut<[u8]>;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Self::Frame>, max: usize) -> usize;

    /// A frame of exactly `len` bytes to fill and send, or `None` when buffers ran out.
    fn alloc(&mut self, len: usize) -> Option<Self::Frame>;

    /// Sends frames from the front of `frames`; those the device did not take stay there
    /// (in order) for the next call. Returns how many were sent.
    fn tx_burst(&mut self, frames: &mut std::collections::VecDeque<Self::Frame>) -> usize;

    /// Largest IP packet the link carries (Ethernet payload: 1500 for a standard MTU).
    fn mtu(&self) -> usize {
        1500
    }

    /// What the device verified of a received frame's checksums (nothing, by default: the
    /// stack sums it in software).
    fn rx_checksum(&self, _frame: &Self::Frame) -> RxChecksum {
        RxChecksum::default()
    }

    /// Checksums the device fills in for frames passed to [`Port::offload_tx`].
    fn tx_checksum(&self) -> TxChecksum {
        TxChecksum::NONE
    }

    /// Asks the device to fill in the checksums `what` (a subset of [`Port::tx_checksum`]) in
    /// `frame`: an Ethernet frame carrying IPv4 with a header of `ihl` bytes and, if
    /// `what.tcp`, a TCP segment whose checksum field holds the pseudo-header sum.
    fn offload_tx(&self, _frame: &mut Self::Frame, _ihl: usize, _what: TxChecksum) {}
}

//! Two ports joined back to back by two `rte_ring`s, inside one process.

use std::cell::Cell;
use std::ffi::c_uint;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::{c_name, errno, non_null, DpdkError, Eal, EthPort, Unconfigured};

/// A wire between two ports: ring `ab` carries what port A transmits to port B's receive
/// queue, ring `ba` the other way (`rte_eth_from_rings`, ring PMD, one queue pair each). No
/// root, hugepages or sockets needed; the ring only passes mbuf pointers.
///
/// The ports borrow the link, so the rings outlive them. Mbufs still inside the rings when
/// the link is dropped are leaked, not freed (their pools may be gone): drain both ports
/// first ([`RingLink::in_flight`] tells). The rings are single-producer/single-consumer,
/// which the one-handle-per-queue rule of [`EthPort`] guarantees.
///
/// Port names (`net_ring_<name>_a`, `_b`, at most 29 bytes) stay taken for the life of the
/// process: the ring PMD's virtual device outlives its closed port.
pub struct RingLink<'eal> {
    name: String,
    ab: NonNull<sys::rte_ring>,
    ba: NonNull<sys::rte_ring>,
    socket: c_uint,
    ports_made: Cell<bool>,
    _eal: PhantomData<&'eal ()>,
}

impl<'eal> RingLink<'eal> {
    /// Two rings of `capacity` slots (a power of two; each holds `capacity - 1` mbufs) on
    /// this thread's NUMA socket. The ring names (`<name>_ab`, `<name>_ba`) and the port
    /// names derive from `name`.
    pub fn new(eal: &'eal Eal, name: &str, capacity: u32) -> Result<Self, DpdkError> {
        const OP: &str = "rte_ring_create";
        let socket = eal.socket_id().max(0);
        let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ;
        let create = |suffix: &str| -> Result<NonNull<sys::rte_ring>, DpdkError> {
            let cname = c_name(&format!("{name}_{suffix}"), OP)?;
            // SAFETY: EAL is initialised; DPDK copies the NUL-terminated name and checks
            // the count (a power of two) and flags.
            let r = unsafe { sys::rte_ring_create(cname.as_ptr(), capacity, socket, flags) };
            non_null(r, OP)
        };
        let ab = create("ab")?;
        let ba = match create("ba") {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: created above, used by nothing.
                unsafe { sys::rte_ring_free(ab.as_ptr()) };
                return Err(e);
            }
        };
        Ok(Self {
            name: name.to_owned(),
            ab,
            ba,
            socket: socket.unsigned_abs(),
            ports_made: Cell::new(false),
            _eal: PhantomData,
        })
    }

    /// Creates the two ports, A (receives from `ba`, sends into `ab`) and B (the reverse),
    /// unconfigured. Once per link (`EBUSY` after that).
    pub fn ports(
        &self,
    ) -> Result<(EthPort<'_, Unconfigured>, EthPort<'_, Unconfigured>), DpdkError> {
        if self.ports_made.replace(true) {
            return Err(DpdkError::new("rte_eth_from_rings", errno::EBUSY));
        }
        let a = self.port("a", self.ba, self.ab)?;
        let b = self.port("b", self.ab, self.ba)?;
        Ok((a, b))
    }

    fn port(
        &self,
        suffix: &str,
        rx: NonNull<sys::rte_ring>,
        tx: NonNull<sys::rte_ring>,
    ) -> Result<EthPort<'_, Unconfigured>, DpdkError> {
        let cname = c_name(&format!("{}_{suffix}", self.name), "rte_eth_from_rings")?;
        let (rx, tx) = (rx.as_ptr(), tx.as_ptr());
        // SAFETY: EAL is initialised; the name is NUL-terminated; the two one-element ring
        // arrays are read during the call only; the rings outlive the port (it borrows self).
        let id = unsafe {
            rte_call!(errno rte_eth_from_rings(cname.as_ptr(), &rx, 1, &tx, 1, self.socket))?
        };
        let id =
            u16::try_from(id).map_err(|_| DpdkError::new("rte_eth_from_rings", errno::ENOSPC))?;
        EthPort::created(id)
    }

    /// Mbufs in the rings now: (A to B, B to A).
    pub fn in_flight(&self) -> (u32, u32) {
        // SAFETY: valid rings; a count read races benignly with a producer or consumer.
        unsafe {
            (
                sys::rte_ring_count(self.ab.as_ptr()),
                sys::rte_ring_count(self.ba.as_ptr()),
            )
        }
    }
}

impl Drop for RingLink<'_> {
    fn drop(&mut self) {
        let (ab, ba) = self.in_flight();
        if ab + ba > 0 {
            tracing::warn!(link = %self.name, ab, ba, "ring link dropped with mbufs inside (leaked)");
        }
        // SAFETY: the ports made from the rings borrowed the link and are closed; the ring
        // PMD attached to these rings and never frees them itself.
        unsafe {
            sys::rte_ring_free(self.ab.as_ptr());
            sys::rte_ring_free(self.ba.as_ptr());
        }
    }
}

impl fmt::Debug for RingLink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingLink")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

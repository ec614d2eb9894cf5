//! Ethernet ports with a typestate lifecycle, and their RX/TX queue handles.
//!
//! The order is DPDK's (`examples/skeleton/basicfwd.c` `port_init`): query `dev_info`,
//! `rte_eth_dev_configure`, set up every RX and TX queue, `rte_eth_dev_start`. Each step
//! consumes the previous state, so a port cannot be started unconfigured or reconfigured
//! while its queues are polled.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{c_uint, CStr};
use std::fmt;
use std::marker::PhantomData;
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::{errno, DpdkError, Eal, Mbuf, Mempool};

mod sealed {
    pub trait Sealed {}
}

/// A port's lifecycle state.
pub trait PortState: sealed::Sealed {}

/// Just opened: only queries and [`EthPort::configure`].
#[derive(Debug)]
pub enum Unconfigured {}
/// Configured: set up every queue, then [`EthPort::start`].
#[derive(Debug)]
pub enum Configured {}
/// Started: take queue handles and poll them.
#[derive(Debug)]
pub enum Started {}

impl sealed::Sealed for Unconfigured {}
impl sealed::Sealed for Configured {}
impl sealed::Sealed for Started {}
impl PortState for Unconfigured {}
impl PortState for Configured {}
impl PortState for Started {}

const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;

/// Which port ids have a live [`EthPort`]: at most one handle per port, so no two owners
/// can start, stop, close or poll the same queues.
static CLAIMED: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// Owns a port id: stops (if started) and closes the port on drop, then releases the claim.
/// Holds the port's invariant lifetime, so dropping a port needs `'a` (its pools) alive.
struct Owned<'a> {
    id: u16,
    started: bool,
    _life: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl Owned<'_> {
    fn claim(id: u16) -> Result<Self, DpdkError> {
        let slot = CLAIMED
            .get(usize::from(id))
            .ok_or(DpdkError::new("claim port", errno::ENODEV))?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::new("claim port", errno::EBUSY));
        }
        Ok(Self {
            id,
            started: false,
            _life: PhantomData,
        })
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        if self.started {
            // SAFETY: we own the port; its queue handles borrowed it and are gone.
            if let Err(e) = unsafe { rte_call!(rte_eth_dev_stop(self.id)) } {
                tracing::warn!(port = self.id, "{e}");
            }
        }
        // SAFETY: as above; after this the id is invalid until DPDK reuses it.
        if let Err(e) = unsafe { rte_call!(rte_eth_dev_close(self.id)) } {
            tracing::warn!(port = self.id, "{e}");
        }
        CLAIMED[usize::from(self.id)].store(false, Ordering::Release);
    }
}

/// What a device reports about itself (`rte_eth_dev_info_get`), the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// `RTE_ETH_RX_OFFLOAD_*` the device can do.
    pub rx_offload_capa: u64,
    /// `RTE_ETH_TX_OFFLOAD_*` the device can do.
    pub tx_offload_capa: u64,
    /// `RTE_ETH_RSS_*` hash types; 0 means no RSS at all.
    pub flow_type_rss_offloads: u64,
    pub hash_key_size: u8,
    pub reta_size: u16,
    pub min_mtu: u16,
    pub max_mtu: u16,
    pub max_rx_pktlen: u32,
    /// RX descriptors per queue: (min, max, alignment).
    pub rx_desc_lim: (u16, u16, u16),
    pub tx_desc_lim: (u16, u16, u16),
    /// The device's NUMA socket (-1 when unknown).
    pub socket: i32,
}

impl DevInfo {
    fn query(id: u16) -> Result<Self, DpdkError> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: a valid port id; `info` is a properly sized out-parameter.
        unsafe { rte_call!(rte_eth_dev_info_get(id, &mut info))? };
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: the driver name is a static NUL-terminated string of the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: a valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let lim = |l: sys::rte_eth_desc_lim| (l.nb_min, l.nb_max, l.nb_align);
        Ok(Self {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rx_offload_capa: info.rx_offload_capa,
            tx_offload_capa: info.tx_offload_capa,
            flow_type_rss_offloads: info.flow_type_rss_offloads,
            hash_key_size: info.hash_key_size,
            reta_size: info.reta_size,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            max_rx_pktlen: info.max_rx_pktlen,
            rx_desc_lim: lim(info.rx_desc_lim),
            tx_desc_lim: lim(info.tx_desc_lim),
            socket,
        })
    }

    /// Whether the device can spread flows over queues by hash.
    pub fn supports_rss(&self) -> bool {
        self.flow_type_rss_offloads != 0
    }
}

/// What to ask of a device in [`EthPort::configure`]. Only what the device reports is
/// enabled: offloads are masked with its capabilities, RSS is used only if it hashes at
/// least one of `rss_hf`. [`EthPort::config`] tells what was enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// Spread flows over the RX queues by hash (RSS).
    pub rss: bool,
    /// `RTE_ETH_RSS_*` hash types wanted.
    pub rss_hf: u64,
    /// Our own Toeplitz key (exactly the device's `hash_key_size`), so software RSS
    /// ([`crate::rss`]) predicts the queue of a flow; `None` keeps the device's key.
    pub rss_key: Option<Vec<u8>>,
    /// `RTE_ETH_RX_OFFLOAD_*` wanted.
    pub rx_offloads: u64,
    /// `RTE_ETH_TX_OFFLOAD_*` wanted.
    pub tx_offloads: u64,
    /// MTU to set (within the device's min/max); `None` keeps 1500.
    pub mtu: Option<u16>,
}

impl PortConfig {
    /// `rx_queues`/`tx_queues` queues; RSS on TCP/IPv4 when there is more than one RX
    /// queue; the IPv4 and TCP checksum offloads both ways ([`PortConfig::CHECKSUM_RX`],
    /// [`PortConfig::CHECKSUM_TX`]), where the device has them.
    pub fn new(rx_queues: u16, tx_queues: u16) -> Self {
        Self {
            rx_queues,
            tx_queues,
            rss: rx_queues > 1,
            rss_hf: sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP,
            rss_key: None,
            rx_offloads: Self::CHECKSUM_RX,
            tx_offloads: Self::CHECKSUM_TX,
            mtu: None,
        }
    }

    /// The receive checksum offloads the stack uses: the device verifies IPv4 headers and
    /// TCP segments and says so in each mbuf.
    pub const CHECKSUM_RX: u64 =
        sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
    /// The transmit checksum offloads the stack uses: the device fills in IPv4 header and
    /// TCP checksums of marked mbufs.
    pub const CHECKSUM_TX: u64 =
        sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM;

    /// The transmit checksums enabled in this (enabled) configuration.
    pub fn tx_checksum(&self) -> crate::checksum::TxChecksum {
        crate::checksum::TxChecksum {
            ipv4: self.tx_offloads & sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM != 0,
            tcp: self.tx_offloads & sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM != 0,
        }
    }
}

/// Port counters (`rte_eth_stats_get`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Received packets dropped by the device because the RX queue was full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX descriptors that could not be refilled: the pool ran dry.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// An Ethernet port in lifecycle state `S`, with one invariant lifetime `'a` that its RX
/// pools, its received mbufs and every mbuf it transmits share (so none of those pools can
/// be freed while the port could still hold or return one of their buffers). Dropping it
/// stops (if started) and closes the port.
///
/// Not `Sync`: control calls go through one thread. The queue handles it gives out are
/// `Send`, for the lcores that poll them.
pub struct EthPort<'a, S: PortState> {
    // Dropped first: the port is closed before the RSS key it may read goes away.
    own: Owned<'a>,
    info: DevInfo,
    /// What `configure` enabled (`rss_key` is read by some PMDs at start: it lives here,
    /// on the heap, for as long as the port).
    config: Option<PortConfig>,
    rx_ready: Vec<bool>,
    tx_ready: Vec<bool>,
    rx_taken: Vec<Cell<bool>>,
    tx_taken: Vec<Cell<bool>>,
    _state: PhantomData<S>,
}

impl<'a> EthPort<'a, Unconfigured> {
    /// Takes port `id` (probed by EAL, e.g. from `--vdev`); `EBUSY` if another handle has
    /// it, `ENODEV` if there is no such port.
    pub fn open(_eal: &'a Eal, id: u16) -> Result<Self, DpdkError> {
        // SAFETY: EAL is initialised; any id may be asked about.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::new("rte_eth_dev_is_valid_port", errno::ENODEV));
        }
        Self::from_owned(Owned::claim(id)?)
    }

    /// A port this module just created (ring link); closed again on error.
    pub(crate) fn created(id: u16) -> Result<Self, DpdkError> {
        match Owned::claim(id) {
            Ok(own) => Self::from_owned(own),
            Err(e) => {
                // SAFETY: we created this port a moment ago and nobody else has a handle.
                let _ = unsafe { sys::rte_eth_dev_close(id) };
                Err(e)
            }
        }
    }

    fn from_owned(own: Owned<'a>) -> Result<Self, DpdkError> {
        let info = DevInfo::query(own.id)?;
        Ok(Self {
            own,
            info,
            config: None,
            rx_ready: Vec::new(),
            tx_ready: Vec::new(),
            rx_taken: Vec::new(),
            tx_taken: Vec::new(),
            _state: PhantomData,
        })
    }

    /// `rte_eth_dev_configure` with what the device supports of `want` (see [`PortConfig`]).
    /// On error the port is closed.
    pub fn configure(self, want: &PortConfig) -> Result<EthPort<'a, Configured>, DpdkError> {
        const OP: &str = "rte_eth_dev_configure";
        let info = &self.info;
        if want.rx_queues > info.max_rx_queues || want.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(OP, errno::EINVAL));
        }
        if let Some(mtu) = want.mtu {
            if mtu < info.min_mtu || mtu > info.max_mtu {
                return Err(DpdkError::new(OP, errno::EINVAL));
            }
        }
        let rss_hf = want.rss_hf & info.flow_type_rss_offloads;
        let rss = want.rss && rss_hf != 0;
        let rss_key = match (&want.rss_key, rss) {
            (Some(k), true) => {
                if k.len() != usize::from(info.hash_key_size) {
                    return Err(DpdkError::new(OP, errno::EINVAL));
                }
                Some(k.clone())
            }
            // Always our own key: a PMD's default key differs between drivers, and the
            // stack must predict the hash (`EthPort::steering`). Toeplitz over a TCP/IPv4
            // 4-tuple reads the first 16 bytes; a longer key is padded.
            (None, true) => {
                let mut k = crate::rss::DEFAULT_KEY.to_vec();
                k.resize(usize::from(info.hash_key_size), 0);
                Some(k)
            }
            _ => None,
        };
        let mut enabled = PortConfig {
            rx_queues: want.rx_queues,
            tx_queues: want.tx_queues,
            rss,
            rss_hf: if rss { rss_hf } else { 0 },
            rss_key,
            rx_offloads: want.rx_offloads & info.rx_offload_capa,
            tx_offloads: want.tx_offloads & info.tx_offload_capa,
            mtu: want.mtu,
        };
        let mut conf = sys::rte_eth_conf::default();
        conf.rxmode.offloads = enabled.rx_offloads;
        conf.txmode.offloads = enabled.tx_offloads;
        conf.rxmode.mtu = want.mtu.map_or(0, u32::from);
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            let rc = &mut conf.rx_adv_conf.rss_conf;
            rc.rss_hf = rss_hf;
            if let Some(k) = enabled.rss_key.as_mut() {
                rc.rss_key = k.as_mut_ptr();
                rc.rss_key_len = info.hash_key_size;
            }
        }
        // SAFETY: a port we own, not started; `conf` is fully initialised, and the key it
        // may point to lives in `self.config` until the port is closed.
        unsafe {
            rte_call!(rte_eth_dev_configure(
                self.own.id,
                want.rx_queues,
                want.tx_queues,
                &conf
            ))?;
        }
        let mut port = self.into_state::<Configured>();
        port.rx_ready = vec![false; usize::from(want.rx_queues)];
        port.tx_ready = vec![false; usize::from(want.tx_queues)];
        port.config = Some(enabled);
        Ok(port)
    }
}

impl<'a> EthPort<'a, Configured> {
    /// What `configure` enabled.
    pub fn config(&self) -> &PortConfig {
        self.config.as_ref().expect("configured")
    }

    /// Sets up RX queue `queue` with `descs` descriptors (adjusted to the device's limits;
    /// the number used is returned), filled from `pool`, which must outlive the port.
    pub fn rx_queue_setup(
        &mut self,
        queue: u16,
        descs: u16,
        pool: &'a Mempool<'_>,
    ) -> Result<u16, DpdkError> {
        let ready = self
            .rx_ready
            .get_mut(usize::from(queue))
            .ok_or(DpdkError::new("rte_eth_rx_queue_setup", errno::EINVAL))?;
        let id = self.own.id;
        let mut n = descs;
        // SAFETY: a configured port we own; `n` is an in/out parameter, the TX one is NULL.
        unsafe {
            rte_call!(rte_eth_dev_adjust_nb_rx_tx_desc(
                id,
                &mut n,
                ptr::null_mut()
            ))?
        };
        let socket = socket_arg(self.info.socket);
        // SAFETY: a configured, stopped port we own; NULL rxconf means the device defaults
        // plus the port's offloads; the pool outlives the port ('a).
        unsafe {
            rte_call!(rte_eth_rx_queue_setup(
                id,
                queue,
                n,
                socket,
                ptr::null(),
                pool.as_ptr()
            ))?;
        }
        *ready = true;
        Ok(n)
    }

    /// Sets up TX queue `queue` with `descs` descriptors (adjusted; the number used is
    /// returned).
    pub fn tx_queue_setup(&mut self, queue: u16, descs: u16) -> Result<u16, DpdkError> {
        let ready = self
            .tx_ready
            .get_mut(usize::from(queue))
            .ok_or(DpdkError::new("rte_eth_tx_queue_setup", errno::EINVAL))?;
        let id = self.own.id;
        let mut n = descs;
        // SAFETY: a configured port we own; `n` is an in/out parameter, the RX one is NULL.
        unsafe {
            rte_call!(rte_eth_dev_adjust_nb_rx_tx_desc(
                id,
                ptr::null_mut(),
                &mut n
            ))?
        };
        let socket = socket_arg(self.info.socket);
        // SAFETY: a configured, stopped port we own; NULL txconf means device defaults plus
        // the port's offloads.
        unsafe { rte_call!(rte_eth_tx_queue_setup(id, queue, n, socket, ptr::null()))? };
        *ready = true;
        Ok(n)
    }

    /// `rte_eth_dev_start`, once every queue is set up (`EINVAL` otherwise). On error the
    /// port is closed.
    pub fn start(self) -> Result<EthPort<'a, Started>, DpdkError> {
        if self.rx_ready.iter().chain(&self.tx_ready).any(|r| !r) {
            return Err(DpdkError::new("rte_eth_dev_start", errno::EINVAL));
        }
        // SAFETY: a configured port we own with all its queues set up.
        unsafe { rte_call!(rte_eth_dev_start(self.own.id))? };
        let mut port = self.into_state::<Started>();
        port.own.started = true;
        port.rx_taken = port.rx_ready.iter().map(|_| Cell::new(false)).collect();
        port.tx_taken = port.tx_ready.iter().map(|_| Cell::new(false)).collect();
        Ok(port)
    }
}

impl<'a> EthPort<'a, Started> {
    /// What `configure` enabled.
    pub fn config(&self) -> &PortConfig {
        self.config.as_ref().expect("configured")
    }

    /// The handle of RX queue `queue`, for the one lcore that polls it: each queue can be
    /// taken once per start (`EBUSY` after that; `EINVAL` for a queue that does not exist).
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue<'_, 'a>, DpdkError> {
        take(&self.rx_taken, queue, "rx_queue")?;
        Ok(RxQueue {
            port: self.own.id,
            queue,
            _port: PhantomData,
            _not_sync: PhantomData,
        })
    }

    /// The handle of TX queue `queue`; as [`EthPort::rx_queue`].
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue<'_, 'a>, DpdkError> {
        take(&self.tx_taken, queue, "tx_queue")?;
        Ok(TxQueue {
            port: self.own.id,
            queue,
            _port: PhantomData,
            _not_sync: PhantomData,
        })
    }

    /// Programs the RSS redirection table: hash `% table.len()` -> RX queue. The table must
    /// have the device's `reta_size` entries, each an RX queue of this port; `ENOTSUP` when
    /// RSS is not enabled on the port (the device has none, or one RX queue).
    pub fn set_reta(&self, table: &[u16]) -> Result<(), DpdkError> {
        const OP: &str = "rte_eth_dev_rss_reta_update";
        let cfg = self.config();
        if !cfg.rss {
            return Err(DpdkError::new(OP, errno::ENOTSUP));
        }
        let size = usize::from(self.info.reta_size);
        if size == 0 || table.len() != size || table.iter().any(|&q| q >= cfg.rx_queues) {
            return Err(DpdkError::new(OP, errno::EINVAL));
        }
        let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let mut conf: Vec<sys::rte_eth_rss_reta_entry64> = table
            .chunks(group)
            .map(|chunk| {
                let mut e = sys::rte_eth_rss_reta_entry64 {
                    mask: if chunk.len() == 64 {
                        u64::MAX
                    } else {
                        (1u64 << chunk.len()) - 1
                    },
                    reta: [0; 64],
                };
                e.reta[..chunk.len()].copy_from_slice(chunk);
                e
            })
            .collect();
        // SAFETY: a started port we own; `conf` holds reta_size / 64 (rounded up) groups,
        // each with its mask, as the call expects for `reta_size` entries.
        unsafe {
            rte_call!(rte_eth_dev_rss_reta_update(
                self.own.id,
                conf.as_mut_ptr(),
                self.info.reta_size
            ))?
        };
        Ok(())
    }

    /// The RSS key and hash types the device says it uses (`rte_eth_dev_rss_hash_conf_get`);
    /// an error when it cannot say (no RSS, or the PMD does not implement the query).
    pub fn rss_conf(&self) -> Result<(Vec<u8>, u64), DpdkError> {
        let mut key = vec![0u8; usize::from(self.info.hash_key_size.max(40))];
        let mut conf = sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: u8::try_from(key.len()).unwrap_or(u8::MAX),
            rss_hf: 0,
        };
        // SAFETY: a started port we own; `conf.rss_key` points at `rss_key_len` writable
        // bytes that outlive the call.
        unsafe { rte_call!(rte_eth_dev_rss_hash_conf_get(self.own.id, &mut conf))? };
        key.truncate(usize::from(conf.rss_key_len));
        Ok((key, conf.rss_hf))
    }

    /// Whether the device's own report confirms the RSS this port was configured with (our
    /// key, TCP/IPv4 hashing): only then does [`EthPort::steering`] predict where a flow
    /// lands. A device that cannot say, or says otherwise, is not trusted.
    pub fn rss_confirmed(&self) -> bool {
        let cfg = self.config();
        if !cfg.rss {
            return false;
        }
        match (self.rss_conf(), cfg.rss_key.as_deref()) {
            (Ok((key, hf)), Some(want)) => key == want && hf & cfg.rss_hf != 0,
            _ => false,
        }
    }

    /// How the device spreads received TCP/IPv4 flows over RX queues, as the stack's
    /// software model: with RSS enabled, the key programmed at `configure` and the RETA
    /// given (the table passed to `set_reta`; `None` assumes the usual round-robin default —
    /// call `set_reta` to be sure); without RSS, every packet on queue 0. Outbound connections choose their
    /// local port by it (see [`crate::rss`]).
    pub fn steering(&self, reta: Option<&[u16]>) -> crate::rss::Steering {
        let cfg = self.config();
        if !cfg.rss || cfg.rx_queues <= 1 {
            return crate::rss::Steering::single();
        }
        let key = cfg
            .rss_key
            .clone()
            .unwrap_or_else(|| crate::rss::DEFAULT_KEY.to_vec());
        let size = usize::from(self.info.reta_size.max(1));
        let reta = match reta {
            Some(t) => t.to_vec(),
            None => (0..size)
                .map(|i| (i % usize::from(cfg.rx_queues)) as u16)
                .collect(),
        };
        crate::rss::Steering { key, reta }
    }

    /// `rte_eth_dev_stop`; the queues stay set up, so the port can start again. On error
    /// the port is closed.
    pub fn stop(mut self) -> Result<EthPort<'a, Configured>, DpdkError> {
        // SAFETY: a started port we own; its queue handles borrowed it and are gone. (On
        // error, dropping `self` tries to stop it once more, then closes it.)
        unsafe { rte_call!(rte_eth_dev_stop(self.own.id))? };
        self.own.started = false;
        Ok(self.into_state::<Configured>())
    }
}

impl<'a, S: PortState> EthPort<'a, S> {
    fn into_state<T: PortState>(self) -> EthPort<'a, T> {
        let EthPort {
            own,
            info,
            config,
            rx_ready,
            tx_ready,
            rx_taken,
            tx_taken,
            _state,
        } = self;
        EthPort {
            own,
            info,
            config,
            rx_ready,
            tx_ready,
            rx_taken,
            tx_taken,
            _state: PhantomData,
        }
    }

    pub fn id(&self) -> u16 {
        self.own.id
    }

    /// What the device reported when the port was opened.
    pub fn dev_info(&self) -> &DevInfo {
        &self.info
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: a port we own; `a` is a properly sized out-parameter.
        unsafe { rte_call!(rte_eth_macaddr_get(self.own.id, &mut a))? };
        Ok(a.addr_bytes)
    }

    /// The port's MTU (what smoltcp may put in one IP packet).
    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let mut mtu = 0u16;
        // SAFETY: a port we own; `mtu` is an out-parameter.
        unsafe { rte_call!(rte_eth_dev_get_mtu(self.own.id, &mut mtu))? };
        Ok(mtu)
    }

    /// The device's counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: a port we own; `s` is a properly sized out-parameter.
        unsafe { rte_call!(rte_eth_stats_get(self.own.id, &mut s))? };
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    pub fn reset_stats(&mut self) -> Result<(), DpdkError> {
        // SAFETY: a port we own.
        unsafe { rte_call!(rte_eth_stats_reset(self.own.id)) }.map(drop)
    }

    /// Link state, without waiting for the device to find out.
    pub fn link(&self) -> Result<Link, DpdkError> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: a port we own; `l` is a properly sized out-parameter.
        unsafe { rte_call!(rte_eth_link_get_nowait(self.own.id, &mut l))? };
        Ok(Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    /// Receive frames for every MAC address (the stack filters by address itself).
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), DpdkError> {
        let id = self.own.id;
        // SAFETY: a port we own.
        let rc = unsafe {
            if on {
                rte_call!(rte_eth_promiscuous_enable(id))
            } else {
                rte_call!(rte_eth_promiscuous_disable(id))
            }
        };
        rc.map(drop)
    }
}

impl<S: PortState> fmt::Debug for EthPort<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EthPort")
            .field("id", &self.own.id)
            .field("state", &std::any::type_name::<S>())
            .field("driver", &self.info.driver)
            .field("config", &self.config)
            .finish()
    }
}

fn take(taken: &[Cell<bool>], queue: u16, op: &'static str) -> Result<(), DpdkError> {
    let slot = taken
        .get(usize::from(queue))
        .ok_or(DpdkError::new(op, errno::EINVAL))?;
    if slot.replace(true) {
        return Err(DpdkError::new(op, errno::EBUSY));
    }
    Ok(())
}

/// A socket id as the queue-setup calls take it (`SOCKET_ID_ANY` wraps like in C).
fn socket_arg(socket: i32) -> c_uint {
    socket as c_uint
}

/// Bursts at most this many mbufs per DPDK call (its count is a `u16`).
const MAX_BURST: usize = u16::MAX as usize;

/// RX queue `queue` of a started port, polled by one lcore: `Send`, not `Sync`. It borrows
/// the port, which therefore stays started while the handle exists.
pub struct RxQueue<'p, 'a> {
    port: u16,
    queue: u16,
    _port: PhantomData<fn() -> &'p EthPort<'a, Started>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<'a> RxQueue<'_, 'a> {
    pub fn port_id(&self) -> u16 {
        self.port
    }

    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Appends up to `max` received mbufs to `out`, in arrival order (`rte_eth_rx_burst`
    /// writes straight into `out`'s spare capacity); returns how many.
    pub fn rx_burst(&mut self, out: &mut Vec<Mbuf<'a>>, max: usize) -> usize {
        let max = max.min(MAX_BURST);
        out.reserve(max);
        let len = out.len();
        // SAFETY: `out` has room for `max` more; `Mbuf` is a transparent `rte_mbuf *`, so the
        // PMD writes `n <= max` valid mbuf pointers, now ours, into the first n free slots.
        // The port is started (this handle borrows it) and only this handle polls the queue.
        // The mbufs come from the port's pools or its peer's transmissions, both alive for 'a.
        unsafe {
            let slots = out.as_mut_ptr().add(len).cast::<*mut sys::rte_mbuf>();
            let n = sys::rte_eth_rx_burst(self.port, self.queue, slots, max as u16);
            out.set_len(len + usize::from(n));
            usize::from(n)
        }
    }
}

/// TX queue `queue` of a started port, used by one lcore: `Send`, not `Sync`.
pub struct TxQueue<'p, 'a> {
    port: u16,
    queue: u16,
    _port: PhantomData<fn() -> &'p EthPort<'a, Started>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<'a> TxQueue<'_, 'a> {
    pub fn port_id(&self) -> u16 {
        self.port
    }

    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Hands mbufs from the front of `frames` to the device (`rte_eth_tx_burst`, straight
    /// from the deque's storage); those it did not take stay in `frames`, in order, still
    /// ours. Returns how many were sent.
    pub fn tx_burst(&mut self, frames: &mut VecDeque<Mbuf<'a>>) -> usize {
        let mut sent = 0;
        loop {
            let (front, _) = frames.as_mut_slices();
            let want = front.len().min(MAX_BURST);
            if want == 0 {
                return sent;
            }
            // SAFETY: `Mbuf` is a transparent `rte_mbuf *`, so `front` is an array of `want`
            // valid mbuf pointers we own. The PMD takes ownership of the first `n` and leaves
            // the rest to us; the port is started and only this handle uses the queue. The
            // mbufs live for 'a, as long as the port may hold them.
            let n = usize::from(unsafe {
                sys::rte_eth_tx_burst(
                    self.port,
                    self.queue,
                    front.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                    want as u16,
                )
            });
            // The device owns those now: forget our handles without freeing.
            frames.drain(..n).for_each(mem::forget);
            sent += n;
            if n < want {
                return sent;
            }
        }
    }
}

//! The one safe wrapper over DPDK: every `unsafe` call into `dpdk-sys` lives in this module
//! tree (the crate root denies `unsafe_code`; this module allows it, and every `unsafe` block
//! says why it is sound in a `// SAFETY:` comment).
//!
//! Lifecycle, as types:
//! - [`Eal`]: the environment, once per process. [`Eal::init`] refuses a second call with
//!   `EALREADY` instead of touching DPDK again; dropping it runs `rte_eal_cleanup`.
//! - [`Mempool`] (`Mempool<'eal>`): a pktmbuf pool; it cannot outlive the `Eal`.
//! - [`Mbuf`] (`Mbuf<'a>`): one owned packet buffer; dropping it frees it
//!   (`rte_pktmbuf_free`). It is `Send` (any thread may free it) but not `Sync`.
//! - [`EthPort`]: `EthPort<Unconfigured>` → [`EthPort::configure`] → `EthPort<Configured>` →
//!   [`EthPort::rx_queue_setup`] / [`EthPort::tx_queue_setup`] → [`EthPort::start`] →
//!   `EthPort<Started>`, whose [`RxQueue`]/[`TxQueue`] handles (`Send`, not `Sync`, each taken
//!   once) move to the lcore that polls them. Dropping a port stops (if started) and closes it.
//! - [`RingLink`]: two `rte_ring`s made into two ports with `rte_eth_from_rings`, cross-linked
//!   like a cable (A's TX is B's RX and back): a wire between two stacks inside one process.
//!
//! Soundness of buffer lifetimes rests on one invariant lifetime `'a` per port: the port's RX
//! pool, its mbufs, and anything it transmits must all live for `'a`, so no pool can be freed
//! while a port (or its descriptors) may still hand out or free one of its mbufs. Mbufs left
//! inside a [`RingLink`] when it is dropped are leaked, never touched again (drain the link
//! first; the test does).
//!
//! A queue pair's whole life (the test `tests/dpdk_rings.rs` runs this for real):
//!
//! ```no_run
//! use stack::dpdk::{self, Eal, Mempool, PortConfig, RingLink};
//!
//! let args: Vec<String> = ["app", "--no-huge", "-m", "512", "--no-pci", "--file-prefix", "x"]
//!     .map(String::from)
//!     .into();
//! let eal = Eal::init(&args)?;
//! let pool = Mempool::pktmbuf(&eal, "pool", 4095, 256, dpdk::MBUF_DEFAULT_DATA_ROOM, -1)?;
//! let link = RingLink::new(&eal, "wire", 1024)?;
//! let (a, _b) = link.ports()?;
//! let mut a = a.configure(&PortConfig::new(1, 1))?;
//! a.rx_queue_setup(0, 1024, &pool)?;
//! a.tx_queue_setup(0, 1024)?;
//! let a = a.start()?;
//! let (mut rx, mut tx) = (a.rx_queue(0)?, a.tx_queue(0)?);
//! let mut frames = std::collections::VecDeque::new();
//! let mut m = pool.alloc().expect("an mbuf");
//! m.append(60).expect("room").fill(0xff);
//! frames.push_back(m);
//! tx.tx_burst(&mut frames); // what the device did not take stays in `frames`
//! let mut got = Vec::new();
//! rx.rx_burst(&mut got, 32);
//! # Ok::<(), dpdk::DpdkError>(())
//! ```
//!
//! What the lifetimes rule out (each of these fails to compile): an mbuf outliving its pool,
//!
//! ```compile_fail
//! # use stack::dpdk::{Eal, Mempool};
//! # fn f(eal: &Eal) {
//! let pool = Mempool::pktmbuf(eal, "p", 1023, 0, 2176, -1).unwrap();
//! let m = pool.alloc().unwrap();
//! drop(pool);
//! drop(m);
//! # }
//! ```
//!
//! a pool freed while a port may still fill its RX queue from it,
//!
//! ```compile_fail
//! # use stack::dpdk::{Eal, Mempool, PortConfig, RingLink};
//! # fn f(eal: &Eal) {
//! let pool = Mempool::pktmbuf(eal, "p", 1023, 0, 2176, -1).unwrap();
//! let link = RingLink::new(eal, "l", 1024).unwrap();
//! let (a, _b) = link.ports().unwrap();
//! let mut a = a.configure(&PortConfig::new(1, 1)).unwrap();
//! a.rx_queue_setup(0, 512, &pool).unwrap();
//! drop(pool);
//! drop(a);
//! # }
//! ```
//!
//! and a port transmitting an mbuf of a pool that dies before the port does:
//!
//! ```compile_fail
//! # use std::collections::VecDeque;
//! # use stack::dpdk::{Eal, EthPort, Mempool, Started};
//! # fn f(eal: &Eal, port: &EthPort<'_, Started>) {
//! let mut tx = port.tx_queue(0).unwrap();
//! {
//!     let short = Mempool::pktmbuf(eal, "s", 1023, 0, 2176, -1).unwrap();
//!     let mut q = VecDeque::from([short.alloc().unwrap()]);
//!     tx.tx_burst(&mut q);
//! }
//! # }
//! ```
//!
//! Errors: DPDK reports failures as negative errno returns, or as `-1`/NULL plus `rte_errno`.
//! `rte_call!` turns the first kind into [`DpdkError`] (like mio's `syscall!`), its `errno`
//! form the second.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use dpdk_sys as sys;

/// Calls a DPDK function and maps a negative return to [`DpdkError`]:
/// - `rte_call!(f(args))`: the function returns `-errno` on failure;
/// - `rte_call!(errno f(args))`: it returns a negative value and sets `rte_errno`.
///
/// The call itself is `unsafe`: write it inside an `unsafe` block with its `// SAFETY:`.
macro_rules! rte_call {
    (errno $f:ident($($arg:expr),* $(,)?)) => {{
        let rc = sys::$f($($arg),*);
        if rc < 0 {
            Err($crate::dpdk::DpdkError {
                op: stringify!($f),
                errno: sys::dpdk_sys_errno(),
            })
        } else {
            Ok(rc)
        }
    }};
    ($f:ident($($arg:expr),* $(,)?)) => {{
        let rc = sys::$f($($arg),*);
        if rc < 0 {
            Err($crate::dpdk::DpdkError {
                op: stringify!($f),
                errno: -rc,
            })
        } else {
            Ok(rc)
        }
    }};
}

mod eal;
mod ethdev;
mod launch;
mod mbuf;
mod mempool;
mod ring;

pub use eal::{tsc, Eal};
pub use ethdev::{
    Configured, DevInfo, EthPort, Link, PortConfig, PortState, PortStats, RxQueue, Started,
    TxQueue, Unconfigured,
};
pub use launch::{worker_lcores, LcoreHandle, LcorePanicked, LcoreResult, LcoreScope};
pub use mbuf::Mbuf;
pub use mempool::{Mempool, PoolSizing};
pub use ring::RingLink;

/// Bytes reserved before the data of every mbuf (`RTE_PKTMBUF_HEADROOM`).
pub const PKTMBUF_HEADROOM: usize = sys::RTE_PKTMBUF_HEADROOM as usize;
/// Data room (headroom included) for a standard 1518-byte frame: `RTE_MBUF_DEFAULT_BUF_SIZE`.
pub const MBUF_DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
/// Any NUMA socket.
pub const SOCKET_ID_ANY: i32 = sys::SOCKET_ID_ANY;

/// Linux errno values this module reports itself.
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOTSUP: i32 = 95;
    pub const EALREADY: i32 = 114;
}

/// A failed DPDK call: which one, and its errno (positive; DPDK's own codes start at 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DpdkError {
    pub op: &'static str,
    pub errno: i32,
}

impl DpdkError {
    pub(crate) const fn new(op: &'static str, errno: i32) -> Self {
        Self { op, errno }
    }

    /// `rte_strerror`'s text for the errno (covers DPDK's own codes too).
    pub fn message(&self) -> String {
        strerror(self.errno)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (errno {})", self.op, self.message(), self.errno)
    }
}

impl std::error::Error for DpdkError {}

fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a NUL-terminated string, static or in
    // a per-thread buffer that stays valid until this thread calls it again; copied at once.
    unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// This thread's `rte_errno`.
fn last_errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { sys::dpdk_sys_errno() }
}

/// A pointer from a DPDK constructor, or the error it reported in `rte_errno`.
fn non_null<T>(p: *mut T, op: &'static str) -> Result<NonNull<T>, DpdkError> {
    NonNull::new(p).ok_or_else(|| DpdkError::new(op, last_errno()))
}

/// A C string for a DPDK object name; names with a NUL byte are `EINVAL`.
fn c_name(name: &str, op: &'static str) -> Result<std::ffi::CString, DpdkError> {
    std::ffi::CString::new(name).map_err(|_| DpdkError::new(op, errno::EINVAL))
}

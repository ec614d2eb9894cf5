//! The Environment Abstraction Layer: initialised once per process, cleaned up on drop.

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use dpdk_sys as sys;

use super::{errno, DpdkError};

/// EAL has not run (or its last init failed).
const IDLE: u8 = 0;
/// An `Eal` exists.
const RUNNING: u8 = 1;
/// EAL was cleaned up; DPDK cannot initialise again in this process.
const DONE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// EAL short options that take an argument (`-m 512`, `-m512`): a cluster such as `-vh` is
/// scanned up to the first of them.
const SHORT_WITH_ARG: &str = "abcdlmnrs";

/// The DPDK environment of this process. At most one exists, ever: a second [`Eal::init`]
/// returns `EALREADY` without calling into DPDK (whose own guard would also refuse).
///
/// The thread that calls `init` becomes the main lcore (EAL pins it to the CPU set `--lcores`
/// or `-l` gives lcore 0). The guard is neither `Send` nor `Sync`: `rte_eal_cleanup` runs on
/// that same thread when it is dropped, or through [`Eal::cleanup`] to see the result.
/// Everything made from it ([`super::Mempool`], [`super::EthPort`], [`super::RingLink`])
/// borrows it, so all of that is gone before cleanup runs.
pub struct Eal {
    _not_send: PhantomData<*const ()>,
}

impl Eal {
    /// Runs `rte_eal_init` with `args` (`args[0]` is the program name), without ever exiting
    /// the process: options that make EAL print its usage and `exit` (`-h`, `--help`) are
    /// refused with `EINVAL`, and EAL's own failures come back as its `rte_errno`.
    pub fn init(args: &[String]) -> Result<Self, DpdkError> {
        const OP: &str = "rte_eal_init";
        if args.is_empty() || args.iter().skip(1).any(|a| asks_for_help(a)) {
            return Err(DpdkError::new(OP, errno::EINVAL));
        }
        let cargs = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| DpdkError::new(OP, errno::EINVAL))?;
        let argc = c_int::try_from(cargs.len()).map_err(|_| DpdkError::new(OP, errno::EINVAL))?;
        if STATE
            .compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::new(OP, errno::EALREADY));
        }
        // Leaked on purpose (a few hundred bytes, once per process): EAL may keep pointers
        // into argv, and getopt permutes the pointer array in place.
        let cargs: &'static [CString] = Box::leak(cargs.into_boxed_slice());
        let argv: &'static mut [*mut c_char] = Box::leak(
            cargs
                .iter()
                .map(|a| a.as_ptr().cast_mut())
                .collect::<Box<[_]>>(),
        );
        // SAFETY: argv holds argc pointers to NUL-terminated strings that live for the rest
        // of the process; EAL reads them and reorders the (leaked) pointer array only. The
        // STATE guard makes this the only call in flight and the first successful one.
        let rc = unsafe { rte_call!(errno rte_eal_init(argc, argv.as_mut_ptr())) };
        match rc {
            Ok(_) => Ok(Self {
                _not_send: PhantomData,
            }),
            Err(e) => {
                // Another attempt may be made; if EAL got too far to allow one, its own
                // run-once guard answers EALREADY.
                STATE.store(IDLE, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Runs `rte_eal_cleanup` now and reports its result (dropping the guard does the same
    /// and only logs a failure). EAL cannot be initialised again afterwards.
    pub fn cleanup(self) -> Result<(), DpdkError> {
        let this = std::mem::ManuallyDrop::new(self);
        this.do_cleanup()
    }

    fn do_cleanup(&self) -> Result<(), DpdkError> {
        STATE.store(DONE, Ordering::Release);
        // SAFETY: everything made from this guard borrowed it and is gone; this is the thread
        // that initialised EAL (the guard is not Send).
        unsafe { rte_call!(rte_eal_cleanup()) }.map(drop)
    }

    /// This thread's lcore id (`u32::MAX`, LCORE_ID_ANY, on threads EAL did not create or
    /// register: their mempool accesses bypass the per-lcore caches).
    pub fn lcore_id(&self) -> u32 {
        // SAFETY: reads a thread-local set up by EAL.
        unsafe { sys::rte_lcore_id() }
    }

    /// This thread's NUMA socket (`SOCKET_ID_ANY`, -1, when unknown).
    pub fn socket_id(&self) -> i32 {
        // SAFETY: reads a thread-local set up by EAL.
        let s = unsafe { sys::rte_socket_id() };
        i32::try_from(s).unwrap_or(sys::SOCKET_ID_ANY)
    }

    /// TSC ticks per second, as EAL calibrated them (see [`tsc`]).
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_get_tsc_hz() }
    }

    /// Ethernet ports that exist now (probed devices plus ports created since).
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// EAL's runtime directory for this process's `--file-prefix` (its lock, config and
    /// multi-process socket live there; EAL does not remove it at cleanup).
    pub fn runtime_dir(&self) -> PathBuf {
        // SAFETY: EAL is initialised; the function returns a pointer to a static
        // NUL-terminated buffer, copied at once.
        let dir = unsafe { CStr::from_ptr(sys::rte_eal_get_runtime_dir()) };
        PathBuf::from(dir.to_string_lossy().into_owned())
    }
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("lcore", &self.lcore_id())
            .field("ports", &self.port_count())
            .finish()
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if let Err(e) = self.do_cleanup() {
            tracing::warn!("{e}");
        }
    }
}

/// The CPU's time-stamp counter (`rte_rdtsc`): the data path's clock, read once per loop
/// turn; [`Eal::tsc_hz`] converts it.
#[inline]
pub fn tsc() -> u64 {
    // On x86_64 the instruction itself, inlined: `rte_rdtsc` is a static inline function that
    // the bindings can only reach through an out-of-line wrapper, and a busy worker reads the
    // clock every turn.
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter into registers; it touches no memory
        // and every x86_64 CPU has it (DPDK's own rte_rdtsc is this instruction).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the TSC register; no memory is involved.
        unsafe { sys::rte_rdtsc() }
    }
}

/// Whether an argument makes EAL print its usage and `exit()`: `-h` (also inside a cluster of
/// short options), or `--help` or an unambiguous prefix of it (getopt_long accepts those).
fn asks_for_help(arg: &str) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        return long.len() >= 2 && "help".starts_with(long);
    }
    let Some(short) = arg.strip_prefix('-') else {
        return false;
    };
    for c in short.chars() {
        if c == 'h' {
            return true;
        }
        if SHORT_WITH_ARG.contains(c) {
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::asks_for_help;

    #[test]
    fn help_options_are_recognised() {
        for a in ["-h", "-vh", "--help", "--he", "--hel"] {
            assert!(asks_for_help(a), "{a}");
        }
        for a in [
            "--huge-dir",
            "--h",
            "-m",
            "-dhello",
            "-l0",
            "stack-test",
            "--file-prefix",
            "0@1",
        ] {
            assert!(!asks_for_help(a), "{a}");
        }
    }
}

//! Running work on the other lcores: [`Eal::scope`], shaped like `std::thread::scope`.
//!
//! EAL creates one thread per worker lcore at init, pinned to its CPU set, and parks it until
//! `rte_eal_remote_launch` hands it a function. A scope lets those functions borrow from the
//! caller (ports, pools, queues moved in) because it waits for every lcore it launched before
//! it returns — also when the caller's closure panics. A panic on an lcore is caught there
//! (unwinding into C is undefined) and reported by [`LcoreHandle::join`].

use std::cell::RefCell;
use std::ffi::{c_int, c_uint, c_void};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

use dpdk_sys as sys;

use super::{errno, DpdkError, Eal};

/// What an lcore function returned: its value, or that it panicked.
pub type LcoreResult = Result<i32, LcorePanicked>;

/// The function launched on an lcore panicked (the panic message went to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcorePanicked {
    pub lcore: u32,
}

/// The lcore return value that stands for a caught panic.
const PANICKED: c_int = c_int::MIN;

type Job<'scope> = Box<dyn FnOnce() -> i32 + Send + 'scope>;

/// Runs on the lcore: takes the job back from its pointer and runs it, catching panics.
///
/// # Safety
/// `arg` must come from `Box::into_raw(Box<Job>)`, handed to exactly one launch.
unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: per this function's contract the pointer is a leaked `Box<Job>`, ours alone.
    let job: Box<Job<'static>> = unsafe { Box::from_raw(arg.cast::<Job<'static>>()) };
    match catch_unwind(AssertUnwindSafe(move || (*job)())) {
        Ok(rc) if rc == PANICKED => rc + 1,
        Ok(rc) => rc,
        Err(_) => PANICKED,
    }
}

/// Lcores launched in a scope, for the closing wait.
pub struct LcoreScope<'scope, 'env: 'scope> {
    launched: RefCell<Vec<u32>>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// One launched lcore; [`LcoreHandle::join`] waits for it.
#[derive(Debug)]
pub struct LcoreHandle<'scope> {
    lcore: u32,
    _scope: PhantomData<&'scope ()>,
}

impl LcoreHandle<'_> {
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the lcore's function to return.
    pub fn join(self) -> LcoreResult {
        wait(self.lcore)
    }
}

fn wait(lcore: u32) -> LcoreResult {
    // SAFETY: waits for a worker lcore EAL created; called from the main lcore (the scope
    // is only reachable through `&Eal`, which does not leave the main thread).
    let rc = unsafe { sys::rte_eal_wait_lcore(c_uint::from(lcore)) };
    if rc == PANICKED {
        Err(LcorePanicked { lcore })
    } else {
        Ok(rc)
    }
}

impl<'scope> LcoreScope<'scope, '_> {
    /// Runs `f` on worker lcore `lcore`. Fails with `EBUSY` if that lcore is still running
    /// something, `EINVAL` if it is not a worker lcore of this process.
    pub fn launch<F>(&'scope self, lcore: u32, f: F) -> Result<LcoreHandle<'scope>, DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'scope,
    {
        const OP: &str = "rte_eal_remote_launch";
        if !worker_lcores().contains(&lcore) {
            return Err(DpdkError::new(OP, errno::EINVAL));
        }
        let job: Box<Job<'scope>> = Box::new(Box::new(f));
        let raw = Box::into_raw(job).cast::<c_void>();
        // SAFETY: the trampoline takes ownership of `raw` (a leaked Box<Job>) if the launch
        // succeeds; the job may borrow for 'scope, and the scope waits for this lcore before
        // 'scope ends (`Eal::scope` waits for every launched lcore, panicking or not), so
        // nothing it borrows is gone while it runs. Called on the main lcore (see `wait`).
        let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), raw, c_uint::from(lcore)) };
        if rc < 0 {
            // SAFETY: the launch failed, so the lcore never saw `raw`: it is still ours.
            drop(unsafe { Box::from_raw(raw.cast::<Job<'scope>>()) });
            return Err(DpdkError::new(OP, -rc));
        }
        self.launched.borrow_mut().push(lcore);
        Ok(LcoreHandle {
            lcore,
            _scope: PhantomData,
        })
    }
}

/// The worker lcores of this process (all enabled lcores but the main one), in order.
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    // SAFETY: walks EAL's lcore table (read-only after init).
    let mut i = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while i < sys::RTE_MAX_LCORE {
        out.push(i);
        // SAFETY: as above.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
    }
    out
}

/// Waits for every lcore a scope launched, when the scope ends (normally or by a panic).
struct WaitAll<'a>(&'a RefCell<Vec<u32>>);

impl Drop for WaitAll<'_> {
    fn drop(&mut self) {
        for lcore in self.0.borrow_mut().drain(..) {
            // The result was either taken by `join` (then this returns at once with the
            // same value) or is dropped here.
            let _ = wait(lcore);
        }
    }
}

impl Eal {
    /// Runs `f` with a scope that launches functions on worker lcores; returns once all of
    /// them have returned. Must be called on the main lcore (where `Eal` lives).
    ///
    /// As with `std::thread::scope`, the end of the scope waits for the lcores even when `f`
    /// panics: a loop launched on an lcore must be told to stop by something that also runs
    /// on unwinding (a guard that sets its stop flag), or the wait never ends.
    pub fn scope<'env, R>(
        &'env self,
        f: impl for<'scope> FnOnce(&'scope LcoreScope<'scope, 'env>) -> R,
    ) -> R {
        let scope = LcoreScope {
            launched: RefCell::new(Vec::new()),
            _scope: PhantomData,
            _env: PhantomData,
        };
        let _wait = WaitAll(&scope.launched);
        f(&scope)
    }
}

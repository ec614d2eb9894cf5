//! Receive-side throttles: Ceph's policy message/byte throttlers and the dispatch-queue
//! byte budget, as lock-free counters shared by the connections that draw on them.
//!
//! Throttling means *not reading*: when a message's header arrives and a throttle cannot
//! give what it needs, the engine leaves the bytes in the receive buffer, reports
//! `InputStatus::Blocked` and arms a 1 ms retry timer (Ceph's behaviour); the driver stops
//! reading the socket, and TCP pushes back on the sender. Memory stays bounded by the
//! throttle, never by the peer. What a delivered message holds is released when its
//! [`ThrottleGuard`] is dropped (Ceph releases when the `Message` is destroyed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A counting budget, e.g. "100 MiB of messages in flight to the dispatcher".
#[derive(Debug)]
pub struct Throttle {
    name: &'static str,
    max: u64,
    current: AtomicU64,
}

impl Throttle {
    /// A throttle of `max` units (0 = unlimited).
    pub fn new(name: &'static str, max: u64) -> Arc<Self> {
        Arc::new(Self {
            name,
            max,
            current: AtomicU64::new(0),
        })
    }

    /// The throttle's name (for logs and counters).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Units currently taken.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// The budget (0 = unlimited).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Takes `n` units if they fit, as Ceph's `get_or_fail`. A request larger than the
    /// whole budget is granted when nothing else is held, so one oversized message cannot
    /// wedge a connection forever.
    pub fn try_take(&self, n: u64) -> bool {
        if self.max == 0 || n == 0 {
            self.current.fetch_add(n, Ordering::AcqRel);
            return true;
        }
        let mut cur = self.current.load(Ordering::Acquire);
        loop {
            let fits = cur + n <= self.max || cur == 0;
            if !fits {
                return false;
            }
            match self.current.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Returns `n` units.
    pub fn put(&self, n: u64) {
        let prev = self.current.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(
            prev >= n,
            "throttle {} released more than it held",
            self.name
        );
    }
}

/// The throttles one incoming message must pass, in Ceph's order: policy messages (1),
/// policy bytes (payload length), dispatch-queue bytes (payload length).
#[derive(Clone, Debug, Default)]
pub struct RecvThrottles {
    /// Policy message throttler (counts messages).
    pub messages: Option<Arc<Throttle>>,
    /// Policy byte throttler.
    pub bytes: Option<Arc<Throttle>>,
    /// The messenger's dispatch-queue byte budget.
    pub dispatch: Option<Arc<Throttle>>,
}

impl RecvThrottles {
    /// Takes what a message of `payload` bytes needs from every throttle, all or nothing.
    pub(crate) fn try_take(&self, payload: u64) -> Option<ThrottleGuard> {
        let mut guard = ThrottleGuard::default();
        let wants = [
            (&self.messages, 1),
            (&self.bytes, payload),
            (&self.dispatch, payload),
        ];
        for (slot, (t, n)) in guard.held.iter_mut().zip(wants) {
            if let Some(t) = t {
                if !t.try_take(n) {
                    return None; // `guard` drops and returns what was taken so far
                }
                *slot = Some((Arc::clone(t), n));
            }
        }
        Some(guard)
    }
}

/// What a received message holds of the throttles; released on drop. (A fixed array, not
/// a Vec: one of these rides with every received message.)
#[derive(Debug, Default)]
pub struct ThrottleGuard {
    held: [Option<(Arc<Throttle>, u64)>; 3],
}

impl ThrottleGuard {
    /// Releases everything now (same as dropping).
    pub fn release(self) {}
}

impl Drop for ThrottleGuard {
    fn drop(&mut self) {
        for (t, n) in self.held.iter_mut().filter_map(Option::take) {
            t.put(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_release() {
        let t = Throttle::new("t", 10);
        assert!(t.try_take(6));
        assert!(!t.try_take(5));
        assert!(t.try_take(4));
        t.put(10);
        assert!(
            t.try_take(50),
            "oversized request passes when the throttle is empty"
        );
        assert!(!t.try_take(1));
        t.put(50);
        assert_eq!(t.current(), 0);
    }

    #[test]
    fn all_or_nothing_guard() {
        let msgs = Throttle::new("m", 1);
        let bytes = Throttle::new("b", 100);
        let th = RecvThrottles {
            messages: Some(msgs.clone()),
            bytes: Some(bytes.clone()),
            dispatch: None,
        };
        let g = th.try_take(60).unwrap();
        assert_eq!((msgs.current(), bytes.current()), (1, 60));
        assert!(th.try_take(10).is_none(), "message throttle full");
        assert_eq!(
            (msgs.current(), bytes.current()),
            (1, 60),
            "failed attempt gave back its partial take"
        );
        drop(g);
        assert_eq!((msgs.current(), bytes.current()), (0, 0));
        msgs.put(0);
        let th2 = RecvThrottles {
            messages: None,
            bytes: Some(bytes.clone()),
            dispatch: None,
        };
        let _a = th2.try_take(60).unwrap();
        assert!(th2.try_take(60).is_none());
        assert_eq!(bytes.current(), 60);
    }
}

//! Connection timers as data: an array of deadlines indexed by [`Timer`], no callbacks.
//!
//! The engine arms and clears entries; the driver asks for the earliest deadline with
//! `Connection::poll_timeout` and calls `Connection::handle_timeout` when it passes.

use crate::time::Instant;

/// The timers a v1 connection uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Timer {
    /// Handshake must finish before this (`ms_connection_ready_timeout`).
    Ready,
    /// An open session faults if idle until this (`ms_connection_idle_timeout`).
    Idle,
    /// Redial after a backoff.
    Backoff,
    /// Send the next periodic keepalive.
    Keepalive,
    /// Retry a throttle acquisition that failed (Ceph retries every 1 ms).
    Throttle,
    /// Check that a message holding throttle budget is still arriving.
    Body,
}

const COUNT: usize = 6;

impl Timer {
    const ALL: [Self; COUNT] = [
        Self::Ready,
        Self::Idle,
        Self::Backoff,
        Self::Keepalive,
        Self::Throttle,
        Self::Body,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, t: Timer) {
        self.at[t.index()] = None;
    }

    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.at[t.index()]
    }

    pub(crate) fn stop_all(&mut self) {
        self.at = [None; COUNT];
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Timers due at `now`, cleared as they are returned.
    pub(crate) fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> + '_ {
        Timer::ALL
            .into_iter()
            .filter(move |t| match self.at[t.index()] {
                Some(at) if at <= now => {
                    self.at[t.index()] = None;
                    true
                }
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_and_expiry() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Idle, Instant::from_nanos(50));
        t.set(Timer::Ready, Instant::from_nanos(10));
        assert_eq!(t.next(), Some(Instant::from_nanos(10)));
        let due: Vec<_> = t.expired(Instant::from_nanos(20)).collect();
        assert_eq!(due, vec![Timer::Ready]);
        assert_eq!(t.next(), Some(Instant::from_nanos(50)));
        t.stop_all();
        assert_eq!(t.next(), None);
    }
}

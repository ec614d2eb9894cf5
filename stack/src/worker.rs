//! The run-to-completion loop of one worker: poll the stack (receive burst → shards →
//! transmit), hand its events to the application, let the application do its turn, and
//! decide what to do when a turn found nothing.
//!
//! The idle policy matters on shared cores: two busy-polling workers on one core take
//! turns only when the scheduler preempts them (~125 round trips/s measured on these
//! 2-core machines). Production workers busy-poll on isolated cores; tests and shared
//! machines yield or sleep after a run of empty turns.

use std::sync::atomic::{AtomicBool, Ordering};

use smoltcp::time::{Duration, Instant};

use crate::netstack::{NetStack, StackEvent};
use crate::port::Port;

/// What a worker does after a turn that found nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Poll again at once (a dedicated, isolated core).
    BusyPoll,
    /// After `spins` empty turns in a row, yield the CPU before each further turn.
    Yield { spins: u32 },
    /// After `spins` empty turns in a row, sleep until the stack's next timer, at most
    /// `max` (packets arriving meanwhile wait for the wake-up: `max` bounds that delay).
    Sleep { spins: u32, max: Duration },
}

impl Default for IdlePolicy {
    /// Shared cores: a short spin, then naps of at most 50 µs.
    fn default() -> Self {
        Self::Sleep {
            spins: 200,
            max: Duration::from_micros(50),
        }
    }
}

impl std::str::FromStr for IdlePolicy {
    type Err = String;

    /// `busy`, `yield[:SPINS]`, `sleep[:SPINS[:MAX_US]]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.split(':');
        let kind = it.next().unwrap_or("");
        let num = |v: Option<&str>, default: u64, what: &str| -> Result<u64, String> {
            v.map_or(Ok(default), |x| {
                x.parse()
                    .map_err(|_| format!("bad {what} in idle policy {s:?}"))
            })
        };
        let p = match kind {
            "busy" => Self::BusyPoll,
            "yield" => Self::Yield {
                spins: num(it.next(), 200, "spin count")? as u32,
            },
            "sleep" => Self::Sleep {
                spins: num(it.next(), 200, "spin count")? as u32,
                max: Duration::from_micros(num(it.next(), 50, "microseconds")?),
            },
            _ => {
                return Err(format!(
                    "unknown idle policy {s:?} (busy, yield[:SPINS], sleep[:SPINS[:MAX_US]])"
                ))
            }
        };
        if it.next().is_some() {
            return Err(format!("too many fields in idle policy {s:?}"));
        }
        Ok(p)
    }
}

/// Where a worker's time comes from (the TSC on an lcore, a monotonic clock elsewhere).
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The process's monotonic clock, from its creation.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(std::time::Instant);

impl MonotonicClock {
    // The worker loop is a driver: it reads the clock and passes `now` to the stack.
    #[allow(clippy::disallowed_methods)]
    pub fn new() -> Self {
        Self(std::time::Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as i64)
    }
}

/// The CPU's time-stamp counter, read once per turn (DPDK's `rte_rdtsc`: no system call).
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    start: u64,
    /// Microseconds per tick as a fixed-point fraction: `us = ticks * mult >> TSC_SHIFT`
    /// (a multiply instead of a 128-bit division every turn).
    mult: u128,
}

/// Fractional bits of [`TscClock`]'s multiplier: with a GHz counter the rounding error is
/// below 10^-10 (microseconds a day), and `ticks * mult` fits in 128 bits for any tick count
/// at 1 MHz or more.
const TSC_SHIFT: u32 = 56;
/// The slowest counter [`TscClock`] takes (real TSCs run at GHz).
const TSC_MIN_HZ: u64 = 1_000_000;

impl TscClock {
    /// Counts from now at `hz` ticks per second (`Eal::tsc_hz`).
    pub fn new(hz: u64) -> Self {
        Self {
            start: crate::dpdk::tsc(),
            mult: Self::mult(hz),
        }
    }

    fn mult(hz: u64) -> u128 {
        (1_000_000u128 << TSC_SHIFT) / u128::from(hz.max(TSC_MIN_HZ))
    }

    /// Microseconds in `ticks` at this clock's rate.
    fn micros(&self, ticks: u64) -> i64 {
        ((u128::from(ticks) * self.mult) >> TSC_SHIFT) as i64
    }
}

impl Clock for TscClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::from_micros(self.micros(crate::dpdk::tsc().wrapping_sub(self.start)))
    }
}

/// The application side of a worker: its connections' reactions, run inside the loop.
pub trait Handler<P: Port> {
    /// One stack event (accepted, connected, readable, writable, closed).
    fn event(&mut self, stack: &mut NetStack<P>, ev: StackEvent, now: Instant);

    /// Work not driven by an event (queued sends from other threads, timers); returns
    /// whether it did anything.
    fn turn(&mut self, _stack: &mut NetStack<P>, _now: Instant) -> bool {
        false
    }
}

/// A turn longer than this counts in [`WorkerStats::slow_turns`].
pub const SLOW_TURN: Duration = Duration::from_millis(1);

/// Counters of a worker loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub turns: u64,
    /// Turns that found something to do.
    pub busy_turns: u64,
    /// Microseconds spent in turns that found something to do (by the worker's clock; a
    /// turn shorter than its resolution counts on average what it took): against the
    /// time the worker ran, how loaded it is, which a busy-polling worker's CPU time
    /// cannot tell.
    pub busy_us: u64,
    /// Turns that took longer than [`SLOW_TURN`]: every packet that arrived meanwhile
    /// waited at least that long (a latency spike that the mean of `busy_us` hides).
    pub slow_turns: u64,
    /// The longest turn, in microseconds.
    pub max_turn_us: u64,
    pub yields: u64,
    pub sleeps: u64,
}

/// One worker: a stack, its application, a clock and an idle policy.
pub struct Worker<P: Port, H: Handler<P>, C: Clock> {
    pub stack: NetStack<P>,
    pub handler: H,
    clock: C,
    idle: IdlePolicy,
    empty: u32,
    stats: WorkerStats,
}

impl<P: Port, H: Handler<P>, C: Clock> Worker<P, H, C> {
    pub fn new(stack: NetStack<P>, handler: H, clock: C, idle: IdlePolicy) -> Self {
        Self {
            stack,
            handler,
            clock,
            idle,
            empty: 0,
            stats: WorkerStats::default(),
        }
    }

    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// One turn; returns whether it found anything to do.
    pub fn turn(&mut self) -> bool {
        let now = self.clock.now();
        let work = self.turn_at(now);
        if work {
            let took = (self.clock.now() - now).total_micros();
            self.stats.busy_us += took;
            self.stats.max_turn_us = self.stats.max_turn_us.max(took);
            if took > SLOW_TURN.total_micros() {
                self.stats.slow_turns += 1;
            }
        }
        work
    }

    fn turn_at(&mut self, now: Instant) -> bool {
        let mut work = self.stack.poll(now);
        let mut app = false;
        while let Some(ev) = self.stack.next_event() {
            self.handler.event(&mut self.stack, ev, now);
            app = true;
        }
        app |= self.handler.turn(&mut self.stack, now);
        if app {
            // What the application queued leaves in this turn, not the next.
            self.stack.poll(now);
            work = true;
        }
        self.stats.turns += 1;
        if work {
            self.stats.busy_turns += 1;
        }
        work
    }

    /// One turn, then the idle policy if it found nothing; returns whether it did work.
    pub fn step(&mut self) -> bool {
        let work = self.turn();
        if work {
            self.empty = 0;
        } else {
            self.idle();
        }
        work
    }

    /// Turns until `stop` is set, idling by the policy.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.step();
        }
    }

    /// Turns until `done` returns true or `limit` passes; returns whether `done` was met.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.clock.now() + limit;
        while self.clock.now() < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn idle(&mut self) {
        self.empty = self.empty.saturating_add(1);
        match self.idle {
            IdlePolicy::BusyPoll => std::hint::spin_loop(),
            IdlePolicy::Yield { spins } => {
                if self.empty > spins {
                    self.stats.yields += 1;
                    std::thread::yield_now();
                }
            }
            IdlePolicy::Sleep { spins, max } => {
                if self.empty > spins {
                    let now = self.clock.now();
                    let nap = match self.stack.poll_at() {
                        Some(t) if t <= now => return,
                        Some(t) => (t - now).min(max),
                        None => max,
                    };
                    self.stats.sleeps += 1;
                    std::thread::sleep(std::time::Duration::from_micros(nap.total_micros()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_ticks_convert_like_a_division() {
        for hz in [1_000_000, 2_100_000_000, 3_999_999_999, 5_000_000_000] {
            let c = TscClock {
                start: 0,
                mult: TscClock::mult(hz),
            };
            // Up to a day of ticks: within 1 us + 1e-9 of the exact quotient.
            for ticks in [0u64, 1, hz - 1, hz, 7 * hz + 12_345, 86_400 * hz] {
                let exact = u128::from(ticks) * 1_000_000 / u128::from(hz);
                let got = c.micros(ticks) as i128;
                let tol = 1 + exact as i128 / 1_000_000_000;
                assert!(
                    (got - exact as i128).abs() <= tol,
                    "hz {hz} ticks {ticks}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn idle_policies_parse() {
        assert_eq!("busy".parse(), Ok(IdlePolicy::BusyPoll));
        assert_eq!("yield".parse(), Ok(IdlePolicy::Yield { spins: 200 }));
        assert_eq!("yield:5".parse(), Ok(IdlePolicy::Yield { spins: 5 }));
        assert_eq!(
            "sleep:10:100".parse(),
            Ok(IdlePolicy::Sleep {
                spins: 10,
                max: Duration::from_micros(100)
            })
        );
        assert!("sleep:x".parse::<IdlePolicy>().is_err());
        assert!("spin".parse::<IdlePolicy>().is_err());
        assert!("yield:1:2".parse::<IdlePolicy>().is_err());
    }
}

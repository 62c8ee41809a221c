//! The server's only source of time.
//!
//! Time is read from the wall clock once, at start, and advanced by the monotonic clock after
//! that: a wall-clock jump (NTP step, manual change) neither fires every timer at once nor
//! moves time backwards. Timestamps stay close to wall time for display.

use std::time::{Instant, SystemTime, UNIX_EPOCH};
use zenith_model::Millis;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_wall: Millis,
    start: Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clocks
    pub fn new() -> Self {
        Clock::with_wall(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        })
    }

    /// A clock that asks `wall` for the time once, now, and never again.
    #[allow(clippy::disallowed_methods)] // the clock module owns time reads
    pub fn with_wall(wall: impl FnOnce() -> Millis) -> Self {
        Clock {
            start_wall: wall(),
            start: Instant::now(),
        }
    }

    /// Milliseconds since the epoch, never decreasing within this process.
    pub fn now(&self) -> Millis {
        self.start_wall + self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Measures a duration on the monotonic clock (for metrics).
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)] // the clock module owns time reads
    pub fn start() -> Self {
        Stopwatch(Instant::now())
    }

    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A point on the monotonic clock, for rate limiting and other local measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Monotonic(Instant);

impl Monotonic {
    #[allow(clippy::disallowed_methods)] // the clock module owns time reads
    pub fn now() -> Self {
        Monotonic(Instant::now())
    }

    /// Time since `earlier` (zero if `earlier` is later).
    pub fn since(&self, earlier: Monotonic) -> std::time::Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    #[cfg(test)]
    pub fn plus(&self, d: std::time::Duration) -> Self {
        Monotonic(self.0 + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_jump_does_not_move_server_time() {
        // The wall source is consulted once; later "jumps" of the system clock (an NTP step of
        // an hour forward, then a day back) cannot reach `now`, which advances monotonically.
        let calls = std::cell::Cell::new(0);
        let clock = Clock::with_wall(|| {
            calls.set(calls.get() + 1);
            1_000_000
        });
        let a = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = clock.now();
        assert_eq!(calls.get(), 1);
        assert!(a >= 1_000_000 && b >= a + 5 && b < a + 1_000, "{a} {b}");
        let s = Stopwatch::start();
        assert!(s.seconds() >= 0.0);
        let m = Monotonic::now();
        assert_eq!(
            m.since(m.plus(std::time::Duration::from_secs(3600))),
            std::time::Duration::ZERO
        );
    }
}

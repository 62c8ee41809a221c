//! Per-client admission control on the public API: a GCRA bucket (governor) per client
//! address, `rate` per second with bursts of twice that.
//!
//! Bound: at most [`MAX_CLIENTS`] buckets; when full, buckets idle for [`IDLE_EVICT`] are
//! dropped first, then the least recently used one, so a flood of new addresses cannot grow
//! the table. (governor's own keyed store has no such bound: it only drops idle keys when
//! asked, so the table around its buckets is ours.)

use crate::clock::Monotonic;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

pub const MAX_CLIENTS: usize = 10_000;
const IDLE_EVICT: Duration = Duration::from_secs(60);

type Bucket<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Client<C: Clock> {
    bucket: Bucket<C>,
    /// For eviction: when it last asked.
    last: Monotonic,
}

pub struct RateLimiter<C: Clock + Clone = DefaultClock> {
    quota: Quota,
    clock: C,
    clients: Mutex<HashMap<IpAddr, Client<C>>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        RateLimiter::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_second: u32, clock: C) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        RateLimiter {
            quota: Quota::per_second(rate).allow_burst(burst),
            clock,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one cell for `client`; `Err` says how long until one is available. `now` orders
    /// clients for eviction only; the buckets keep their own clock.
    pub fn check(&self, client: IpAddr, now: Monotonic) -> Result<(), Duration> {
        let Ok(mut map) = self.clients.lock() else {
            return Ok(());
        };
        if !map.contains_key(&client) && map.len() >= MAX_CLIENTS {
            map.retain(|_, c| now.since(c.last) < IDLE_EVICT);
            if map.len() >= MAX_CLIENTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let c = map.entry(client).or_insert_with(|| Client {
            bucket: governor::RateLimiter::direct_with_clock(self.quota, self.clock.clone()),
            last: now,
        });
        c.last = now;
        c.bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn clients(&self) -> usize {
        self.clients.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn bursts_then_limits_then_refills() {
        let clock = FakeRelativeClock::default();
        let l = RateLimiter::with_clock(10, clock.clone());
        let t0 = Monotonic::now();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..20 {
            l.check(ip, t0).unwrap();
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        clock.advance(Duration::from_millis(150));
        assert!(l.check(ip, t0).is_ok(), "refilled");
        let other: IpAddr = "10.9.9.9".parse().unwrap();
        assert!(l.check(other, t0).is_ok(), "clients are independent");
    }

    #[test]
    fn client_table_is_bounded() {
        let l = RateLimiter::new(10);
        let t0 = Monotonic::now();
        for i in 0..(MAX_CLIENTS as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            let _ = l.check(ip, t0);
        }
        assert!(l.clients() <= MAX_CLIENTS);
    }
}

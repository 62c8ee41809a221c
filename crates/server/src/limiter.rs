//! Per-client admission control: a token bucket per client address on the public API.
//!
//! Bound: at most [`MAX_CLIENTS`] buckets; when full, buckets idle for [`IDLE_EVICT`] are
//! dropped first, then the least recently used one, so a flood of new addresses cannot grow
//! the table.

use crate::clock::Monotonic;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

pub const MAX_CLIENTS: usize = 10_000;
const IDLE_EVICT: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    last: Monotonic,
}

pub struct RateLimiter {
    /// Requests per second each client may sustain; bursts up to twice that.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        RateLimiter {
            rate,
            burst: rate * 2.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`; `Err` says how long until one is available.
    pub fn check(&self, client: IpAddr, now: Monotonic) -> Result<(), Duration> {
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if !map.contains_key(&client) && map.len() >= MAX_CLIENTS {
            map.retain(|_, b| now.since(b.last) < IDLE_EVICT);
            if map.len() >= MAX_CLIENTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let b = map.entry(client).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.since(b.last).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    pub fn clients(&self) -> usize {
        self.buckets.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_then_refills() {
        let l = RateLimiter::new(10);
        let t0 = Monotonic::now();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..20 {
            l.check(ip, t0).unwrap();
        }
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        assert!(
            l.check(ip, t0.plus(Duration::from_millis(150))).is_ok(),
            "refilled"
        );
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

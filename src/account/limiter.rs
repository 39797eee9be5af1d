//! Requests per client address (R-ACT-1, R-ACT-3): a fixed window per address and
//! kind of step, in this process's memory. Behind a proxy every client shares the
//! proxy's address: the limits are then the proxy's (see the README). The durable
//! counters, by NIR and by identifiant, are `account_throttle`'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many requests of one kind an address may make per window.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub requests: u32,
    pub window: Duration,
}

/// Addresses remembered at most: past it, windows that ended are dropped, and if
/// none had, every window (a flood of addresses then starts them afresh rather
/// than growing the process).
const ADDRESSES_MAX: usize = 100_000;

/// A window: when it began, and the requests counted in it.
type Window = (Instant, u32);

#[derive(Default)]
pub struct Limiter {
    /// By (address, kind of step).
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

impl Limiter {
    /// Counts a request; `Err(seconds)` when the address is over `limit`, with the
    /// seconds until its window ends.
    pub fn check(&self, address: &str, kind: &'static str, limit: Limit) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= ADDRESSES_MAX {
            windows.retain(|_, (start, _)| now.duration_since(*start) < limit.window);
            if windows.len() >= ADDRESSES_MAX {
                windows.clear();
            }
        }
        let entry = windows
            .entry((address.to_owned(), kind))
            .or_insert((now, 0));
        if now.duration_since(entry.0) >= limit.window {
            *entry = (now, 0);
        }
        if entry.1 >= limit.requests {
            let left = limit.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_limit_waits_for_the_window_others_do_not() {
        let limiter = Limiter::default();
        let limit = Limit {
            requests: 2,
            window: Duration::from_secs(60),
        };
        assert!(limiter.check("10.0.0.1", "sign-in", limit).is_ok());
        assert!(limiter.check("10.0.0.1", "sign-in", limit).is_ok());
        let wait = limiter.check("10.0.0.1", "sign-in", limit).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(limiter.check("10.0.0.2", "sign-in", limit).is_ok());
        assert!(limiter.check("10.0.0.1", "code", limit).is_ok());
    }
}

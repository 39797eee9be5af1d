//! The time the rules see. The server reads the system clock; tests move time forward
//! (42 days, one month, 18 years, 10 years) with an [`OffsetClock`] instead of
//! sleeping. Timestamps written on resources (`meta.lastUpdated`) and on the trace
//! always come from the system clock.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved forward by an offset that can grow: for tests and
/// demonstrations of the time rules.
#[derive(Default)]
pub struct OffsetClock {
    offset: Mutex<TimeDelta>,
}

impl OffsetClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: TimeDelta) {
        let mut offset = self
            .offset
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *offset += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = *self
            .offset
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Utc::now() + offset
    }
}

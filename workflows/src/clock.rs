//! Time as a parameter: domain code asks a [`Clock`], never the system directly, so tests control time.

use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Source of "now" for the domain and the store.
#[derive(Clone)]
pub struct Clock(Arc<ClockInner>);

enum ClockInner {
    System,
    Manual(Mutex<OffsetDateTime>),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Clock(Arc::new(ClockInner::System))
    }

    /// A clock that stands still at `at` until [`Clock::advance`] moves it.
    pub fn manual(at: OffsetDateTime) -> Self {
        Clock(Arc::new(ClockInner::Manual(Mutex::new(at))))
    }

    /// The current instant, truncated to milliseconds (the store's resolution).
    pub fn now(&self) -> OffsetDateTime {
        let at = match &*self.0 {
            ClockInner::System => OffsetDateTime::now_utc(),
            ClockInner::Manual(at) => *at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        from_millis(to_millis(at))
    }

    /// [`Clock::now`] in nanoseconds since the Unix epoch (metric points' unit).
    pub fn now_nanos(&self) -> i64 {
        i64::try_from(self.now().unix_timestamp_nanos()).unwrap_or(i64::MAX)
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: time::Duration) {
        if let ClockInner::Manual(at) = &*self.0 {
            let mut at = at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *at += by;
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            ClockInner::System => f.write_str("Clock::System"),
            ClockInner::Manual(_) => f.write_str("Clock::Manual"),
        }
    }
}

/// Milliseconds since the Unix epoch: how instants are stored on both engines.
pub fn to_millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch rather than fail a read.
pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

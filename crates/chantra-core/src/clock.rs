//! The service's notion of "now". Production reads the system clock; tests
//! move time forward (TTL expiry, 30-day idle deletion) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// Current time, truncated to microseconds: PostgreSQL keeps no more, so
    /// both databases store and return identical values.
    pub fn now(&self) -> DateTime<Utc> {
        let micros = Utc::now().timestamp_micros() + self.offset_micros.load(Ordering::Relaxed);
        DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now)
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: chrono::Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX / 2);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

//! Prometheus metrics, recorded where things happen and rendered at
//! `/metrics` on every role when `METRICS_ENABLED=true`.
//!
//! This crate records through the `metrics` facade only; the binary installs
//! the process-wide Prometheus recorder at startup (chantra's `metrics`
//! module), before anything here is recorded, and renders it. Recording never
//! depends on the flag — the flag only decides whether the text is served.
//! Hot-path counters are registered once ([`get`]) instead of being looked
//! up per event.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `chantra_publishes_total` | counter | |
//! | `chantra_deliveries_total` | counter | |
//! | `chantra_streams_active` | gauge | |
//! | `chantra_streams_opened_total` | counter | |
//! | `chantra_replay_pages_total` | counter | |
//! | `chantra_lag_catch_ups_total` | counter | |
//! | `chantra_lag_disconnects_total` | counter | |
//! | `chantra_replay_memory_ends_total` | counter | |
//! | `chantra_slow_reader_disconnects_total` | counter | |
//! | `chantra_rate_limited_total` | counter | |
//! | `chantra_http_request_duration_seconds` | histogram | role, status |
//! | `chantra_db_query_duration_seconds` | histogram | outcome |
//! | `chantra_store_call_duration_seconds` | histogram | op, outcome |
//! | `chantra_task_failures_total` | counter | task |
//! | `chantra_fanout_notices_received_total` | counter | |
//! | `chantra_fanout_notices_dropped_total` | counter | |

use std::sync::LazyLock;

use metrics::{Counter, Gauge};

/// Handles for the counters and gauges touched per event.
pub struct Metrics {
    pub publishes: Counter,
    pub deliveries: Counter,
    pub streams_active: Gauge,
    pub streams_opened: Counter,
    pub replay_pages: Counter,
    pub lag_catch_ups: Counter,
    pub lag_disconnects: Counter,
    /// Streams ended (to resume later) because the replay memory budget had no room.
    pub replay_memory_ends: Counter,
    /// Streams cut for reading slower than SSE_MIN_READ_RATE.
    pub slow_reader_disconnects: Counter,
    pub rate_limited: Counter,
    /// Notices this process received from the bus (other processes' and its own).
    pub notices_received: Counter,
    /// Notices the bus could not send (its connection down or its queue full):
    /// readers catch up by cursor instead.
    pub notices_dropped: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    publishes: metrics::counter!("chantra_publishes_total"),
    deliveries: metrics::counter!("chantra_deliveries_total"),
    streams_active: metrics::gauge!("chantra_streams_active"),
    streams_opened: metrics::counter!("chantra_streams_opened_total"),
    replay_pages: metrics::counter!("chantra_replay_pages_total"),
    lag_catch_ups: metrics::counter!("chantra_lag_catch_ups_total"),
    lag_disconnects: metrics::counter!("chantra_lag_disconnects_total"),
    replay_memory_ends: metrics::counter!("chantra_replay_memory_ends_total"),
    slow_reader_disconnects: metrics::counter!("chantra_slow_reader_disconnects_total"),
    rate_limited: metrics::counter!("chantra_rate_limited_total"),
    notices_received: metrics::counter!("chantra_fanout_notices_received_total"),
    notices_dropped: metrics::counter!("chantra_fanout_notices_dropped_total"),
});

pub fn get() -> &'static Metrics {
    &METRICS
}

/// Records one database statement.
pub fn record_query(elapsed: std::time::Duration, failed: bool) {
    let outcome = if failed { "error" } else { "ok" };
    metrics::histogram!("chantra_db_query_duration_seconds", "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// Records one payload-store call.
pub fn record_store_call(op: &'static str, ok: bool, elapsed: std::time::Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!("chantra_store_call_duration_seconds", "op" => op, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Records a background task that panicked or stopped (it is restarted).
pub fn record_task_failure(task: &'static str) {
    metrics::counter!("chantra_task_failures_total", "task" => task).increment(1);
}

//! Prometheus metrics, recorded where things happen and rendered at
//! `/metrics` on every role when `METRICS_ENABLED=true`.
//!
//! One process-wide recorder (the `metrics` crate's global), installed the
//! first time anything is recorded, so recording never depends on the flag —
//! the flag only decides whether the text is served. Hot-path counters are
//! registered once ([`get`]) instead of being looked up per event.
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

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process). Called first thing
/// when the app is built: chantra-core's counters bind to whatever recorder
/// is installed when they are first touched.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder =
            PrometheusBuilder::new().set_buckets(BUCKETS).expect("the bucket list is not empty").build_recorder();
        let handle = recorder.handle();
        // Fails only if something else installed a recorder first; then that one records.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install().render()
}

pub use chantra_core::metrics::{Metrics, get, record_task_failure};

/// Records one HTTP request's time to its response head.
pub fn record_request(role: &'static str, status: u16, elapsed: std::time::Duration) {
    install();
    metrics::histogram!("chantra_http_request_duration_seconds", "role" => role, "status" => status.to_string())
        .record(elapsed.as_secs_f64());
}

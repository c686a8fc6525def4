//! The settings of the HTTP side of every role, one layer below the code
//! that uses them; `config.rs` builds them from the CLI and environment.

use std::time::Duration;

use crate::http::serve::ConnectionLimits;
use chantra_core::domain::Secret;

/// RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST, both at least 1 (`config.rs` checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// What the HTTP side of every role needs; `config.rs` builds it.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// A non-streaming request longer than this is answered 503.
    pub request_timeout: Duration,
    /// `None` when rate limiting is off.
    pub rate_limit: Option<RateLimit>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub connection: ConnectionLimits,
    /// Whether every role serves /metrics.
    pub metrics: bool,
    /// Origins allowed to read streams from a browser; `None` allows every origin.
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Largest accepted publish payload, in bytes.
    pub max_payload_bytes: usize,
    /// `None`: the internal read API is off (404).
    pub internal_api_token: Option<Secret<String>>,
    pub sse: SseSettings,
}

/// How event streams behave.
#[derive(Debug, Clone)]
pub struct SseSettings {
    pub keepalive: Duration,
    pub retry_ms: u64,
    pub replay_max: u64,
    /// Bytes per second a reader must take at least (slower: disconnected to resume).
    pub min_read_rate: u64,
    pub max_streams: usize,
    pub max_streams_per_ip: usize,
}

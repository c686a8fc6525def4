//! What the landing pages show about this deployment, one layer below the
//! code that uses it; `config.rs` builds it.

/// What the landing pages show about this deployment; `config.rs` builds it.
#[derive(Debug, Clone)]
pub struct LandingSettings {
    /// Public base URL of the rest role (LANDING_REST_URL).
    pub rest_url: String,
    /// Scheme + host (+ port) channel URLs start with.
    pub channel_base_url: String,
    pub mcp_public_url: String,
    pub channel_idle_days: i64,
    pub max_payload_bytes: usize,
    pub replay_max: u64,
    pub keepalive: std::time::Duration,
}

//! What the landing pages show about this deployment, one layer below the
//! code that uses it; `config.rs` builds it.

/// What the landing pages show about this deployment; `config.rs` builds it.
#[derive(Debug, Clone)]
pub struct LandingSettings {
    /// Where the landing role itself is reached (its bind address).
    pub landing_url: String,
    /// Public base URL of the rest role (LANDING_REST_URL, else its bind address).
    pub rest_url: String,
    /// Scheme + host (+ port) channel URLs start with.
    pub channel_base_url: String,
    /// Public base URL of the mcp role (MCP_PUBLIC_URL, else its bind address).
    pub mcp_public_url: String,
    pub channel_idle_days: i64,
    pub max_payload_bytes: usize,
    pub replay_max: u64,
    pub keepalive: std::time::Duration,
}

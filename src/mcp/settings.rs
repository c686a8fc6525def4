//! The mcp role's settings, one layer below the code that uses them;
//! `config.rs` builds them.

use std::time::Duration;

use chantra_core::domain::Secret;

/// The mcp role's settings; `config.rs` builds them.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// Public base URL (MCP_PUBLIC_URL), without a trailing slash.
    pub public_url: String,
    /// DNS-rebinding protection: the Host and Origin values answered.
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// Sessions held in memory by this process, and per client IP.
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Inactivity after which a session is closed (its slot freed).
    pub session_idle: Duration,
    pub max_payload_bytes: usize,
    /// Payload bytes one read_channel_messages page may carry.
    pub page_max_bytes: u64,
    pub keepalive: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The channels role's internal API, when this process does not run
    /// the channels role itself; otherwise messages are read in process.
    pub remote_channels: Option<RemoteChannels>,
    pub waits: WaitSettings,
    pub subscriptions: SubscriptionSettings,
}

/// Channel resource subscriptions (resources/subscribe, subscriptions/listen):
/// each holds a live subscription and a task until it ends.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionSettings {
    /// MCP_MAX_SUBSCRIPTIONS: subscriptions in this process.
    pub max_subscriptions: usize,
    /// MCP_MAX_SUBSCRIPTIONS_PER_SESSION: subscriptions one session holds.
    pub max_per_session: usize,
}

/// wait_for_messages: how long a call may wait, and how many may wait at
/// once (each holds a live subscription and a task until it returns).
#[derive(Debug, Clone, Copy)]
pub struct WaitSettings {
    /// MCP_WAIT_DEFAULT_SECS: when the call names no timeout.
    pub default_timeout: Duration,
    /// MCP_WAIT_MAX_SECS: the longest timeout a call may ask for.
    pub max_timeout: Duration,
    /// MCP_MAX_WAITS: waiting calls in this process.
    pub max_waits: usize,
    /// MCP_MAX_WAITS_PER_IP: waiting calls per client IP.
    pub max_waits_per_ip: usize,
    /// SSE_REPLAY_MAX: the most messages a resuming wait replays before it
    /// reports a gap, as for SSE readers.
    pub replay_max: u64,
}

/// CHANNELS_INTERNAL_URL with INTERNAL_API_TOKEN.
#[derive(Debug, Clone)]
pub struct RemoteChannels {
    pub url: String,
    pub token: Secret<String>,
}

//! The mcp role: Chantra's tools for AI agents over MCP Streamable HTTP
//! (rmcp), at `/mcp` and, for clients configured with that path, `/sse`;
//! the legacy HTTP+SSE transport at `GET /sse` + `POST /messages`
//! (legacy_sse.rs); plus `/.well-known/mcp-server`, a description of this server.
//!
//! Sessions are stored in the database (session_store.rs), so several mcp
//! replicas behind one address serve one client without sticky sessions;
//! the ones held in memory are capped per process and per client IP
//! (sessions.rs).

mod edges;
mod failure;
mod legacy_sse;
mod links;
mod params;
mod resources;
mod session_store;
mod sessions;
pub mod settings;
mod source;
mod tools;
mod wait;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use rmcp::model::ProtocolVersion;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

pub use session_store::DbSessionStore;
pub use sessions::{CappedSessions, SessionSlots};
pub use settings::{McpSettings, RemoteChannels, SubscriptionSettings, WaitSettings};
pub use source::{MessageSource, max_remote_page_bytes};
pub use tools::ChantraMcp;

use crate::http::rate_limit::ClientIpKey;
use crate::state::AppState;
use chantra_core::error::AppError;

/// Room in a request for a base64 payload at the limit, plus the envelope.
const REQUEST_SLACK: usize = 64 * 1024;

/// The largest MCP request body accepted (413 above): a `publish_message`
/// call carrying a payload of `max_payload_bytes` in base64, plus its envelope.
pub fn max_request_bytes(max_payload_bytes: usize) -> usize {
    max_payload_bytes.div_ceil(3) * 4 + REQUEST_SLACK
}

pub fn router(state: &AppState) -> Router<AppState> {
    let config = &state.mcp;
    let page_max_bytes = usize::try_from(config.page_max_bytes).unwrap_or(usize::MAX);
    let source = match &config.remote_channels {
        Some(remote) => MessageSource::internal(
            &remote.url,
            remote.token.expose(),
            max_remote_page_bytes(page_max_bytes, config.max_payload_bytes),
        ),
        None => MessageSource::InProcess,
    };

    let mut http_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_allowed_origins(config.allowed_origins.clone())
        .with_max_request_body_bytes(max_request_bytes(config.max_payload_bytes))
        .with_sse_keep_alive(Some(config.keepalive))
        // A child of the process's token: sessions end at shutdown, and
        // nothing rmcp cancels can reach the rest of the process.
        .with_cancellation_token(state.shutdown.child_token());
    http_config.session_store = Some(DbSessionStore::new(state.service.db().clone(), state.service.clock().clone()));

    let slots = SessionSlots::new(config.max_sessions, config.max_sessions_per_ip);
    let sessions = Arc::new(CappedSessions::new(slots.clone(), config.session_idle));
    let guard = sessions::SessionGuard::new(slots, sessions.clone(), ClientIpKey::new(&config.trusted_proxies));

    let service = state.service.clone();
    let tools = ChantraMcp::tools();
    let waits =
        wait::Waits::new(config.waits, ClientIpKey::new(&config.trusted_proxies), config.keepalive, page_max_bytes);
    let subscriptions = resources::Subscriptions::new(config.subscriptions, state.shutdown.child_token());
    let handler = move || {
        let session = subscriptions.session();
        ChantraMcp::new(service.clone(), source.clone(), page_max_bytes, waits.clone(), tools.clone(), session)
    };
    let legacy = legacy_sse::LegacySse::new(
        config.max_sessions,
        config.max_sessions_per_ip,
        ClientIpKey::new(&config.trusted_proxies),
        config.keepalive,
        state.shutdown.child_token(),
        max_request_bytes(config.max_payload_bytes),
        (config.allowed_hosts.clone(), config.allowed_origins.clone()),
        handler.clone(),
    );
    let mcp = StreamableHttpService::new(move || Ok(handler()), sessions, http_config);
    Router::new()
        .nest_service("/mcp", mcp.clone())
        .nest_service("/sse", mcp)
        // Answered by legacy_sse::intercept; a route so the layers below see the path.
        .route(
            legacy_sse::MESSAGES_PATH,
            axum::routing::post(|| async { crate::http::error::ApiError(AppError::RouteNotFound) }),
        )
        .layer(middleware::from_fn_with_state(guard, sessions::limit_sessions))
        // Outside the session cap: the legacy transport has its own (legacy_sse.rs).
        .layer(middleware::from_fn_with_state(legacy, legacy_sse::intercept))
        .layer(middleware::from_fn_with_state(
            edges::BodyCap(max_request_bytes(config.max_payload_bytes)),
            edges::jsonrpc_edges,
        ))
        .route("/.well-known/mcp-server", get(discovery))
}

/// What an agent (or a person) needs to connect.
async fn discovery(State(state): State<AppState>) -> Json<Value> {
    let base = &state.mcp.public_url;
    let tools: Vec<String> = ChantraMcp::tool_names();
    let versions: Vec<&str> = ProtocolVersion::KNOWN_VERSIONS.iter().map(|v| v.as_str()).collect();
    Json(json!({
        "name": "chantra",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Anonymous pub/sub channels: create a channel, publish messages, read them or wait for them, manage read grants.",
        "endpoints": {
            "streamable_http": format!("{base}/mcp"),
            "sse": format!("{base}/sse"),
        },
        "transport": "streamable-http",
        // /sse: GET opens the legacy HTTP+SSE transport (2024-11-05); a POST there is Streamable HTTP.
        "transports": ["streamable-http", "sse"],
        "protocol_versions": versions,
        "tools": tools,
        "resource_templates": ["chantra://channels/{channel_id}"],
        "authentication": "none; channel tokens are tool arguments",
    }))
}

//! The legacy HTTP+SSE transport (MCP 2024-11-05) at `/sse`, for clients
//! that still speak it (the official Python SDK's `sse_client`, the MCP
//! Inspector's auto-selected transport for a URL ending in `/sse`). rmcp 3.11
//! no longer ships a server for it, so it is built here on rmcp's generic
//! transport (a sink and a stream of JSON-RPC messages):
//!
//! - `GET /sse` (without `Mcp-Session-Id`) opens the event stream; its first
//!   event, `endpoint`, names where to POST: `/messages?sessionId=…`. Every
//!   server message follows as an `event: message`.
//! - `POST /messages?sessionId=…` hands one JSON-RPC message to that session
//!   and is answered 202; the answer comes on the event stream.
//!
//! Everything else on `/sse` (a POST, a GET with `Mcp-Session-Id`) stays
//! Streamable HTTP, so clients configured with `/sse` for that keep working.
//!
//! A session lives as long as its event stream: closing it ends the session.
//! It is held by this process only (the POSTs must reach the process holding
//! the stream: sticky routing, or one mcp replica, for legacy clients).
//! Sessions are capped like Streamable HTTP ones, counted apart:
//! MCP_MAX_SESSIONS per process (503) and MCP_MAX_SESSIONS_PER_IP per
//! client (429); each session's inbound queue holds at most
//! [`INBOUND_QUEUE`] messages (503 `server_busy` beyond).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use futures::channel::mpsc;
use rmcp::ServiceExt as _;
use rmcp::model::{ClientJsonRpcMessage, GetExtensions as _, ServerJsonRpcMessage};
use tokio_util::sync::CancellationToken;

use super::tools::ChantraMcp;
use crate::http::rate_limit::ClientIpKey;
use crate::http::streams::{StreamSlot, StreamSlots};
use chantra_core::error::AppError;

/// Messages a session's client may have sent and the server not yet taken.
const INBOUND_QUEUE: usize = 32;
/// Server messages waiting for the event stream to be written.
const OUTBOUND_QUEUE: usize = 32;
/// Requests of one session being worked on or answered but not yet written
/// to its event stream. POST /messages answers 202 at once, so without
/// this a client that never reads /sse could start requests (and their
/// answers, up to a page each) without end: beyond it, 503.
const MAX_IN_FLIGHT: usize = 16;

/// A session's way in: its inbound queue and its count of requests in flight.
#[derive(Clone)]
struct SessionInbox {
    sender: mpsc::Sender<ClientJsonRpcMessage>,
    in_flight: Arc<AtomicUsize>,
}
const SESSION_HEADER: &str = "mcp-session-id";
pub const MESSAGES_PATH: &str = "/messages";

type Factory = Arc<dyn Fn() -> ChantraMcp + Send + Sync>;

/// The legacy sessions of this process.
#[derive(Clone)]
pub struct LegacySse {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Mutex<HashMap<String, SessionInbox>>,
    slots: Arc<StreamSlots>,
    client_ip: ClientIpKey,
    factory: Factory,
    keepalive: Duration,
    shutdown: CancellationToken,
    /// The largest message body read (MCP's request cap).
    max_body: usize,
    /// MCP_ALLOWED_HOSTS / MCP_ALLOWED_ORIGINS (with the defaults config.rs
    /// adds): the DNS-rebinding protection rmcp applies to Streamable HTTP.
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
}

impl LegacySse {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        max_sessions: usize,
        max_sessions_per_ip: usize,
        client_ip: ClientIpKey,
        keepalive: Duration,
        shutdown: CancellationToken,
        max_body: usize,
        allowed: (Vec<String>, Vec<String>),
        factory: impl Fn() -> ChantraMcp + Send + Sync + 'static,
    ) -> Self {
        let (allowed_hosts, allowed_origins) = allowed;
        let inner = Inner {
            sessions: Mutex::new(HashMap::new()),
            slots: StreamSlots::other(max_sessions, max_sessions_per_ip),
            client_ip,
            factory: Arc::new(factory),
            keepalive,
            shutdown,
            max_body,
            allowed_hosts,
            allowed_origins,
        };
        Self { inner: Arc::new(inner) }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionInbox>> {
        self.inner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes the legacy transport's two requests; passes everything else on.
pub async fn intercept(State(legacy): State<LegacySse>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let opening = request.method() == Method::GET && path == "/sse" && !request.headers().contains_key(SESSION_HEADER);
    let posting = request.method() == Method::POST && path == MESSAGES_PATH;
    if !opening && !posting {
        return next.run(request).await;
    }
    if !legacy.inner.host_and_origin_allowed(request.headers()) {
        tracing::warn!("legacy SSE request refused: Host or Origin not allowed (possible DNS rebinding)");
        return (StatusCode::FORBIDDEN, "Forbidden: Host or Origin header is not allowed").into_response();
    }
    if opening { open(legacy, request) } else { post(legacy, request).await }
}

fn client_ip(legacy: &LegacySse, request: &Request) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    legacy.inner.client_ip.client_ip(peer, request.headers())
}

/// Ends a session when its event stream is dropped (the client went away,
/// or the server stopped the session).
struct SessionEnd {
    legacy: LegacySse,
    id: String,
    stop: CancellationToken,
    _slot: StreamSlot,
}

impl Drop for SessionEnd {
    fn drop(&mut self) {
        self.legacy.sessions().remove(&self.id);
        self.stop.cancel();
    }
}

fn open(legacy: LegacySse, request: Request) -> Response {
    let slot = match legacy.inner.slots.acquire(client_ip(&legacy, &request)) {
        Ok(slot) => slot,
        Err(AppError::ServerBusy) => {
            let limit = legacy.inner.slots_limit();
            return crate::http::error::respond(AppError::TooManySessions { limit });
        }
        Err(AppError::TooManyStreams { limit }) => {
            return crate::http::error::respond(AppError::TooManySessionsFromClient { limit });
        }
        Err(err) => return crate::http::error::respond(err),
    };
    let id = format!("{:032x}", rand::random::<u128>());
    let (inbound_tx, inbound_rx) = mpsc::channel::<ClientJsonRpcMessage>(INBOUND_QUEUE);
    let (outbound_tx, outbound_rx) = mpsc::channel::<ServerJsonRpcMessage>(OUTBOUND_QUEUE);
    let in_flight = Arc::new(AtomicUsize::new(0));
    legacy.sessions().insert(id.clone(), SessionInbox { sender: inbound_tx, in_flight: in_flight.clone() });
    let stop = legacy.inner.shutdown.child_token();
    let handler = (legacy.inner.factory)();
    let session_stop = stop.clone();
    tokio::spawn(async move {
        // Returns once `initialize` is done (or the session is stopped before it).
        match handler.serve_with_ct((outbound_tx, inbound_rx), session_stop).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(err) => tracing::debug!(error = %err, "legacy SSE session ended before initialize"),
        }
    });

    let endpoint = Event::default().event("endpoint").data(format!("{MESSAGES_PATH}?sessionId={id}"));
    let end = SessionEnd { legacy: legacy.clone(), id, stop, _slot: slot };
    let messages = outbound_rx.map(move |message| {
        let _ = &end;
        if matches!(message, ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)) {
            // Answered: one request fewer in flight (never below zero).
            let _ = in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        let data = serde_json::to_string(&message).unwrap_or_default();
        Ok::<Event, Infallible>(Event::default().event("message").data(data))
    });
    let events = futures::stream::once(async move { Ok::<Event, Infallible>(endpoint) }).chain(messages);
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(legacy.inner.keepalive)).into_response();
    response.headers_mut().insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

impl Inner {
    fn slots_limit(&self) -> usize {
        self.slots.max_total()
    }

    /// As rmcp checks Streamable HTTP requests: the Host must be an allowed
    /// host (its port too when the allowed entry names one), and an Origin,
    /// when sent, an allowed origin (any port when the entry names none).
    fn host_and_origin_allowed(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Ok(host) = host.parse::<axum::http::uri::Authority>() else { return false };
        let host_ok = self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|allowed| {
                let (name, port) = match allowed.parse::<axum::http::uri::Authority>() {
                    Ok(a) => (a.host().to_ascii_lowercase(), a.port_u16()),
                    Err(_) => (allowed.to_ascii_lowercase(), None),
                };
                name.trim_matches(['[', ']']) == host.host().to_ascii_lowercase().trim_matches(['[', ']'])
                    && port.is_none_or(|p| host.port_u16() == Some(p))
            });
        if !host_ok {
            return false;
        }
        let Some(origin) = headers.get(header::ORIGIN) else { return true };
        if self.allowed_origins.is_empty() {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else { return false };
        self.allowed_origins.iter().filter_map(|allowed| url::Url::parse(allowed).ok()).any(|allowed| {
            allowed.scheme() == origin.scheme()
                && allowed.host_str() == origin.host_str()
                && allowed.port().is_none_or(|p| origin.port_or_known_default() == Some(p))
        })
    }
}

async fn post(legacy: LegacySse, request: Request) -> Response {
    let id = crate::http::extract::query_param(request.uri().query(), "sessionId").unwrap_or_default();
    let Some(SessionInbox { mut sender, in_flight }) = legacy.sessions().get(&id).cloned() else {
        return crate::http::error::respond(AppError::bad_request(
            "session_not_found",
            "no such session: open GET /sse again and use the endpoint it announces",
        ));
    };
    let (parts, body) = request.into_parts();
    let max = legacy.inner.max_body;
    let bytes = match crate::http::extract::read_limited(&parts.headers, body, max, max).await {
        Ok(bytes) => bytes,
        Err(err) => return crate::http::error::respond(err),
    };
    let Ok(mut message) = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) else {
        return crate::http::error::respond(AppError::bad_request("invalid_json", "not a JSON-RPC message"));
    };
    // As rmcp does for Streamable HTTP: the tools see the HTTP request (client IP).
    let is_request = matches!(message, ClientJsonRpcMessage::Request(_));
    if let ClientJsonRpcMessage::Request(request) = &mut message {
        request.request.extensions_mut().insert(parts);
    }
    if is_request
        && in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < MAX_IN_FLIGHT).then_some(n + 1))
            .is_err()
    {
        return crate::http::error::respond(AppError::ServerBusy);
    }
    match sender.try_send(message) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(err) if err.is_full() => {
            if is_request {
                in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            crate::http::error::respond(AppError::ServerBusy)
        }
        Err(_) => crate::http::error::respond(AppError::bad_request(
            "session_not_found",
            "the session has ended: open GET /sse again",
        )),
    }
}

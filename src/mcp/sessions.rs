//! Caps on the MCP sessions this process holds in memory. rmcp keeps every
//! session as a worker task with its channels (about 62 KB each), so any
//! caller that can send `initialize` could otherwise grow the process without
//! bound. A session takes a slot — at most MCP_MAX_SESSIONS in all and
//! MCP_MAX_SESSIONS_PER_IP per client IP — from the request that creates it
//! (an `initialize`, or a request that restores a stored session into this
//! process) until it is closed: by the client (HTTP DELETE), by idling past
//! MCP_SESSION_IDLE_SECS, or at shutdown.
//!
//! Two parts: [`limit_sessions`], a middleware in front of rmcp that knows
//! the client and reserves a slot before a session can be made (answering
//! 503 or 429 `too_many_sessions` in the project's JSON error shape when
//! none is left — rmcp clients report the HTTP status and body of a failed
//! `initialize`), and [`CappedSessions`], rmcp's in-memory session manager
//! with a hook on `close_session`, the one place every way a session ends
//! passes through, which gives the slot back.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, LocalSessionManagerError};
use rmcp::transport::streamable_http_server::session::{EventStore, RestoreOutcome, ServerSseMessage, SessionId};

use crate::http::rate_limit::ClientIpKey;
use chantra_core::error::AppError;

const SESSION_HEADER: &str = "mcp-session-id";

/// The slots: how many sessions are held, per client IP and in all, and
/// which IP each session's slot is counted against.
pub struct SessionSlots {
    max: usize,
    max_per_ip: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    sessions: HashMap<SessionId, IpAddr>,
}

impl SessionSlots {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max, max_per_ip, held: Mutex::new(Held::default()) })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // The counts stay consistent even if a holder panicked: every update is one step.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for `ip`, or says why there is none.
    fn reserve(self: &Arc<Self>, ip: IpAddr) -> Result<Reservation, AppError> {
        let mut held = self.held();
        if held.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err(AppError::TooManySessionsFromClient { limit: self.max_per_ip });
        }
        if held.total >= self.max {
            return Err(AppError::TooManySessions { limit: self.max });
        }
        held.total += 1;
        *held.per_ip.entry(ip).or_default() += 1;
        Ok(Reservation { slots: self.clone(), ip, kept: false })
    }

    /// Gives back the slot of session `id`, if it holds one.
    fn release(&self, id: &SessionId) {
        let mut held = self.held();
        if let Some(ip) = held.sessions.remove(id) {
            held.give_back(ip);
        }
    }

    /// Sessions holding a slot now.
    pub fn total(&self) -> usize {
        self.held().total
    }
}

impl Held {
    fn give_back(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Keeps the map as small as the sessions held.
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// A slot taken for a request that may create a session; given back when
/// dropped unless the session was made.
struct Reservation {
    slots: Arc<SessionSlots>,
    ip: IpAddr,
    kept: bool,
}

impl Reservation {
    /// The slot now belongs to session `id` (unless `id` already holds one:
    /// then this one is given back).
    fn keep_for(mut self, id: SessionId) {
        let mut held = self.slots.held();
        if let std::collections::hash_map::Entry::Vacant(entry) = held.sessions.entry(id) {
            entry.insert(self.ip);
            self.kept = true;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.slots.held().give_back(self.ip);
        }
    }
}

/// What the middleware needs: the slots, the session manager (to ask
/// whether a session is in memory) and how to find the client IP.
#[derive(Clone)]
pub struct SessionGuard {
    slots: Arc<SessionSlots>,
    manager: Arc<CappedSessions>,
    client_ip: ClientIpKey,
}

impl SessionGuard {
    pub fn new(slots: Arc<SessionSlots>, manager: Arc<CappedSessions>, client_ip: ClientIpKey) -> Self {
        Self { slots, manager, client_ip }
    }
}

/// Reserves a slot for any request that may put a session in memory — a
/// POST without a session (an `initialize`), or a request naming a session
/// this process does not hold (rmcp restores it from the database) — and
/// keeps it for the session the request ends up with.
pub async fn limit_sessions(State(guard): State<SessionGuard>, request: Request, next: Next) -> Response {
    let named: Option<SessionId> =
        request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(SessionId::from);
    let may_create = match &named {
        None => request.method() == Method::POST,
        Some(id) => request.method() != Method::DELETE && !guard.manager.holds(id).await,
    };
    if !may_create {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ip = guard.client_ip.client_ip(peer, request.headers());
    let reservation = match guard.slots.reserve(ip) {
        Ok(reservation) => reservation,
        Err(err) => {
            tracing::debug!(%ip, code = err.code(), "MCP session refused");
            return crate::http::error::respond(err);
        }
    };
    let response = next.run(request).await;
    let made = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(SessionId::from).or(named);
    if let Some(id) = made
        && guard.manager.holds(&id).await
    {
        reservation.keep_for(id.clone());
        // The session may have closed between the check and keeping the slot.
        if !guard.manager.holds(&id).await {
            guard.slots.release(&id);
        }
    }
    response
}

/// rmcp's in-memory session manager, closing sessions after
/// MCP_SESSION_IDLE_SECS of inactivity and giving back each closed
/// session's slot.
pub struct CappedSessions {
    inner: LocalSessionManager,
    slots: Arc<SessionSlots>,
}

impl CappedSessions {
    pub fn new(slots: Arc<SessionSlots>, idle: Duration) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(idle);
        Self { inner, slots }
    }

    async fn holds(&self, id: &SessionId) -> bool {
        self.inner.has_session(id).await.unwrap_or(false)
    }
}

impl SessionManager for CappedSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    /// Every end of a session comes here: DELETE, the idle timeout, a failed
    /// handshake, shutdown.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.slots.release(id);
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn slots_are_capped_per_ip_and_in_all_and_come_back() {
        let slots = SessionSlots::new(3, 2);
        let a1 = slots.reserve(ip(1)).unwrap();
        let a2 = slots.reserve(ip(1)).unwrap();
        assert!(matches!(slots.reserve(ip(1)), Err(AppError::TooManySessionsFromClient { limit: 2 })));
        let b1 = slots.reserve(ip(2)).unwrap();
        assert!(matches!(slots.reserve(ip(3)), Err(AppError::TooManySessions { limit: 3 })));

        // A reservation that made no session gives its slot back.
        drop(b1);
        assert_eq!(slots.total(), 2);
        a1.keep_for(SessionId::from("s1"));
        a2.keep_for(SessionId::from("s2"));
        assert_eq!(slots.total(), 2);
        assert!(slots.reserve(ip(1)).is_err(), "kept slots stay taken");
        slots.release(&SessionId::from("s1"));
        slots.release(&SessionId::from("s1"));
        assert_eq!(slots.total(), 1, "releasing twice gives back one slot");
        let again = slots.reserve(ip(1)).unwrap();
        // A second reservation for a session that already holds a slot is given back.
        again.keep_for(SessionId::from("s2"));
        assert_eq!(slots.total(), 1);
        slots.release(&SessionId::from("s2"));
        assert_eq!(slots.total(), 0);
        assert!(slots.held().per_ip.is_empty(), "no entry is kept for an IP without sessions");
    }
}

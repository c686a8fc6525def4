//! wait_for_messages: a long poll on the live feed. The call opens the same
//! reader stream an SSE reader gets (`Service::open_stream`: join the hub,
//! check access, replay after the cursor, then live messages), and returns
//! as soon as it holds a message, or empty when the timeout passes.
//!
//! Why in this process and not through the channels role's internal API:
//! the mcp process already has the database and the payload store (it
//! publishes), and with PostgreSQL it runs the notification listener too
//! (app.rs), so its hub hears every process's publishes. A wait is then one
//! subscription in memory — no HTTP request held open to another role per
//! waiting agent, no database polling.
//!
//! Bounds: each waiting call holds a stream slot (MCP_MAX_WAITS per process,
//! MCP_MAX_WAITS_PER_IP per client), at most MCP_WAIT_MAX_SECS, and at most
//! `max_messages` messages and PAGE_MAX_BYTES of them in its answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use rmcp::RoleServer;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use tokio::time::Instant;

use super::params::{GapReport, ReadMessage, WaitParams, WaitResult};
use super::settings::WaitSettings;
use super::source::stream_message;
use super::tools::{json_len, read_message};
use crate::http::rate_limit::ClientIpKey;
use crate::http::streams::StreamSlots;
use chantra_core::db::entity::message;
use chantra_core::domain::{ChannelId, MessageId, ReadToken};
use chantra_core::error::AppError;
use chantra_core::service::{Cursor, MAX_PAGE, Service, StreamEvent, StreamSettings};

const DEFAULT_MAX_MESSAGES: u64 = 50;
/// Once a call holds a message, it takes the live ones that follow within
/// this pause too (a burst), then answers.
const BATCH_LINGER: Duration = Duration::from_millis(25);
/// The same while a backlog is read from the database, whose next message
/// may take a few queries (more on a loaded server); paid at most once, at
/// the end of the backlog.
const REPLAY_LINGER: Duration = Duration::from_millis(250);

/// What every wait shares in one process.
#[derive(Clone)]
pub struct Waits {
    pub settings: WaitSettings,
    pub slots: Arc<StreamSlots>,
    pub client_ip: ClientIpKey,
    /// How often a waiting call sends a progress notification (when asked for).
    pub progress_every: Duration,
    /// PAGE_MAX_BYTES: the most bytes of messages (as JSON) one answer carries.
    pub page_max_bytes: usize,
}

impl Waits {
    pub fn new(
        settings: WaitSettings,
        client_ip: ClientIpKey,
        progress_every: Duration,
        page_max_bytes: usize,
    ) -> Self {
        let slots = StreamSlots::other(settings.max_waits, settings.max_waits_per_ip);
        Self { settings, slots, client_ip, progress_every, page_max_bytes }
    }

    pub async fn wait(
        &self,
        service: &Service,
        params: WaitParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<WaitResult, AppError> {
        let channel = ChannelId::parse(&params.channel_id)?;
        let token = params.read_token.as_deref().map(ReadToken::parse).transpose()?;
        let after = params
            .after
            .as_deref()
            .map(|a| MessageId::parse(a).map_err(|e| AppError::InvalidCursor(format!("after: {e}"))))
            .transpose()?;
        let max_secs = self.settings.max_timeout.as_secs();
        let timeout = match params.timeout_seconds {
            None => self.settings.default_timeout,
            Some(secs) if (1..=max_secs).contains(&secs) => Duration::from_secs(secs),
            Some(_) => {
                return Err(AppError::bad_request(
                    "invalid_timeout",
                    format!("timeout_seconds must be from 1 to {max_secs}"),
                ));
            }
        };
        let max_messages = params.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
        if !(1..=MAX_PAGE).contains(&max_messages) {
            return Err(AppError::bad_request("invalid_limit", format!("max_messages must be from 1 to {MAX_PAGE}")));
        }

        let _slot = self.slots.acquire(self.client_ip_of(context))?;
        let settings = StreamSettings { keepalive: self.progress_every, replay_max: self.settings.replay_max };
        // The request's token: cancelled by notifications/cancelled, the
        // session's end and the server's shutdown (rmcp's tokens are children
        // of the process's), each of which ends the stream.
        let cursor = after.map_or(Cursor::Now, Cursor::After);
        let mut stream =
            service.open_stream(channel, None, token.as_ref(), cursor, settings, Some(context.ct.clone())).await?;

        let started = Instant::now();
        let deadline = started + timeout;
        let progress_token = context.meta.get_progress_token();
        let mut answer = Answer::new(max_messages, self.page_max_bytes);
        let mut timed_out = false;
        let (mut gap, mut channel_deleted, mut access_ended) = (None, false, None);
        loop {
            let waited = if answer.messages.is_empty() {
                tokio::time::timeout_at(deadline, stream.next()).await
            } else {
                let linger = if stream.replaying() { REPLAY_LINGER } else { BATCH_LINGER };
                tokio::time::timeout_at(deadline.min(Instant::now() + linger), stream.next()).await
            };
            let event = match waited {
                Err(_) => {
                    timed_out = answer.messages.is_empty();
                    break;
                }
                // Cancelled, shutting down, or the stream could not keep up: answer what is held.
                Ok(None) => break,
                Ok(Some(event)) => event,
            };
            match event {
                StreamEvent::Gap(found) => {
                    gap = Some(GapReport {
                        requested_after: found.requested_after.to_string(),
                        oldest_available: found.oldest_available.map(|id| id.to_string()),
                    });
                }
                StreamEvent::Live(live) => answer.add(&live.row, &live.payload),
                StreamEvent::Replayed { row, payload } => answer.add(&row, &payload),
                StreamEvent::KeepAlive => {
                    if let Some(token) = &progress_token {
                        let waited = started.elapsed().as_secs_f64().floor();
                        let note = ProgressNotificationParam::new(token.clone(), waited)
                            .with_total(timeout.as_secs_f64())
                            .with_message("waiting for messages");
                        // Sent only when the client takes it: one that stops
                        // reading must not hold this call (its wait slot, its
                        // subscription) past its deadline or its cancellation.
                        tokio::select! {
                            _ = context.peer.notify_progress(note) => {}
                            () = context.ct.cancelled() => break,
                            () = tokio::time::sleep_until(deadline) => {
                                timed_out = answer.messages.is_empty();
                                break;
                            }
                        }
                    }
                }
                StreamEvent::Deleted => {
                    channel_deleted = true;
                    break;
                }
                StreamEvent::Revoked(why) => {
                    access_ended = Some(why.as_str().to_owned());
                    break;
                }
            }
            if answer.full {
                break;
            }
        }
        let next_cursor = answer.messages.last().map_or_else(|| stream.position().to_string(), |m| m.id.clone());
        Ok(WaitResult {
            has_more: answer.full,
            messages: answer.messages,
            next_cursor,
            timed_out,
            gap,
            channel_deleted,
            access_ended,
        })
    }

    /// The caller's IP as the rate limiter and session caps see it.
    fn client_ip_of(&self, context: &RequestContext<RoleServer>) -> IpAddr {
        let Some(parts) = context.extensions.get::<axum::http::request::Parts>() else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        self.client_ip.client_ip(peer, &parts.headers)
    }
}

/// The messages of one answer, bounded in count and in bytes (at least one).
struct Answer {
    messages: Vec<ReadMessage>,
    used: usize,
    max_messages: usize,
    budget: usize,
    /// No more fit: the caller has more waiting.
    full: bool,
}

impl Answer {
    fn new(max_messages: u64, budget: usize) -> Self {
        let max_messages = usize::try_from(max_messages).unwrap_or(usize::MAX);
        Self { messages: Vec::new(), used: 0, max_messages, budget, full: false }
    }

    /// Adds a message, unless the answer is over its byte budget with it:
    /// then the answer is full and the message is left for the next call
    /// (whose cursor is the last message kept).
    fn add(&mut self, row: &message::Model, payload: &[u8]) {
        let message = read_message(stream_message(row, payload));
        let size = json_len(&message);
        if !self.messages.is_empty() && self.used.saturating_add(size) > self.budget {
            self.full = true;
            return;
        }
        self.used = self.used.saturating_add(size);
        self.messages.push(message);
        self.full = self.messages.len() >= self.max_messages;
    }
}

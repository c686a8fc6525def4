//! Channels as MCP resources: the template `chantra://channels/{channel_id}`;
//! `resources/read` gives a channel's newest messages and its state;
//! `resources/subscribe` (protocol revisions up to 2025-11-25) and
//! `subscriptions/listen` (2026-07-28) send `notifications/resources/updated`
//! for each message published on the channel, on any process.
//!
//! A private channel's resource carries its read token in the URI's query,
//! `chantra://channels/{id}?read_token=chr_…`: resources/read and subscribe
//! take nothing but the URI. Chantra never logs resource URIs.
//!
//! A subscription is the same reader stream an SSE reader or a waiting
//! wait_for_messages call holds (`Service::open_stream`: hub subscription,
//! access check, live messages), so PostgreSQL fan-out reaches it, a revoked
//! token or a deleted channel ends it (after a last notification), and it
//! costs a task and a hub subscription. Bounds: MCP_MAX_SUBSCRIPTIONS per
//! process and MCP_MAX_SUBSCRIPTIONS_PER_SESSION per session. They end with
//! `resources/unsubscribe`, the session (its handler is dropped), or the
//! process's shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{
    ReadResourceResult, ResourceContents, ResourceTemplate, ResourceUpdatedNotificationParam, SubscriptionFilter,
};
use rmcp::service::{Peer, SubscriptionSink};
use serde_json::json;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::links::CHANNEL_URI_PREFIX;
use super::params::ReadMessage;
use super::settings::SubscriptionSettings;
use super::source::{MessageSource, PageStart};
use super::tools::{json_len, read_message};
use crate::http::streams::{StreamSlot, StreamSlots};
use chantra_core::domain::{ChannelId, MessageId, ReadToken};
use chantra_core::error::AppError;
use chantra_core::service::{Cursor, Service, StreamEvent, StreamSettings};

/// How many of the newest messages resources/read returns (then bounded by PAGE_MAX_BYTES).
pub const READ_MESSAGES: u64 = 20;
/// How often an idle subscription's stream wakes up (it sends nothing then).
const IDLE_TICK: Duration = Duration::from_secs(60);

/// The resource template clients list.
pub fn channel_template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{CHANNEL_URI_PREFIX}{{channel_id}}"), "channel")
        .with_title("Chantra channel")
        .with_description(
            "A channel: read it for its newest messages (oldest first) and state; subscribe to be \
             notified (notifications/resources/updated) when a message is published. A private \
             channel needs its read token in the URI: chantra://channels/{channel_id}?read_token=chr_...",
        )
        .with_mime_type("application/json")
}

/// A parsed channel resource URI.
struct ChannelUri {
    channel: ChannelId,
    token: Option<ReadToken>,
}

fn parse_uri(uri: &str) -> Result<ChannelUri, ErrorData> {
    let not_ours = || {
        ErrorData::resource_not_found(
            "unknown resource: channel resources are chantra://channels/{channel_id}[?read_token=...]",
            Some(json!({ "code": "resource_not_found" })),
        )
    };
    let rest = uri.strip_prefix(CHANNEL_URI_PREFIX).ok_or_else(not_ours)?;
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    let channel = ChannelId::parse(id).map_err(|_| not_ours())?;
    let mut token = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("read_token", value)) => {
                token = Some(ReadToken::parse(value).map_err(|e| resource_error(AppError::from(e)))?);
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "a channel resource URI takes only ?read_token=...",
                    Some(json!({ "code": "invalid_uri" })),
                ));
            }
        }
    }
    Ok(ChannelUri { channel, token })
}

/// A service error as a JSON-RPC error carrying the REST API's code.
fn resource_error(err: AppError) -> ErrorData {
    let data = Some(json!({ "code": err.code() }));
    match err {
        AppError::ChannelNotFound => ErrorData::resource_not_found(err.to_string(), data),
        AppError::MissingToken(_) => ErrorData::invalid_params(
            "this channel is private: add ?read_token=chr_... (a read token) to the resource URI",
            data,
        ),
        err if err.status() >= 500 && err.status() != 503 => ErrorData::internal_error("internal error", None),
        err => ErrorData::invalid_params(err.to_string(), data),
    }
}

/// resources/read: the newest messages (at most READ_MESSAGES and
/// `page_max_bytes` of them as JSON, keeping the newest), oldest first.
pub async fn read(
    service: &Service,
    source: &MessageSource,
    page_max_bytes: usize,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let parsed = parse_uri(uri)?;
    let page = source
        .read(service, parsed.channel, parsed.token.as_ref(), PageStart::Latest, READ_MESSAGES)
        .await
        .map_err(resource_error)?;
    let mut kept: Vec<ReadMessage> = Vec::new();
    let mut used = 0usize;
    let mut truncated = page.truncated;
    for remote in page.messages.into_iter().rev() {
        let message = read_message(remote);
        let size = json_len(&message);
        if !kept.is_empty() && used.saturating_add(size) > page_max_bytes {
            truncated = true;
            break;
        }
        used = used.saturating_add(size);
        kept.push(message);
    }
    kept.reverse();
    let newest = kept.last().map(|m| m.id.clone());
    let body = json!({
        "channel_id": parsed.channel.to_string(),
        "state": "open",
        "newest_message_id": newest,
        "messages": kept,
        "truncated": truncated,
        "hint": "The newest messages, oldest first. Continue after newest_message_id with \
                 wait_for_messages or read_channel_messages (after = newest_message_id).",
    });
    Ok(ReadResourceResult::new(vec![ResourceContents::text(body.to_string(), uri).with_mime_type("application/json")]))
}

/// What every subscription in one process shares.
#[derive(Clone)]
pub struct Subscriptions {
    settings: SubscriptionSettings,
    slots: Arc<StreamSlots>,
    shutdown: CancellationToken,
}

impl Subscriptions {
    pub fn new(settings: SubscriptionSettings, shutdown: CancellationToken) -> Self {
        // Counted per process only: the per-"IP" cap equals the process cap.
        let slots = StreamSlots::other(settings.max_subscriptions, settings.max_subscriptions);
        Self { settings, slots, shutdown }
    }

    /// A new session's subscriptions.
    pub fn session(&self) -> Arc<SessionSubscriptions> {
        Arc::new(SessionSubscriptions {
            process: self.clone(),
            token: self.shutdown.child_token(),
            active: Mutex::new(HashMap::new()),
            listening: AtomicUsize::new(0),
            accepted_at: Mutex::default(),
        })
    }
}

/// Where a subscription's notifications go.
#[derive(Clone)]
enum Notify {
    /// resources/subscribe: the session's own channel to the client.
    Peer(Peer<RoleServer>),
    /// subscriptions/listen: that request's stream.
    Listen(SubscriptionSink),
}

/// How long a client may take to accept one notification; one that stops
/// reading loses the subscription (and its slot) rather than holding it.
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Notify {
    async fn updated(&self, uri: &str) -> bool {
        let sent = async {
            match self {
                Notify::Peer(peer) => {
                    peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await.is_ok()
                }
                Notify::Listen(sink) => sink.notify_resource_updated(uri).await.is_ok(),
            }
        };
        tokio::time::timeout(NOTIFY_WAIT, sent).await.unwrap_or(false)
    }
}

/// One session's subscriptions, keyed by the URI subscribed to. Dropped
/// with the session's handler, which ends them all.
pub struct SessionSubscriptions {
    process: Subscriptions,
    token: CancellationToken,
    active: Mutex<HashMap<String, Active>>,
    /// URIs followed by this session's open subscriptions/listen requests.
    listening: AtomicUsize,
    /// When the listen request about to run was accepted: its streams start
    /// there (see [`SessionSubscriptions::listen`]). rmcp makes a handler
    /// per 2026-07-28 request, so there is one; were two pending, the
    /// earliest is kept — starting earlier can only repeat a notification,
    /// never miss one.
    accepted_at: Mutex<Option<MessageId>>,
}

/// A resources/subscribe subscription: dropping `guard` ends it; `ended`
/// is cancelled once it has ended on its own (channel deleted, token
/// revoked), so it no longer counts and the URI can be subscribed again.
struct Active {
    _guard: DropGuard,
    ended: CancellationToken,
}

impl Drop for SessionSubscriptions {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl SessionSubscriptions {
    /// resources/subscribe. Subscribing again to a URI already followed is a no-op.
    pub async fn subscribe(&self, service: &Service, uri: &str, peer: Peer<RoleServer>) -> Result<(), ErrorData> {
        let max = self.process.settings.max_per_session;
        {
            let mut active = self.lock();
            active.retain(|_, a| !a.ended.is_cancelled());
            if active.contains_key(uri) {
                return Ok(());
            }
            if active.len() + self.listening.load(Ordering::Relaxed) >= max {
                return Err(too_many_for_session(max));
            }
        }
        let ended = CancellationToken::new();
        // Answered after the stream is open: "from now" misses nothing the client publishes after the answer.
        let guard =
            self.start(service, uri, Cursor::Now, Notify::Peer(peer), self.token.child_token(), ended.clone()).await?;
        let mut active = self.lock();
        if active.len() + self.listening.load(Ordering::Relaxed) >= max {
            return Err(too_many_for_session(max));
        }
        active.insert(uri.to_owned(), Active { _guard: guard, ended });
        Ok(())
    }

    /// resources/unsubscribe: ends the subscription (unknown URIs are fine).
    pub fn unsubscribe(&self, uri: &str) {
        self.lock().remove(uri);
    }

    /// The URIs of `requested` a subscriptions/listen request may follow:
    /// channel URIs, at most MCP_MAX_SUBSCRIPTIONS_PER_SESSION of them.
    /// Remembers when, for the listen request that follows.
    pub fn accepted(&self, requested: &SubscriptionFilter) -> SubscriptionFilter {
        let now = MessageId::floor_ago(Duration::ZERO);
        self.accepted_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(now);
        let mut accepted = SubscriptionFilter::new();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|uri| parse_uri(uri).is_ok())
                .take(self.process.settings.max_per_session)
                .cloned()
                .collect()
        });
        accepted
    }

    /// subscriptions/listen: follows every accepted URI until the request
    /// is cancelled or the session ends. A URI whose channel cannot be
    /// followed (gone, token refused, no slot) fails the request.
    ///
    /// rmcp acknowledges the request before it calls this, so a client may
    /// publish as soon as it reads the acknowledgment — before the streams
    /// below are open. They therefore start where the request was accepted
    /// (the floor id of that moment), not "from now": a message committed
    /// in between is notified (once; `replay_max` 1), not taken for one
    /// from before the subscription.
    pub async fn listen(
        &self,
        service: &Service,
        uris: &[String],
        sink: SubscriptionSink,
        cancelled: CancellationToken,
    ) -> Result<(), ErrorData> {
        let max = self.process.settings.max_per_session;
        {
            // Under the lock, so subscribe and listen count against one cap.
            let mut active = self.lock();
            active.retain(|_, a| !a.ended.is_cancelled());
            if active.len() + self.listening.load(Ordering::Relaxed) + uris.len() > max {
                return Err(too_many_for_session(max));
            }
            self.listening.fetch_add(uris.len(), Ordering::Relaxed);
        }
        let _listening = release_on_drop(&self.listening, uris.len());
        let since = self.accepted_at.lock().unwrap_or_else(|p| p.into_inner()).take();
        let cursor = since.map_or(Cursor::Now, Cursor::After);
        let token = self.token.child_token();
        let mut guards = Vec::with_capacity(uris.len());
        for uri in uris {
            let notify = Notify::Listen(sink.clone());
            guards.push(self.start(service, uri, cursor, notify, token.child_token(), CancellationToken::new()).await?);
        }
        tokio::select! {
            () = cancelled.cancelled() => {}
            () = token.cancelled() => {}
        }
        drop(guards);
        Ok(())
    }

    /// Opens the channel's stream (checking access now) and forwards each
    /// publish as a notification until `token` is cancelled; dropping the
    /// returned guard cancels it.
    async fn start(
        &self,
        service: &Service,
        uri: &str,
        cursor: Cursor,
        notify: Notify,
        token: CancellationToken,
        ended: CancellationToken,
    ) -> Result<DropGuard, ErrorData> {
        let parsed = parse_uri(uri)?;
        let slot = self.process.slots.acquire(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).map_err(|_| {
            ErrorData::invalid_params(
                "this server follows as many resource subscriptions as it allows; try later",
                Some(json!({ "code": "server_busy" })),
            )
        })?;
        let settings = StreamSettings { keepalive: IDLE_TICK, replay_max: 1 };
        let stream = service
            .open_stream(parsed.channel, None, parsed.token.as_ref(), cursor, settings, Some(token.clone()))
            .await
            .map_err(resource_error)?;
        tokio::spawn(forward(stream, notify, uri.to_owned(), slot, ended));
        Ok(token.drop_guard())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gives back `n` listened URIs when a listen request ends, however it ends.
fn release_on_drop(listening: &AtomicUsize, n: usize) -> impl Drop + '_ {
    struct Release<'a>(&'a AtomicUsize, usize);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(self.1, Ordering::Relaxed);
        }
    }
    Release(listening, n)
}

fn too_many_for_session(max: usize) -> ErrorData {
    ErrorData::invalid_params(
        format!("a session may follow at most {max} resources: unsubscribe from one first"),
        Some(json!({ "code": "too_many_subscriptions" })),
    )
}

/// One subscription: a notification per published message; a last one
/// when the channel is deleted or the token stops working, then the end.
async fn forward(
    mut stream: chantra_core::service::ReaderStream,
    notify: Notify,
    uri: String,
    _slot: StreamSlot,
    ended: CancellationToken,
) {
    let _ended = ended.drop_guard();
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::Live(_) | StreamEvent::Replayed { .. } => {
                if !notify.updated(&uri).await {
                    return;
                }
            }
            StreamEvent::Deleted | StreamEvent::Revoked(_) => {
                notify.updated(&uri).await;
                return;
            }
            StreamEvent::Gap(_) | StreamEvent::KeepAlive => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<SessionSubscriptions> {
        let settings = SubscriptionSettings { max_subscriptions: 10, max_per_session: 5 };
        Subscriptions::new(settings, CancellationToken::new()).session()
    }

    /// A listen request's streams start where it was accepted (rmcp sends
    /// the acknowledgment before `listen` runs); of two acceptances pending,
    /// the earlier, and one value at most.
    #[test]
    fn the_listen_starts_where_it_was_accepted() {
        let session = session();
        let before = MessageId::floor_ago(Duration::ZERO);
        session.accepted(&SubscriptionFilter::new());
        let first = session.accepted_at.lock().unwrap().expect("remembered");
        assert!(first >= before, "the floor id of the acceptance, not of an earlier moment");
        std::thread::sleep(std::time::Duration::from_millis(2));
        session.accepted(&SubscriptionFilter::new());
        assert_eq!(*session.accepted_at.lock().unwrap(), Some(first), "the earlier one is kept");
    }
}

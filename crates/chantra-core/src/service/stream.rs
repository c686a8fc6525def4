//! The stream protocol, owned by the service: [`Service::open_stream`]
//! subscribes, lets the reader in, plans the replay; [`ReaderStream`] then
//! yields the reader's events — optional replay from the database, then
//! live events from the hub, with keep-alives, de-duplication at the
//! replay/live boundary, catch-up after lag, and the reasons a stream ends
//! (channel deleted, grant revoked or expired, server shutting down).
//!
//! Events are data, not bytes: the edge that carries them encodes them (the
//! SSE frames live in chantra's `http::channels::sse`), so any transport —
//! SSE, a future MCP subscription — shares this one protocol.
//!
//! The reader joins the hub *before* the replay is read, and every event
//! carries its id: anything both replayed and broadcast is sent once (ids at
//! or below the last one sent are dropped), and nothing committed after the
//! join can be missed.
//!
//! A replay (a resume, a catch-up, a message too large for the hub's ring)
//! holds at most one payload and its frame at a time: it pages through rows
//! (metadata only) and loads and encodes a payload only when the consumer
//! asks for the next event — i.e. once the previous one was written. Those
//! bytes are drawn from the process-wide replay budget (SSE_REPLAY_MEMORY_BYTES,
//! a byte-weighted semaphore); a reader that gets no room within
//! [`REPLAY_ROOM_WAIT`] ends its stream so it resumes later with Last-Event-ID.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::reads::{Gap, ReaderState};
use super::{Reader, Service};
use crate::db::entity::message;
use crate::domain::{ChannelId, MessageId, ReadToken, Visibility};
use crate::error::AppError;
use crate::fanout::hub::{HubEvent, LiveMessage, Subscription};

/// Rows (metadata, no payloads) read from the database per replay page.
const REPLAY_PAGE: u64 = 32;
/// How long a replaying reader waits for room in the replay memory budget
/// before its stream ends (a resumable end: the client comes back with Last-Event-ID).
pub const REPLAY_ROOM_WAIT: Duration = Duration::from_secs(5);
/// Bytes of a message frame besides its base64 payload and content type
/// (field names, two ids, two times).
const FRAME_OVERHEAD: u64 = 320;
/// Pause before retrying a replay page that failed (store or database down).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Where a reader wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Live only, from now.
    Now,
    /// After a message id (Last-Event-ID), or from a time as the floor id
    /// of that time (`?since=`): the same replay cap and gap rules.
    After(MessageId),
    /// From the oldest message kept, with no gap (the reader asked for no
    /// position) and no replay cap (a poll bounds its own page).
    Oldest,
}

/// How streams behave (SSE_KEEPALIVE_SECS, SSE_REPLAY_MAX).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub keepalive: Duration,
    /// At most this many messages are replayed to a resuming reader (a gap
    /// announces the rest), and a reader that lags the live buffer by more
    /// is disconnected (it resumes).
    pub replay_max: u64,
}

/// Why a reader's grant stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    Expired,
}

impl Revocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::Expired => "expired",
        }
    }
}

/// One thing a reader is told. A stream ends after [`StreamEvent::Deleted`]
/// or [`StreamEvent::Revoked`], or without a last event (shutdown, a reader
/// too slow or no room for its replay: it resumes by cursor).
#[derive(Debug)]
pub enum StreamEvent {
    /// Messages after the cursor are lost; said before the replay.
    Gap(Gap),
    /// A message from the live feed, shared by every reader in this process.
    Live(Arc<LiveMessage>),
    /// A message from the database (resume, catch-up, too large for the ring).
    Replayed { row: message::Model, payload: Bytes },
    /// Nothing happened for a keep-alive interval.
    KeepAlive,
    /// The channel is gone (last event).
    Deleted,
    /// The reader's grant was revoked or expired (last event).
    Revoked(Revocation),
}

impl Service {
    /// Opens a reader's stream: joins the live feed first, then checks
    /// access and plans the backlog, so nothing committed in between can be
    /// missed (duplicates are dropped by id), and a revocation or deletion
    /// committed before the check is seen by the check, after it by the
    /// feed. A refused reader drops its subscription with the error.
    /// `expected` is the visibility the reader asked for (its URL); `None`
    /// accepts either.
    pub async fn open_stream(
        &self,
        channel: ChannelId,
        expected: Option<Visibility>,
        token: Option<&ReadToken>,
        cursor: Cursor,
        settings: StreamSettings,
        stop: Option<CancellationToken>,
    ) -> Result<ReaderStream, AppError> {
        let subscription = self.fanout.hub().subscribe(channel);
        let reader = self.authorize_reader(channel, expected, token).await?;
        // "From now" means after the newest message the database has, not after
        // this host's clock (another host's ids may run behind it); a cursor in
        // the future is clamped to it, or live messages would be held back.
        let mut preamble = Vec::new();
        let (replay_after, baseline) = match cursor {
            Cursor::Now => (None, self.newest_message_id(channel).await?.unwrap_or(MessageId::MIN)),
            Cursor::After(after) => {
                // The newest id comes with the plan: a resume costs two queries
                // (the reader's check and this), not five — and readers resuming
                // from one cursor at one moment share them (service/coalesce.rs).
                let plan = self.plan_replay(channel, after, settings.replay_max).await?;
                preamble.extend(plan.gap.map(StreamEvent::Gap));
                (Some(plan.after), plan.after.min(plan.newest.unwrap_or(MessageId::MIN)))
            }
            Cursor::Oldest => (Some(MessageId::MIN), MessageId::MIN),
        };
        Ok(ReaderStream::new(self.clone(), subscription, reader, replay_after, baseline, preamble, settings, stop))
    }
}

/// A replay under way.
struct Replay {
    /// The last row read from the database: the next page starts after it.
    after: MessageId,
    /// Rows read and not yet sent.
    rows: VecDeque<message::Model>,
    /// Whether the database may hold more after `after`.
    more: bool,
}

/// One reader's stream; [`ReaderStream::next`] yields its events in order.
pub struct ReaderStream {
    service: Service,
    subscription: Subscription,
    reader: Reader,
    replay: Option<Replay>,
    /// Room in the replay budget for the frame last sent (until the consumer
    /// asks for the next) — kept, resized, for the next replayed frame.
    held: Option<OwnedSemaphorePermit>,
    last_sent: MessageId,
    pending: VecDeque<StreamEvent>,
    keepalive: Interval,
    /// When the read grant expires. Timers live as long as the stream and
    /// are only polled when set: creating one per wake-up would touch the
    /// runtime's timer wheel for every delivery to every reader.
    grant_deadline: Option<Pin<Box<Sleep>>>,
    /// When a recheck that failed is tried again.
    recheck_at: Option<Pin<Box<Sleep>>>,
    max_lag: u64,
    /// The caller's own reason to stop (an MCP subscription's token), if
    /// any, waited on across wake-ups: a future made and dropped on every
    /// wake-up would enter and leave the token's list of waiters for every
    /// delivery. The process's shutdown needs no token: it closes the hub.
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    stop_token: Option<CancellationToken>,
    finished: bool,
}

impl ReaderStream {
    #[allow(clippy::too_many_arguments)]
    fn new(
        service: Service,
        subscription: Subscription,
        reader: Reader,
        replay_after: Option<MessageId>,
        baseline: MessageId,
        preamble: Vec<StreamEvent>,
        settings: StreamSettings,
        stop: Option<CancellationToken>,
    ) -> Self {
        let mut keepalive = tokio::time::interval_at(Instant::now() + settings.keepalive, settings.keepalive);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = service.clock().now();
        let grant_deadline = reader.grant_expires_at.map(|at| {
            let left = (at - now).to_std().unwrap_or_default();
            Box::pin(tokio::time::sleep(left))
        });
        Self {
            service,
            subscription,
            reader,
            replay: replay_after.map(|after| Replay { after, rows: VecDeque::new(), more: true }),
            held: None,
            last_sent: baseline,
            pending: preamble.into(),
            keepalive,
            grant_deadline,
            recheck_at: None,
            max_lag: settings.replay_max,
            stop: stop.clone().map(|token| Box::pin(token.cancelled_owned())),
            stop_token: stop,
            finished: false,
        }
    }

    /// The reader let in (its channel, and grant on a private channel).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Where the reader stands: the id of the last message it was given, or,
    /// before the first, where it started (the newest message when it joined
    /// "from now"). A cursor to resume from with nothing missed or repeated.
    pub fn position(&self) -> MessageId {
        self.last_sent
    }

    /// Whether the next events come from the database (a replay or catch-up
    /// with rows left to send or to read) or are already queued, rather than
    /// awaited from the live feed.
    pub fn replaying(&self) -> bool {
        self.replay.as_ref().is_some_and(|replay| replay.more || !replay.rows.is_empty()) || !self.pending.is_empty()
    }

    /// Whether events wait beyond those already taken: queued ones, or
    /// replay rows not sent yet. Reads the next page of rows (metadata only)
    /// when the last one was used up, so a full last page does not say
    /// "more" when nothing follows. A database error answers true (the
    /// caller then claims more than there may be, never less).
    pub async fn has_backlog(&mut self) -> bool {
        if !self.pending.is_empty() {
            return true;
        }
        let now = self.service.clock().now();
        let Some(replay) = self.replay.as_mut() else { return false };
        loop {
            let last_sent = self.last_sent;
            if replay.rows.iter().any(|row| row.id > last_sent && row.expires_at > now) {
                return true;
            }
            replay.rows.clear();
            if !replay.more {
                return false;
            }
            match self.service.replay_rows(self.reader.channel, replay.after, REPLAY_PAGE).await {
                Ok(rows) => {
                    replay.more = rows.len() as u64 == REPLAY_PAGE;
                    replay.after = rows.last().map_or(replay.after, |row| row.id);
                    replay.rows.extend(rows);
                }
                Err(_) => return true,
            }
        }
    }

    /// The next event already due — queued, or from the replay — without
    /// waiting for the live feed: `None` once the backlog is drained or the
    /// stream has ended ([`ReaderStream::ended`] tells which). What a poll
    /// reads: the same replay, cap and gap as a stream's.
    pub async fn next_backlog(&mut self) -> Option<StreamEvent> {
        loop {
            if self.replay.is_none() {
                self.held = None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended() {
                self.held = None;
                return None;
            }
            self.replay.as_ref()?;
            if let Some(event) = Box::pin(self.replay_step()).await {
                return Some(event);
            }
        }
    }

    /// Whether the stream has ended (its last event, if any, still queued):
    /// the server is shutting down, the reader was too slow, or found no room.
    pub fn ended(&self) -> bool {
        self.finished
            || self.service.fanout().hub().is_closed()
            || self.stop_token.as_ref().is_some_and(CancellationToken::is_cancelled)
    }

    /// The next event; `None` when the stream has ended.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if self.replay.is_none() {
                // The consumer asked for this event: the last replayed one is written.
                self.held = None;
            }
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.ended() {
                self.held = None;
                return None;
            }
            if self.replay.is_some() {
                // Boxed: the (large) database and store futures exist only
                // while a replay step runs, not in every idle stream.
                if let Some(event) = Box::pin(self.replay_step()).await {
                    return Some(event);
                }
                continue;
            }
            // Stop first: a reader flooded with events still stops. (The
            // process's shutdown closes the hub: the feed ends.)
            let woke = tokio::select! {
                biased;
                () = stops(&mut self.stop) => Wake::Shutdown,
                () = fires(&mut self.grant_deadline) => Wake::GrantExpired,
                () = fires(&mut self.recheck_at) => Wake::Recheck,
                received = self.subscription.receiver.recv() => Wake::Event(received),
                _ = self.keepalive.tick() => Wake::KeepAlive,
            };
            match woke {
                // Ends the response so the client reconnects (elsewhere) with Last-Event-ID.
                Wake::Shutdown => return None,
                Wake::GrantExpired => self.end(StreamEvent::Revoked(Revocation::Expired)),
                Wake::Recheck => Box::pin(self.recheck(true)).await,
                Wake::Event(received) => self.on_event(received).await,
                Wake::KeepAlive => return Some(StreamEvent::KeepAlive),
            }
        }
    }

    async fn on_event(&mut self, received: Result<HubEvent, RecvError>) {
        match received {
            Ok(HubEvent::Message(live)) => {
                if live.id() > self.last_sent && live.expires_at() > self.service.clock().now() {
                    self.last_sent = live.id();
                    crate::metrics::get().deliveries.increment(1);
                    self.pending.push_back(StreamEvent::Live(live));
                }
            }
            Ok(HubEvent::Stored { id, expires_at }) => {
                if id > self.last_sent && expires_at > self.service.clock().now() {
                    self.catch_up();
                }
            }
            Ok(HubEvent::Deleted) => self.end(StreamEvent::Deleted),
            Ok(HubEvent::GrantRevoked(grant)) => {
                if self.reader.grant.is_some_and(|g| g == grant) {
                    self.end(StreamEvent::Revoked(Revocation::Revoked));
                }
            }
            Ok(HubEvent::Recheck { channel }) => Box::pin(self.recheck(channel)).await,
            Ok(HubEvent::CatchUp) => self.catch_up(),
            Err(RecvError::Lagged(missed)) => {
                if missed > self.max_lag {
                    tracing::debug!(channel = %self.reader.channel, missed, "reader too slow; disconnecting so it resumes");
                    crate::metrics::get().lag_disconnects.increment(1);
                    self.finished = true;
                } else {
                    crate::metrics::get().lag_catch_ups.increment(1);
                    self.catch_up();
                }
            }
            Err(RecvError::Closed) => self.finished = true,
        }
    }

    /// Re-validates the reader (channel still there, grant still live). If
    /// the database cannot tell right now, asks again a little later rather
    /// than let a missed revocation stand.
    async fn recheck(&mut self, channel: bool) {
        self.recheck_at = None;
        match self.service.recheck_reader(&self.reader, channel).await {
            Ok(ReaderState::Allowed) => {}
            Ok(ReaderState::Revoked(why)) => self.end(StreamEvent::Revoked(why)),
            Ok(ReaderState::ChannelGone) => self.end(StreamEvent::Deleted),
            Err(_) => self.recheck_at = Some(Box::pin(tokio::time::sleep(RETRY_PAUSE))),
        }
    }

    /// Replays what the database holds after the last id sent (or, while a
    /// replay runs, after its last page).
    fn catch_up(&mut self) {
        match &mut self.replay {
            Some(replay) => replay.more = true,
            None => self.replay = Some(Replay { after: self.last_sent, rows: VecDeque::new(), more: true }),
        }
    }

    /// One step of the replay: reads a page of rows, or loads the next
    /// message (returned), or skips one that is gone. An error is retried
    /// after a pause (never skipped).
    async fn replay_step(&mut self) -> Option<StreamEvent> {
        let replay = self.replay.as_mut()?;
        let Some(row) = replay.rows.pop_front() else {
            if !replay.more {
                self.replay = None;
                self.held = None;
                return None;
            }
            let after = replay.after;
            match self.service.replay_rows(self.reader.channel, after, REPLAY_PAGE).await {
                Ok(rows) => {
                    crate::metrics::get().replay_pages.increment(1);
                    let replay = self.replay.as_mut()?;
                    replay.more = rows.len() as u64 == REPLAY_PAGE;
                    replay.after = rows.last().map_or(after, |row| row.id);
                    replay.rows.extend(rows);
                }
                Err(err) => {
                    tracing::warn!(channel = %self.reader.channel, error = %err, "replay page failed; retrying");
                    self.pause().await;
                }
            }
            return None;
        };
        if row.id <= self.last_sent || row.expires_at <= self.service.clock().now() {
            return None;
        }
        // Room for the payload and its encoding while the edge makes one
        // from the other, held until the consumer asks for the next event.
        let (payload, frame_len) = costs(&row);
        if !self.reserve(payload + frame_len).await {
            return None;
        }
        match self.service.replay_payload(&row).await {
            Ok(Some(payload)) => {
                self.last_sent = row.id;
                crate::metrics::get().deliveries.increment(1);
                Some(StreamEvent::Replayed { row, payload })
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(channel = %self.reader.channel, message = %row.id, error = %err, "replay payload failed; retrying");
                if let Some(replay) = self.replay.as_mut() {
                    replay.rows.push_front(row);
                }
                self.held = None;
                self.pause().await;
                None
            }
        }
    }

    /// Makes `bytes` of the replay budget this reader's (capped at the whole
    /// budget, so one large message can still be sent). What it already
    /// holds is reused, and grown at once when there is room: a reader that
    /// keeps reading keeps its turn. Otherwise it waits in line, at most
    /// [`REPLAY_ROOM_WAIT`]; then (or when the stop token is cancelled) the
    /// stream ends and false is returned. The process's shutdown does not cut
    /// the wait short: the stream ends when it is over.
    async fn reserve(&mut self, bytes: u64) -> bool {
        let (budget, total) = self.service.fanout().hub().replay_memory();
        let budget = budget.clone();
        let want = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, total);
        let have = self.held.as_ref().map_or(0, |held| held.num_permits() as u32);
        if have >= want {
            self.shrink_held(u64::from(want));
            return true;
        }
        if let Ok(more) = budget.clone().try_acquire_many_owned(want - have) {
            match &mut self.held {
                Some(held) => held.merge(more),
                None => self.held = Some(more),
            }
            return true;
        }
        self.held = None;
        tokio::select! {
            () = stops(&mut self.stop) => {}
            room = tokio::time::timeout(REPLAY_ROOM_WAIT, budget.acquire_many_owned(want)) => {
                if let Ok(Ok(permit)) = room {
                    self.held = Some(permit);
                    return true;
                }
                tracing::debug!(channel = %self.reader.channel, bytes, "no room in the replay memory budget; ending the stream so it resumes");
                crate::metrics::get().replay_memory_ends.increment(1);
            }
        }
        self.finished = true;
        false
    }

    /// Gives back what is held beyond `bytes`.
    fn shrink_held(&mut self, bytes: u64) {
        if let Some(held) = self.held.as_mut() {
            let keep = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
            if held.num_permits() > keep {
                drop(held.split(held.num_permits() - keep));
            }
        }
    }

    /// Waits before retrying a failed step, unless the stop token is
    /// cancelled meanwhile (the process's shutdown is seen after the wait).
    async fn pause(&mut self) {
        tokio::select! {
            () = stops(&mut self.stop) => self.finished = true,
            () = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }

    fn end(&mut self, last: StreamEvent) {
        self.pending.push_back(last);
        self.finished = true;
    }
}

enum Wake {
    Shutdown,
    GrantExpired,
    Recheck,
    Event(Result<HubEvent, RecvError>),
    KeepAlive,
}

/// Bytes a replayed message takes: its payload, and its encoding (an SSE
/// frame: base64 of the payload, plus the rest of the event).
fn costs(row: &message::Model) -> (u64, u64) {
    let payload = u64::try_from(row.payload_size).unwrap_or(0);
    let frame_len = payload.div_ceil(3) * 4 + row.content_type.len() as u64 * 2 + FRAME_OVERHEAD;
    (payload, frame_len)
}

/// Resolves when the stop token is set and cancelled; never when it is unset.
async fn stops(stop: &mut Option<Pin<Box<WaitForCancellationFutureOwned>>>) {
    match stop {
        Some(cancelled) => cancelled.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the timer is set and due; never when it is unset.
async fn fires(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

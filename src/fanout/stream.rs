//! One reader's event stream: optional replay from the database, then live
//! events from the hub, with keep-alives, de-duplication at the replay/live
//! boundary, catch-up after lag, and the reasons a stream ends (channel
//! deleted, grant revoked or expired, server shutting down).
//!
//! The reader joins the hub *before* the replay is read, and every event
//! carries its id: anything both replayed and broadcast is sent once (ids at
//! or below the last one sent are dropped), and nothing committed after the
//! join can be missed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use uuid::Uuid;

use super::hub::{HubEvent, Subscription};
use super::{frame, stopping};
use crate::error::AppError;
use crate::service::{Reader, Service};

/// Messages read from the database per replay page (bounds memory per reader).
const REPLAY_PAGE: u64 = 32;
/// Pause before retrying a replay page that failed (store or database down).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How one stream is set up.
pub struct StreamPlan {
    pub reader: Reader,
    /// Replay everything after this id first (`None`: live only).
    pub replay_after: Option<Uuid>,
    /// Ids at or below this are never sent (the resume cursor, or "now").
    pub baseline: Uuid,
    /// Frames sent before anything else (retry hint, gap notice).
    pub preamble: Vec<Bytes>,
    pub keepalive: Duration,
    /// A reader that lags the live buffer by more than this is disconnected.
    pub max_lag: u64,
}

struct State<G> {
    service: Service,
    subscription: Subscription,
    reader: Reader,
    replay_after: Option<Uuid>,
    last_sent: Uuid,
    pending: VecDeque<Bytes>,
    keepalive: Interval,
    /// When the read grant expires. Timers live as long as the stream and
    /// are only polled when set: creating one per wake-up would touch the
    /// runtime's timer wheel for every delivery to every reader.
    grant_deadline: Option<Pin<Box<Sleep>>>,
    /// When a recheck that failed is tried again.
    recheck_at: Option<Pin<Box<Sleep>>>,
    max_lag: u64,
    shutdown: watch::Receiver<bool>,
    finished: bool,
    /// Released when the stream ends (e.g. a connection-count slot).
    _guard: G,
}

/// The body of an SSE response.
pub fn event_stream<G: Send + 'static>(
    service: Service,
    subscription: Subscription,
    plan: StreamPlan,
    shutdown: watch::Receiver<bool>,
    guard: G,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut keepalive = tokio::time::interval_at(Instant::now() + plan.keepalive, plan.keepalive);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let now = service.clock().now();
    let grant_deadline = plan.reader.grant_expires_at.map(|at| {
        let left = (at - now).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(left))
    });
    let state = State {
        service,
        subscription,
        reader: plan.reader,
        replay_after: plan.replay_after,
        last_sent: plan.baseline,
        pending: plan.preamble.into(),
        keepalive,
        grant_deadline,
        recheck_at: None,
        max_lag: plan.max_lag,
        shutdown,
        finished: false,
        _guard: guard,
    };
    futures::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((Ok(frame), state))
    })
}

impl<G> State<G> {
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.finished {
                return None;
            }
            if let Some(after) = self.replay_after {
                // Boxed: the (large) database future exists only while a page
                // is read, not in every idle stream.
                Box::pin(self.replay_page(after)).await;
                continue;
            }
            if *self.shutdown.borrow() {
                return None;
            }
            let woke = tokio::select! {
                biased;
                changed = self.shutdown.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => Wake::Shutdown,
                },
                () = fires(&mut self.grant_deadline) => Wake::GrantExpired,
                () = fires(&mut self.recheck_at) => Wake::Recheck,
                received = self.subscription.receiver.recv() => Wake::Event(received),
                _ = self.keepalive.tick() => Wake::KeepAlive,
            };
            match woke {
                // Ends the response so the client reconnects (elsewhere) with Last-Event-ID.
                Wake::Shutdown => return None,
                Wake::GrantExpired => self.end(frame::revoked("expired")),
                Wake::Recheck => Box::pin(self.recheck(true)).await,
                Wake::Event(received) => self.on_event(received).await,
                Wake::KeepAlive => return Some(Bytes::from_static(frame::KEEPALIVE)),
            }
        }
    }

    async fn on_event(&mut self, received: Result<HubEvent, RecvError>) {
        match received {
            Ok(HubEvent::Message { id, expires_at, frame }) => {
                if id > self.last_sent && expires_at > self.service.clock().now() {
                    self.last_sent = id;
                    crate::metrics::get().deliveries.increment(1);
                    self.pending.push_back(frame);
                }
            }
            Ok(HubEvent::Deleted) => self.end(frame::deleted(&self.reader.channel.to_string())),
            Ok(HubEvent::GrantRevoked(grant)) => {
                if self.reader.grant.is_some_and(|g| g.as_uuid() == grant) {
                    self.end(frame::revoked("revoked"));
                }
            }
            Ok(HubEvent::Recheck { channel }) => Box::pin(self.recheck(channel)).await,
            Ok(HubEvent::CatchUp) => self.replay_after = Some(self.last_sent),
            Err(RecvError::Lagged(missed)) => {
                if missed > self.max_lag {
                    tracing::debug!(channel = %self.reader.channel, missed, "reader too slow; disconnecting so it resumes");
                    crate::metrics::get().lag_disconnects.increment(1);
                    self.finished = true;
                } else {
                    crate::metrics::get().lag_catch_ups.increment(1);
                    self.replay_after = Some(self.last_sent);
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
            Ok(()) => {}
            Err(AppError::GrantRevoked) => self.end(frame::revoked("revoked")),
            Err(AppError::GrantExpired) => self.end(frame::revoked("expired")),
            Err(AppError::ChannelNotFound) => self.end(frame::deleted(&self.reader.channel.to_string())),
            Err(_) => self.recheck_at = Some(Box::pin(tokio::time::sleep(RETRY_PAUSE))),
        }
    }

    /// Queues one page of the replay; an error is retried after a pause
    /// (never skipped), unless the server shuts down meanwhile.
    async fn replay_page(&mut self, after: Uuid) {
        match self.service.messages_after(self.reader.channel, Some(after), REPLAY_PAGE).await {
            Ok(page) => {
                crate::metrics::get().replay_pages.increment(1);
                for (row, event) in &page.events {
                    if row.id > self.last_sent {
                        self.last_sent = row.id;
                        crate::metrics::get().deliveries.increment(1);
                        self.pending.push_back(frame::message(event));
                    }
                }
                self.replay_after = page.continues_after(REPLAY_PAGE);
            }
            Err(err) => {
                tracing::warn!(channel = %self.reader.channel, error = %err, "replay page failed; retrying");
                tokio::select! {
                    () = stopping(self.shutdown.clone()) => self.finished = true,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }

    fn end(&mut self, last: Bytes) {
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

/// Resolves when the timer is set and due; never when it is unset.
async fn fires(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

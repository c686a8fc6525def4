//! The PostgreSQL listener: one per process. It receives every `NOTIFY` in
//! commit order, loads each announced message once — and only when a reader
//! on this process follows its channel — and broadcasts it to the hub.
//!
//! Loads run concurrently but are broadcast in arrival order. After the
//! connection is lost the listener reconnects with backoff and catches every
//! followed channel up from the last message it broadcast, so nothing
//! published meanwhile is lost; readers holding grants re-check them, since
//! revocations may have been missed too.

use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::db;
use crate::domain::{ChannelId, MessageId};
use crate::fanout::{HubEvent, Notice};
use crate::supervisor::Job;

/// Messages loaded at once while keeping broadcast order.
const LOAD_CONCURRENCY: usize = 32;
/// Attempts to load one message before readers are told to catch up themselves.
const LOAD_ATTEMPTS: u32 = 3;
/// Notices queued between the listener and the loader.
const QUEUE: usize = 8192;
/// Catch-up page after a reconnection.
const CATCH_UP_PAGE: u64 = 256;
/// Rounds of resync before readers are left to catch up by themselves.
const RESYNC_ATTEMPTS: u32 = 8;

/// What the loader is asked to do, in order.
enum Work {
    Notice(Notice),
    /// The connection was lost and is back: catch up every followed channel.
    Resync,
}

/// The listener's and the loader's work, joined by a fresh queue: two
/// tasks that app.rs supervises as one group (one cannot work without the
/// other). They end when `shutdown` is cancelled; a new pair starts with a
/// resync, so what was committed while they were down is delivered.
pub fn jobs(service: Service, shutdown: CancellationToken) -> Vec<(&'static str, Job)> {
    let (queue, work) = mpsc::channel(QUEUE);
    let listener: Job = Box::pin(listen(service.clone(), queue, shutdown));
    let loader: Job = Box::pin(load_and_broadcast(service, work));
    vec![("notification_listener", listener), ("notification_loader", loader)]
}

async fn listen(service: Service, queue: mpsc::Sender<Work>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let listener = db::notify::listen(&service.db);
        let mut listener = tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener => match result {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "notification listener cannot connect");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(100);
        // Also after the first LISTEN: a reader may have joined while the
        // listener was still connecting, and must not miss what came meanwhile.
        if connected_before {
            tracing::info!("notification listener reconnected; catching up");
        }
        connected_before = true;
        if queue.send(Work::Resync).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match Notice::parse(notification.payload()) {
                    Some(notice) => {
                        if queue.send(Work::Notice(notice)).await.is_err() {
                            return;
                        }
                    }
                    None => tracing::warn!(payload = notification.payload(), "ignoring an unknown notification"),
                },
                // The connection dropped: reconnect, then catch up.
                Ok(None) => {
                    tracing::warn!("notification listener lost its connection");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "notification listener failed");
                    break;
                }
            }
        }
    }
}

/// What a notice turned into, ready to broadcast.
enum Ready {
    Event(ChannelId, HubEvent),
    Resync,
    Nothing,
}

async fn load_and_broadcast(service: Service, work: mpsc::Receiver<Work>) {
    let queued = futures::stream::unfold(work, |mut work| async move { work.recv().await.map(|w| (w, work)) });
    let mut ready = std::pin::pin!(queued.map(|work| load(service.clone(), work)).buffered(LOAD_CONCURRENCY));
    let hub = service.fanout().hub().clone();
    while let Some(item) = ready.next().await {
        match item {
            Ready::Event(channel, event) => hub.send(channel, event),
            Ready::Resync => resync(&service).await,
            Ready::Nothing => {}
        }
    }
}

async fn load(service: Service, work: Work) -> Ready {
    let notice = match work {
        Work::Resync => return Ready::Resync,
        Work::Notice(notice) => notice,
    };
    let hub = service.fanout().hub();
    let channel = notice.channel();
    if !hub.has_subscribers(channel) {
        return Ready::Nothing;
    }
    match notice {
        Notice::Deleted { .. } => Ready::Event(channel, HubEvent::Deleted),
        Notice::Revoked { grant, .. } => Ready::Event(channel, HubEvent::GrantRevoked(grant)),
        Notice::Message { message, .. } => {
            let mut delay = Duration::from_millis(50);
            for attempt in 1..=LOAD_ATTEMPTS {
                match service.message_for_broadcast(channel, message).await {
                    Ok(Some(event)) => return Ready::Event(channel, event),
                    Ok(None) => return Ready::Nothing,
                    Err(err) => {
                        tracing::warn!(%channel, %message, attempt, error = %err, "cannot load a message for broadcast");
                        tokio::time::sleep(delay).await;
                        delay *= 4;
                    }
                }
            }
            // Readers fetch it themselves, retrying until the backend is back.
            Ready::Event(channel, HubEvent::CatchUp)
        }
    }
}

/// After a (re)connection: for every channel followed here, broadcast what
/// was committed after the last message it saw, end streams of deleted
/// channels, and have grant holders re-check their grants. A channel whose
/// check fails (the database is still recovering) is retried with backoff,
/// because a deletion or revocation missed now would never be announced again.
async fn resync(service: &Service) {
    let hub = service.fanout().hub().clone();
    let mut pending = hub.active_channels();
    let mut delay = Duration::from_millis(100);
    for _ in 0..RESYNC_ATTEMPTS {
        let mut failed = Vec::new();
        for (channel, last) in pending {
            if resync_channel(service, channel, last).await.is_err() {
                failed.push((channel, last));
            }
        }
        if failed.is_empty() {
            return;
        }
        pending = failed;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    // Still failing: readers catch up by themselves and recheck on their own timers.
    for (channel, _) in pending {
        hub.send(channel, HubEvent::CatchUp);
        hub.send(channel, HubEvent::Recheck { channel: true });
    }
}

async fn resync_channel(service: &Service, channel: ChannelId, last: MessageId) -> Result<(), crate::error::AppError> {
    let hub = service.fanout().hub();
    if !service.channel_exists(channel).await? {
        hub.send(channel, HubEvent::Deleted);
        return Ok(());
    }
    // Row by row, like a replay: a page of rows holds no payloads, and each
    // message is loaded only if the ring carries its frame.
    let mut after = last;
    loop {
        let rows = service.replay_rows(channel, after, CATCH_UP_PAGE).await?;
        for row in &rows {
            if let Some(event) = service.hub_event(row).await? {
                hub.send(channel, event);
            }
        }
        match rows.last() {
            Some(row) if rows.len() as u64 == CATCH_UP_PAGE => after = row.id,
            _ => break,
        }
    }
    // The channel's existence was just checked here, once for all its readers.
    hub.send(channel, HubEvent::Recheck { channel: false });
    Ok(())
}

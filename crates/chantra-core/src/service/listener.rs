//! The receiving side of fan-out, one per process serving readers: the
//! bus's receiving jobs (fanout::NoticeBus::receivers) queue what they hear,
//! and the loader here turns it into hub events. It loads each announced
//! message once — and only when a reader on this process follows its
//! channel — and broadcasts it.
//!
//! Loads run concurrently but are broadcast in arrival order. A notice that
//! may arrive out of commit order (NATS) only says "this channel is behind":
//! the channel is caught up by cursor from the last message broadcast here,
//! so ids never go backwards. When the bus may have lost notices (it
//! reconnected, or is down and polls) every followed channel is caught up
//! the same way, and readers holding grants re-check them, since
//! revocations may have been missed too.

use std::time::Duration;

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::domain::{ChannelId, MessageId};
use crate::fanout::{HubEvent, Incoming, Notice, NoticeQueue};
use crate::supervisor::Job;

/// Messages loaded at once while keeping broadcast order.
const LOAD_CONCURRENCY: usize = 32;
/// Attempts to load one message before readers are told to catch up themselves.
const LOAD_ATTEMPTS: u32 = 3;
/// Catch-up page after a reconnection.
const CATCH_UP_PAGE: u64 = 256;
/// Rounds of resync before readers are left to catch up by themselves.
const RESYNC_ATTEMPTS: u32 = 8;

/// The bus's receiving jobs and the loader, joined by a fresh queue: tasks
/// that app.rs supervises as one group (one cannot work without the
/// other). They end when `shutdown` is cancelled; a new group starts with a
/// resync, so what was committed while they were down is delivered.
pub fn jobs(service: Service, shutdown: CancellationToken) -> Vec<(&'static str, Job)> {
    let (sink, queue) = crate::fanout::bus::queue();
    let fanout = service.fanout().clone();
    let mut jobs = fanout.bus().receivers(fanout.hub(), sink, shutdown);
    jobs.push(("notification_loader", Box::pin(load_and_broadcast(service, queue))));
    jobs
}

/// What a notice turned into, ready to broadcast.
enum Ready {
    Event(ChannelId, HubEvent),
    Behind(ChannelId),
    Check(ChannelId),
    Resync,
    Nothing,
}

async fn load_and_broadcast(service: Service, work: NoticeQueue) {
    let queued = futures::stream::unfold(work, |mut work| async move { work.recv().await.map(|w| (w, work)) });
    let mut ready = std::pin::pin!(queued.map(|work| load(service.clone(), work)).buffered(LOAD_CONCURRENCY));
    let hub = service.fanout().hub().clone();
    while let Some(item) = ready.next().await {
        match item {
            Ready::Event(channel, event) => hub.send(channel, event),
            Ready::Behind(channel) => catch_up(&service, channel).await,
            Ready::Check(channel) => check(&service, channel).await,
            Ready::Resync => resync(&service).await,
            Ready::Nothing => {}
        }
    }
}

async fn load(service: Service, work: Incoming) -> Ready {
    let notice = match work {
        Incoming::Resync => return Ready::Resync,
        Incoming::Behind(channel) => return Ready::Behind(channel),
        Incoming::Check(channel) => return Ready::Check(channel),
        Incoming::Notice(notice) => notice,
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

/// A notice said `channel` has news: broadcast what was committed after
/// the last message broadcast here. If the database cannot say now, readers
/// catch up by themselves (retrying until it can).
async fn catch_up(service: &Service, channel: ChannelId) {
    let hub = service.fanout().hub();
    let Some(last) = hub.last_message(channel) else { return };
    if let Err(err) = broadcast_after(service, channel, last).await {
        tracing::warn!(%channel, error = %err, "cannot catch a channel up for broadcast");
        hub.send(channel, HubEvent::CatchUp);
    }
}

/// A notice said `channel` was deleted or lost a grant, and the bus does
/// not vouch for it: the database decides. If it cannot say now, readers
/// catch up and re-check on their own (retrying until it can).
async fn check(service: &Service, channel: ChannelId) {
    let hub = service.fanout().hub();
    let Some(last) = hub.last_message(channel) else { return };
    if let Err(err) = resync_channel(service, channel, last).await {
        tracing::warn!(%channel, error = %err, "cannot check a channel after a notice");
        hub.send(channel, HubEvent::CatchUp);
        hub.send(channel, HubEvent::Recheck { channel: true });
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
    broadcast_after(service, channel, last).await?;
    // The channel's existence was just checked here, once for all its readers.
    hub.send(channel, HubEvent::Recheck { channel: false });
    Ok(())
}

/// Broadcasts every message of `channel` committed after `last`. Row by
/// row, like a replay: a page of rows holds no payloads, and each message
/// is loaded only if the ring carries its frame.
async fn broadcast_after(service: &Service, channel: ChannelId, last: MessageId) -> Result<(), crate::error::AppError> {
    let hub = service.fanout().hub();
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
    Ok(())
}

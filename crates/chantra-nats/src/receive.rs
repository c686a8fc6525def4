//! The receiving side, on processes that serve readers: two jobs, supervised
//! with the service's loader as one group.
//!
//! - `nats_subscriber` follows the hub: it subscribes to a channel's subject
//!   when the channel gains its first reader here and unsubscribes when it
//!   loses its last. Once the server has the subscription (a flush), the
//!   channel is caught up by cursor, so nothing committed between the
//!   reader's join and the subscription is missed.
//! - `nats_watch` follows the connection: after every (re)connect (and when
//!   the client reports a subscription that fell behind) it asks for a
//!   resync of every followed channel; while disconnected it asks again
//!   every poll interval, so readers keep receiving (late, from the database)
//!   and revocations and deletions still end streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use chantra_core::domain::ChannelId;
use chantra_core::fanout::{Hub, Notice, NoticeSink};
use chantra_core::supervisor::Job;
use futures::StreamExt as _;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::bus::Shared;

/// How long a subscribe or flush may wait on the client before it is retried.
const CLIENT_WAIT: Duration = Duration::from_secs(2);
/// Pause before subscriptions that failed are tried again.
const RETRY: Duration = Duration::from_secs(1);

pub(crate) fn jobs(
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    sink: NoticeSink,
    shutdown: CancellationToken,
) -> Vec<(&'static str, Job)> {
    let subscriber = follow(shared.clone(), hub, sink.clone(), shutdown.clone());
    let watch = watch(shared, sink, shutdown);
    vec![("nats_subscriber", Box::pin(subscriber)), ("nats_watch", Box::pin(watch))]
}

/// Keeps one subscription per channel with readers here. Each forwards its
/// notices to the loader from a task of its own; the tasks live in a
/// `JoinSet` owned here, so they all end (and unsubscribe) with this job.
async fn follow(shared: Arc<Shared>, hub: Arc<Hub>, sink: NoticeSink, shutdown: CancellationToken) {
    let mut tasks = JoinSet::new();
    let mut followed: HashMap<ChannelId, AbortHandle> = HashMap::new();
    let resync = loop {
        match subscribe(&shared, shared.subjects.resync()).await {
            Some(subscription) => break subscription,
            None => tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            },
        }
    };
    let resync_task = tasks.spawn(forward_resyncs(resync, sink.clone()));
    loop {
        let complete = reconcile(&shared, &hub, &sink, &mut followed, &mut tasks).await;
        if resync_task.is_finished() || sink.is_closed() {
            return;
        }
        let retry = async {
            match complete {
                true => std::future::pending().await,
                false => tokio::time::sleep(RETRY).await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = hub.feeds_changed() => {}
            () = retry => {}
            // A forwarder ended (unsubscribed, or its subscription closed): reconcile again.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Subscribes to channels that gained readers, unsubscribes from those that
/// lost them. False if some subscription failed (retried later).
async fn reconcile(
    shared: &Shared,
    hub: &Hub,
    sink: &NoticeSink,
    followed: &mut HashMap<ChannelId, AbortHandle>,
    tasks: &mut JoinSet<()>,
) -> bool {
    let wanted: std::collections::HashSet<ChannelId> =
        hub.active_channels().into_iter().map(|(channel, _)| channel).collect();
    followed.retain(|channel, task| {
        let keep = wanted.contains(channel) && !task.is_finished();
        if !keep {
            // Dropping the subscription unsubscribes.
            task.abort();
        }
        keep
    });
    let mut added = Vec::new();
    let mut complete = true;
    for channel in wanted {
        if followed.contains_key(&channel) {
            continue;
        }
        match subscribe(shared, shared.subjects.channel(channel)).await {
            Some(subscription) => {
                followed.insert(channel, tasks.spawn(forward(channel, subscription, sink.clone())));
                added.push(channel);
            }
            None => complete = false,
        }
    }
    if !added.is_empty() {
        // The server answers a flush after it has our subscriptions: from
        // here on it delivers their notices. What committed before is read
        // from the database. If the flush fails (NATS is down), the watch
        // job's polling and its resync after the reconnect cover it.
        let _ = tokio::time::timeout(CLIENT_WAIT, shared.client.flush()).await;
        for channel in added {
            if sink.behind(channel).await.is_err() {
                return true;
            }
        }
    }
    complete
}

async fn subscribe(shared: &Shared, subject: String) -> Option<Subscriber> {
    match tokio::time::timeout(CLIENT_WAIT, shared.client.subscribe(subject)).await {
        Ok(Ok(subscription)) => Some(subscription),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "NATS: cannot subscribe; retrying");
            None
        }
        Err(_) => {
            tracing::warn!("NATS: subscribing timed out; retrying");
            None
        }
    }
}

/// One channel's notices into the loader's queue. A message notice only
/// says the channel is behind (notices from several publishers can arrive
/// out of commit order): the loader reads what is new by cursor. A deletion
/// or revocation notice makes it check the channel and its readers' grants.
async fn forward(channel: ChannelId, mut subscription: Subscriber, sink: NoticeSink) {
    while let Some(message) = subscription.next().await {
        chantra_core::metrics::get().notices_received.increment(1);
        let notice = std::str::from_utf8(&message.payload).ok().and_then(Notice::parse);
        let queued = match notice {
            Some(Notice::Message { .. }) => sink.behind(channel).await,
            // Anyone who may publish on the subject could forge these: they
            // make the loader check the database, never end a stream themselves.
            Some(Notice::Deleted { .. } | Notice::Revoked { .. }) => sink.check(channel).await,
            _ => {
                tracing::warn!(%channel, bytes = message.payload.len(), "NATS: ignoring an unknown notice");
                Ok(())
            }
        };
        if queued.is_err() {
            return;
        }
    }
}

async fn forward_resyncs(mut subscription: Subscriber, sink: NoticeSink) {
    while subscription.next().await.is_some() {
        if sink.resync().await.is_err() {
            return;
        }
    }
}

/// Resync after every (re)connect; poll while disconnected.
async fn watch(shared: Arc<Shared>, sink: NoticeSink, shutdown: CancellationToken) {
    let mut connected = false;
    loop {
        if shared.lost_notices.swap(false, std::sync::atomic::Ordering::AcqRel) && sink.resync().await.is_err() {
            return;
        }
        if shared.connected() {
            // The flush returns after the client's re-subscriptions reached
            // the server: a catch-up from now on misses nothing.
            if !connected && matches!(tokio::time::timeout(CLIENT_WAIT, shared.client.flush()).await, Ok(Ok(()))) {
                connected = true;
                tracing::info!("NATS: notices flowing; catching up every followed channel");
                if sink.resync().await.is_err() {
                    return;
                }
            }
        } else {
            if connected {
                tracing::warn!(every = ?shared.poll_interval, "NATS unreachable; catching readers up from the database on a timer");
            }
            connected = false;
            if sink.resync().await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.connection_changed.notified() => {}
            () = tokio::time::sleep(shared.poll_interval) => {}
        }
    }
}

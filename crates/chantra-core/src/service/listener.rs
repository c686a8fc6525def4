//! The receiving side of fan-out, one per process serving readers: the
//! bus's receiving jobs (fanout::NoticeBus::receivers) queue what they hear,
//! and the loader here turns it into hub events. It loads each announced
//! message once — and only when a reader on this process follows its
//! channel — and broadcasts it.
//!
//! Loads run concurrently but are broadcast in arrival order. A notice that
//! may arrive out of commit order (NATS) only says "this channel is behind":
//! the channel is caught up by cursor from the last message broadcast here,
//! so ids never go backwards. Catch-ups of different channels run at the
//! same time (up to [`RUN_CONCURRENCY`]); one channel's never overlap, and
//! what arrives for a channel while its run is under way waits for it. When the bus may have lost notices (it
//! reconnected, or is down and polls) every followed channel is caught up
//! the same way, and readers holding grants re-check them, since
//! revocations may have been missed too.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::domain::{ChannelId, MessageId};
use crate::fanout::{HubEvent, Incoming, Notice, NoticeQueue};
use crate::supervisor::Job;

/// Messages loaded at once while keeping broadcast order.
const LOAD_CONCURRENCY: usize = 32;
/// Catch-ups and checks (each of a different channel) under way at once.
const RUN_CONCURRENCY: usize = 16;
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
    let for_runs = service.clone();
    let mut runs = Runs::new(move |channel, run| {
        let service = for_runs.clone();
        Box::pin(async move {
            match run {
                Run::CatchUp => catch_up(&service, channel).await,
                Run::Check => check(&service, channel).await,
            }
        })
    });
    loop {
        let item = tokio::select! {
            Some(()) = runs.finish_one(), if runs.busy() => continue,
            item = ready.next() => item,
        };
        let Some(item) = item else { break };
        match item {
            Ready::Event(channel, event) => {
                // After the channel's run: its broadcasts come first.
                runs.finish_channel(channel).await;
                hub.send(channel, event);
            }
            Ready::Behind(channel) => runs.start(channel, Run::CatchUp).await,
            Ready::Check(channel) => runs.start(channel, Run::Check).await,
            Ready::Resync => {
                // A resync goes over every channel: nothing else runs meanwhile.
                runs.finish_all().await;
                resync(&service).await;
            }
            Ready::Nothing => {}
        }
    }
    runs.finish_all().await;
}

/// Per-channel work of the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Run {
    CatchUp,
    /// Also catches the channel up, so it stands in for a catch-up.
    Check,
}

/// The catch-ups and checks under way: at most one per channel (two would
/// broadcast its messages out of order, and readers drop an id below one
/// already sent), at most [`RUN_CONCURRENCY`] in all. Work for a channel
/// whose run is under way is kept (one entry per channel, the larger
/// [`Run`]) and started when it ends, so a burst of notices costs one more
/// run, not one each.
struct Runs {
    work: Box<dyn Fn(ChannelId, Run) -> BoxFuture<'static, ()> + Send>,
    running: FuturesUnordered<BoxFuture<'static, ChannelId>>,
    /// Channels with a run under way, and what to run next for each.
    channels: HashMap<ChannelId, Option<Run>>,
}

impl Runs {
    fn new(work: impl Fn(ChannelId, Run) -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        Self { work: Box::new(work), running: FuturesUnordered::new(), channels: HashMap::new() }
    }

    fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Starts `run` on `channel`, or keeps it for after the channel's run
    /// under way; waits for a free slot first when all are taken.
    async fn start(&mut self, channel: ChannelId, run: Run) {
        if let Some(next) = self.channels.get_mut(&channel) {
            *next = (*next).max(Some(run));
            return;
        }
        while self.running.len() >= RUN_CONCURRENCY {
            self.finish_one().await;
        }
        self.spawn(channel, run);
    }

    fn spawn(&mut self, channel: ChannelId, run: Run) {
        self.channels.insert(channel, None);
        let work = (self.work)(channel, run);
        self.running.push(Box::pin(async move {
            work.await;
            channel
        }));
    }

    /// Waits for one run to end and starts what was kept for its channel;
    /// `None` when nothing runs.
    async fn finish_one(&mut self) -> Option<()> {
        let channel = self.running.next().await?;
        if let Some(Some(next)) = self.channels.remove(&channel) {
            self.spawn(channel, next);
        }
        Some(())
    }

    /// Waits until `channel` has nothing running or kept.
    async fn finish_channel(&mut self, channel: ChannelId) {
        while self.channels.contains_key(&channel) {
            self.finish_one().await;
        }
    }

    async fn finish_all(&mut self) {
        while self.finish_one().await.is_some() {}
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;

    /// The runs started so far, in order.
    type Started = Arc<Mutex<Vec<(ChannelId, Run)>>>;

    /// Runs that record when they start and wait for the test to let them end.
    fn gated() -> (Runs, Started, Arc<Semaphore>) {
        let started = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (log, open) = (started.clone(), gate.clone());
        let runs = Runs::new(move |channel, run| {
            log.lock().unwrap().push((channel, run));
            let open = open.clone();
            Box::pin(async move { open.acquire().await.unwrap().forget() })
        });
        (runs, started, gate)
    }

    #[tokio::test]
    async fn channels_run_at_once_and_one_channel_never_twice() {
        let (mut runs, started, gate) = gated();
        let (a, b, c) = (ChannelId::new(), ChannelId::new(), ChannelId::new());
        for channel in [a, b, c] {
            runs.start(channel, Run::CatchUp).await;
        }
        // Three channels' catch-ups under way together (one at a time
        // before: a's would have had to end before b's began).
        assert_eq!(started.lock().unwrap().len(), 3);
        // More notices for a while its run is under way: kept as one run,
        // a check standing in for the catch-ups.
        runs.start(a, Run::CatchUp).await;
        runs.start(a, Run::Check).await;
        runs.start(a, Run::CatchUp).await;
        assert_eq!(started.lock().unwrap().len(), 3);

        // a's first run, then the kept one, and b's and c's.
        gate.add_permits(4);
        runs.finish_channel(a).await;
        let log = started.lock().unwrap().clone();
        assert_eq!(log.len(), 4, "{log:?}");
        assert_eq!(log[3], (a, Run::Check));
        runs.finish_all().await;
        assert!(!runs.busy());
    }

    #[tokio::test]
    async fn runs_wait_for_a_free_slot() {
        let (mut runs, started, gate) = gated();
        for _ in 0..RUN_CONCURRENCY {
            runs.start(ChannelId::new(), Run::CatchUp).await;
        }
        let one_more = ChannelId::new();
        let waiting = tokio::time::timeout(Duration::from_millis(50), runs.start(one_more, Run::CatchUp)).await;
        assert!(waiting.is_err(), "a run started beyond {RUN_CONCURRENCY}");
        gate.add_permits(1);
        runs.start(one_more, Run::CatchUp).await;
        assert_eq!(started.lock().unwrap().last(), Some(&(one_more, Run::CatchUp)));
        gate.add_permits(RUN_CONCURRENCY);
        runs.finish_all().await;
    }
}

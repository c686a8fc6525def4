//! The notice bus: how a process tells the others that something committed
//! (a message, a deletion, a revocation), behind one trait so the service
//! never knows which carries it — in-process (SQLite, [`super::local`]),
//! PostgreSQL `LISTEN/NOTIFY` ([`super::postgres`]) or NATS (the
//! `chantra-nats` crate). The shape follows Centrifugo's broker: the bus
//! moves notices and calls back into the service through a [`NoticeSink`];
//! it never loads a message or touches a reader itself.
//!
//! The database is the truth. A bus may lose notices (NATS is at-most-once,
//! a LISTEN connection drops): whenever it may have, it says so
//! ([`NoticeSink::resync`], [`NoticeSink::behind`]) and the service catches
//! the channels followed here up from the database by cursor.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Hub, Notice};
use crate::domain::ChannelId;
use crate::supervisor::Job;

/// Work queued between a bus's receiving side and the service's loader.
const QUEUE: usize = 8192;

/// One bus implementation. Writers call [`NoticeBus::sequence`],
/// [`NoticeBus::within`] (inside the writing transaction) and
/// [`NoticeBus::committed`] (after the commit); the receiving side runs as
/// the jobs [`NoticeBus::receivers`] returns (only where readers are served).
#[async_trait]
pub trait NoticeBus: Send + Sync + 'static {
    /// `local`, `postgres` or `nats`, for /readyz and logs.
    fn kind(&self) -> &'static str;

    /// Whether the writer itself delivers to this process's hub after its
    /// commit (a single-process bus). Otherwise notices come back to every
    /// process, the writer's included, through the receiving side.
    fn in_process(&self) -> bool {
        false
    }

    /// Held from the write transaction until the writer's own delivery, so
    /// deliveries keep commit order (in-process bus only).
    async fn sequence(&self) -> Option<OwnedMutexGuard<()>> {
        None
    }

    /// Inside the writing transaction: a bus whose notices commit with the
    /// data (PostgreSQL NOTIFY) sends them here; the others do nothing.
    async fn within(&self, _txn: &DatabaseTransaction, _notices: &[Notice]) -> Result<(), DbErr> {
        Ok(())
    }

    /// After the commit (never for a rolled-back write): a bus outside the
    /// database (NATS) sends the notices here. Must not block: a notice that
    /// cannot be sent now is dropped, and readers catch up by cursor.
    fn committed(&self, _notices: &[Notice]) {}

    /// Sends what is still queued from [`NoticeBus::committed`], waiting at
    /// most `limit` (before a process exits).
    async fn drain(&self, _limit: std::time::Duration) {}

    /// The jobs that receive other processes' notices and feed them to
    /// `sink`, until `shutdown`. `hub` tells which channels have readers here.
    fn receivers(&self, _hub: &Arc<Hub>, _sink: NoticeSink, _shutdown: CancellationToken) -> Vec<(&'static str, Job)> {
        Vec::new()
    }

    /// Whether notices currently flow; `Degraded` while readers fall back
    /// to catching up on a timer.
    fn health(&self) -> BusHealth {
        BusHealth::Ok
    }
}

/// What /readyz shows of the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusHealth {
    Ok,
    /// Notices do not flow (the reason); readers catch up by polling.
    Degraded(String),
}

/// What the receiving side asks of the service, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A notice, in commit order (PostgreSQL): a message is loaded by its id.
    Notice(Notice),
    /// Something committed on this channel, perhaps out of order with other
    /// processes' notices (NATS): catch it up by cursor from the last
    /// message broadcast here.
    Behind(ChannelId),
    /// A channel may have been deleted or one of its grants revoked, as said
    /// by a bus whose notices are not to be trusted as facts (NATS: anyone
    /// who may publish there could forge them): the service checks the
    /// database — the channel still exists, each reader's grant still holds —
    /// and catches the channel up.
    Check(ChannelId),
    /// Notices may have been lost (a reconnect, an outage): catch every
    /// followed channel up, and have readers re-check deletions and grants.
    Resync,
}

/// The bus's side of the queue to the service's loader; cheap to clone.
/// [`NoticeSink::behind`], [`NoticeSink::check`] and [`NoticeSink::resync`]
/// are coalesced: each waits in the queue at most once per channel, so a
/// burst of notices (or a flood of forged ones) costs one catch-up, and the
/// queue's length is bounded by the channels followed here.
#[derive(Clone)]
pub struct NoticeSink {
    sender: mpsc::Sender<Incoming>,
    waiting: Arc<Mutex<Waiting>>,
}

/// What waits in the queue, so it is not queued twice.
#[derive(Default)]
struct Waiting {
    channels: HashSet<ChannelId>,
    checks: HashSet<ChannelId>,
    resync: bool,
}

/// The loader's side of the queue.
pub struct NoticeQueue {
    receiver: mpsc::Receiver<Incoming>,
    waiting: Arc<Mutex<Waiting>>,
}

/// The loader stopped; the receiving job should end (the group restarts).
#[derive(Debug)]
pub struct QueueClosed;

/// A fresh queue between a bus's receivers and the loader.
pub fn queue() -> (NoticeSink, NoticeQueue) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    (NoticeSink { sender, waiting: waiting.clone() }, NoticeQueue { receiver, waiting })
}

impl NoticeSink {
    pub async fn notice(&self, notice: Notice) -> Result<(), QueueClosed> {
        self.sender.send(Incoming::Notice(notice)).await.map_err(|_| QueueClosed)
    }

    /// Queues a catch-up of `channel`, unless one is already waiting (it
    /// will read what this notice announced: it has not started yet).
    pub async fn behind(&self, channel: ChannelId) -> Result<(), QueueClosed> {
        self.coalesced(Incoming::Behind(channel), |waiting| waiting.channels.insert(channel)).await
    }

    /// Queues a check of `channel`, unless one is already waiting (coalesced
    /// like [`NoticeSink::behind`]).
    pub async fn check(&self, channel: ChannelId) -> Result<(), QueueClosed> {
        self.coalesced(Incoming::Check(channel), |waiting| waiting.checks.insert(channel)).await
    }

    /// Queues a resync, unless one is already waiting (coalesced like
    /// [`NoticeSink::behind`], so a bus polling on a timer never piles them up).
    pub async fn resync(&self) -> Result<(), QueueClosed> {
        self.coalesced(Incoming::Resync, |waiting| !std::mem::replace(&mut waiting.resync, true)).await
    }

    /// Sends `incoming` unless `mark` says one is already waiting. The queue
    /// slot is reserved before the mark is set: a caller cancelled while the
    /// queue is full (a forwarder aborted when its channel's last reader
    /// left) then leaves no mark behind, which would swallow every later
    /// request for the channel.
    async fn coalesced(&self, incoming: Incoming, mark: impl FnOnce(&mut Waiting) -> bool) -> Result<(), QueueClosed> {
        let permit = self.sender.reserve().await.map_err(|_| QueueClosed)?;
        if mark(&mut self.lock()) {
            permit.send(incoming);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the loader is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl NoticeQueue {
    /// The next piece of work; `None` once every sink is gone. A channel
    /// taken out for its catch-up may be queued again by the next notice.
    pub async fn recv(&mut self) -> Option<Incoming> {
        let incoming = self.receiver.recv().await?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match incoming {
            Incoming::Behind(channel) => {
                waiting.channels.remove(&channel);
            }
            Incoming::Check(channel) => {
                waiting.checks.remove(&channel);
            }
            Incoming::Resync => waiting.resync = false,
            Incoming::Notice(_) => {}
        }
        Some(incoming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catch_ups_of_a_channel_are_coalesced_until_taken() {
        let (sink, mut queue) = queue();
        let (a, b) = (ChannelId::new(), ChannelId::new());
        for channel in [a, b, a, a] {
            sink.behind(channel).await.unwrap();
        }
        assert_eq!(queue.recv().await, Some(Incoming::Behind(a)));
        // Taken out: the next notice queues it again.
        sink.behind(a).await.unwrap();
        sink.behind(b).await.unwrap();
        assert_eq!(queue.recv().await, Some(Incoming::Behind(b)));
        assert_eq!(queue.recv().await, Some(Incoming::Behind(a)));
        sink.resync().await.unwrap();
        sink.resync().await.unwrap();
        assert_eq!(queue.recv().await, Some(Incoming::Resync));
        sink.check(a).await.unwrap();
        sink.check(a).await.unwrap();
        assert_eq!(queue.recv().await, Some(Incoming::Check(a)));
        sink.resync().await.unwrap();
        assert_eq!(queue.recv().await, Some(Incoming::Resync));
        drop(sink);
        assert_eq!(queue.recv().await, None);
    }

    #[tokio::test]
    async fn a_catch_up_cancelled_on_a_full_queue_leaves_no_mark() {
        let (sink, mut queue) = queue();
        let a = ChannelId::new();
        let filler = Notice::Deleted { channel: ChannelId::new() };
        for _ in 0..QUEUE {
            sink.notice(filler).await.unwrap();
        }
        // The queue is full: this catch-up waits for room and is cancelled
        // (as when its forwarder is aborted because the last reader left).
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), sink.behind(a)).await;
        assert!(waited.is_err(), "the full queue made it wait");
        for _ in 0..QUEUE {
            assert_eq!(queue.recv().await, Some(Incoming::Notice(filler)));
        }
        // A later notice for the channel still queues its catch-up.
        sink.behind(a).await.unwrap();
        let next = tokio::time::timeout(std::time::Duration::from_secs(1), queue.recv()).await;
        assert_eq!(next.ok().flatten(), Some(Incoming::Behind(a)), "the catch-up was swallowed by a stale mark");
    }
}

//! Publishing. A payload up to PAYLOAD_INLINE_MAX_BYTES is written with its
//! row, in the same transaction (`message_payloads`, `payload_inline`):
//! nothing else to sync, no object to create. A larger one goes to the
//! store first and the row second, so a row never points at a missing
//! object; if the row cannot be written the object is deleted again.
//! Readers only ever see rows.
//!
//! The message id is assigned inside the write transaction (the group commit
//! below, which batches concurrent publishes), after the channel row is locked, and is
//! above every id the channel already has: a channel's ids therefore grow in
//! commit order, which is the order live readers receive them in and the
//! order a resume replays them in.
//!
//! # Group commit
//!
//! Publishes that arrive while a write transaction is running
//! wait and are written together in the next one.
//!
//! One task per process owns the write path. It takes every publish that is
//! waiting (up to [`MAX_BATCH`]) and, in one transaction, locks each channel
//! involved once, reads its newest id once, assigns ids in arrival order,
//! inserts all rows with one statement and sends all notifications with
//! another. Under load that turns several round trips and a commit per
//! message into a handful per batch; with a single publisher a batch is one
//! message and nothing changes.
//!
//! If a batch's transaction fails (a raced Idempotency-Key, a deleted
//! channel's foreign key, a busy database), each of its messages is retried
//! in a transaction of its own, so one bad message never fails the others.
//!
//! The task is independent of the requests: a client hanging up after its
//! message was queued cannot separate the commit from the local delivery.
//!
//! For the same reason a request deadline stops at the hand-off
//! ([`within_unless_committing`]): once queued, a message's fate is the
//! commit's, and only the commit's outcome is a truthful answer.
//!
//! The task is `commit_writer`, started and supervised by chantra's app.rs
//! with the other background tasks ([`Service::commit_writer`]); publishes
//! wait in the queue until it runs. It ignores the shutdown token: messages
//! queued during a graceful shutdown are still committed, and the task ends
//! with the process.
//!
//! It outlives a panic: each batch runs under `catch_unwind`, so a bug that
//! panics fails only that batch's publishes (their senders are dropped:
//! 500), is logged by name (`commit_writer`), and the next batch is written
//! by the same task from the same queue. Should the task stop anyway (it is
//! killed, or a panic escapes), the supervisor logs it, /readyz reports it
//! down, and a new writer takes over the same queue after a backoff.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait as _};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::Service;
use super::views::PublishedMessage;
use crate::db::{self, Failure, entity::message};
use crate::domain::{ChannelId, ContentType, IdempotencyKey, MessageId, PublishToken, Ttl};
use crate::error::AppError;
use crate::fanout::{Fanout, HubEvent, LiveMessage, Notice};
use crate::payload;
use crate::supervisor::Job;

/// A message to publish, already parsed from the request.
#[derive(Debug, Clone)]
pub struct PublishInput {
    pub payload: Bytes,
    pub content_type: ContentType,
    pub ttl: Ttl,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// The outcome of a publish: the message, and whether it already existed
/// (a retry carrying the same Idempotency-Key).
#[derive(Debug, Clone)]
pub struct Published {
    pub message: PublishedMessage,
    pub replayed: bool,
}

impl Service {
    pub async fn publish(
        &self,
        id: ChannelId,
        token: &PublishToken,
        input: PublishInput,
    ) -> Result<Published, AppError> {
        self.authorize_publish(id, token).await?;
        if input.payload.len() > self.settings.max_payload_bytes {
            return Err(AppError::PayloadTooLarge { limit: self.settings.max_payload_bytes });
        }
        if input.payload.is_empty() {
            return Err(AppError::bad_request("empty_payload", "the payload is empty; publish at least one byte"));
        }

        let now = self.clock.now();
        if let Some(key) = &input.idempotency_key {
            if let Some(existing) = db::messages::find_by_idempotency_key(&self.db, id, key, now).await? {
                return self.replay(existing, &input).await;
            }
            // An expired message still holding the key would trip the unique index.
            let stale = db::messages::delete_expired_with_key(&self.db, id, key, now).await?;
            // Best effort: the sweeper reconciles an object left behind.
            let _ = self.discard_payloads(&stale).await;
        }

        // The object's name is its own id: the message id is only known in the transaction.
        let object_key = payload::object_key(id, MessageId::new());
        // A small payload is written by the commit, in the message's own
        // transaction (one sync for the batch, no object to create).
        let inline = input.payload.len() <= self.settings.payload_inline_max_bytes;
        if !inline
            && let Err(err) = self.store.put(&object_key, input.payload.clone(), input.content_type.as_str()).await
        {
            // A channel deleted meanwhile takes its objects' folder with it: that is a 404, not an outage.
            if matches!(db::channels::find(&self.db, id).await, Ok(None)) {
                return Err(AppError::ChannelNotFound);
            }
            return Err(err.into());
        }

        let row = message::Model {
            id: MessageId::MIN,
            channel_id: id,
            payload_object_key: object_key.clone(),
            payload_size: input.payload.len() as i64,
            content_type: input.content_type.as_str().to_owned(),
            created_at: now,
            expires_at: now + input.ttl.as_duration(),
            idempotency_key: input.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            payload_inline: inline,
        };
        // Written by the group-commit task (below), together with whatever
        // else is being published right now.
        let committed = self.commits().commit(row, input.payload.clone()).await;
        let failure = match committed {
            Ok(row) => {
                if inline {
                    // Catch-ups and resumes read it from here, not the database.
                    self.store.remember(&object_key, &input.payload);
                }
                crate::metrics::get().publishes.increment(1);
                tracing::debug!(channel = %id, message = %row.id, size = row.payload_size, "message published");
                return Ok(Published { message: view(&row), replayed: false });
            }
            Err(failure) => failure,
        };
        if !inline && let Err(cleanup) = self.store.delete(&object_key).await {
            tracing::warn!(error = %cleanup, key = %object_key, "could not delete the object of a failed publish; the sweeper will");
        }
        let err = match failure {
            CommitError::ChannelGone => return Err(AppError::ChannelNotFound),
            CommitError::Db(err) => err,
        };
        match (db::classify(&err), &input.idempotency_key) {
            // Two publishes with one key raced; the other one won.
            (Failure::UniqueViolation, Some(key)) => {
                match db::messages::find_by_idempotency_key(&self.db, id, key, now).await? {
                    Some(existing) => self.replay(existing, &input).await,
                    None => Err(AppError::Conflict {
                        code: "idempotency_conflict",
                        message: "a concurrent publish with this Idempotency-Key failed; retry".into(),
                    }),
                }
            }
            // The channel was deleted while we were writing.
            (Failure::ForeignKeyViolation, _) => Err(AppError::ChannelNotFound),
            _ => Err(err.into()),
        }
    }
}

impl Service {
    /// The answer to a publish whose Idempotency-Key already made `existing`:
    /// a replay of it if this is the same request (payload bytes, content
    /// type and TTL), else 409 — a retry must not silently drop a different
    /// message. The payload is compared with the stored object, read only
    /// when size, type and TTL already match (the rare retry path).
    async fn replay(&self, existing: message::Model, input: &PublishInput) -> Result<Published, AppError> {
        let same_shape = existing.payload_size == input.payload.len() as i64
            && existing.content_type == input.content_type.as_str()
            && chrono::TimeDelta::from_std(input.ttl.as_duration()).ok()
                == Some(existing.expires_at - existing.created_at);
        if !same_shape || self.stored_payload(&existing).await?.as_ref() != Some(&input.payload) {
            return Err(AppError::Conflict {
                code: "idempotency_conflict",
                message: format!(
                    "this Idempotency-Key was already used on this channel for a different request (payload, \
                     content type or TTL); it is remembered until that message expires at {}; use a new key \
                     for a new message",
                    existing.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            });
        }
        Ok(Published { message: view(&existing), replayed: true })
    }
}

fn view(row: &message::Model) -> PublishedMessage {
    PublishedMessage {
        message_id: row.id.to_string(),
        channel_id: row.channel_id.to_string(),
        content_type: row.content_type.clone(),
        payload_size: row.payload_size.max(0) as u64,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}

// --- Group commit -------------------------------------------------------------

/// The most messages written in one transaction.
pub const MAX_BATCH: usize = 128;

tokio::task_local! {
    /// Raised by [`CommitQueue::commit`] once a message is in the writer's
    /// hands; read by [`within_unless_committing`].
    static HANDED_OFF: Arc<AtomicBool>;
}

/// Runs `work` for at most `limit`, unless by then it has handed a message
/// to the writer: from that moment an abandoned request would be told
/// "timeout" while its message is committed anyway, so `work` runs on to the
/// commit's outcome, which the database's own lock timeouts bound (SQLite's
/// busy timeout; a failed transaction stores nothing). `None` means the
/// time ran out before any hand-off: nothing was stored.
pub async fn within_unless_committing<F: Future>(limit: Duration, work: F) -> Option<F::Output> {
    let handed_off = Arc::new(AtomicBool::new(false));
    let work = HANDED_OFF.scope(handed_off.clone(), work);
    tokio::pin!(work);
    match tokio::time::timeout(limit, &mut work).await {
        Ok(output) => Some(output),
        // Only `work` itself raises the flag, while it is polled: no race with the deadline.
        Err(_) if handed_off.load(Ordering::Acquire) => Some(work.await),
        Err(_) => None,
    }
}

/// Why a message was not written.
pub(super) enum CommitError {
    ChannelGone,
    Db(DbErr),
}

impl From<DbErr> for CommitError {
    fn from(err: DbErr) -> Self {
        CommitError::Db(err)
    }
}

/// A message waiting for its transaction. The row's id is assigned there.
struct Pending {
    row: message::Model,
    payload: Bytes,
    done: oneshot::Sender<Result<message::Model, CommitError>>,
}

/// The queue: the publishers' side, and the writer's side that each run of
/// the writing task takes in turn (a restarted writer goes on with what
/// is queued). Cheap to clone.
#[derive(Clone)]
pub(super) struct CommitQueue {
    sender: mpsc::Sender<Pending>,
    /// Held by the running writer; the lock guarantees one writer at a time.
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    /// Set by a test (through `Service::crash_commit_writer`): the next batch panics.
    crash_next: Arc<AtomicBool>,
}

/// The writing task's name in logs, metrics and /readyz.
pub const TASK: &str = "commit_writer";

impl CommitQueue {
    /// An empty queue; nothing is written until [`CommitQueue::writer`] runs.
    pub(super) fn new() -> Self {
        let (sender, receiver) = mpsc::channel(MAX_BATCH * 8);
        Self { sender, receiver: Arc::new(Mutex::new(receiver)), crash_next: Arc::default() }
    }

    /// The writing task: takes the queue and writes batches until every
    /// publisher's side is gone.
    pub(super) fn writer(&self, db: DatabaseConnection, fanout: Fanout) -> Job {
        let (receiver, crash) = (self.receiver.clone(), self.crash_next.clone());
        Box::pin(async move {
            let mut receiver = receiver.lock_owned().await;
            run(db, fanout, &mut receiver, crash).await;
        })
    }

    /// Writes `row` (its id assigned in the transaction), announces it and
    /// delivers it to local readers; resolves once it is committed.
    pub(super) async fn commit(&self, row: message::Model, payload: Bytes) -> Result<message::Model, CommitError> {
        let (done, outcome) = oneshot::channel();
        let pending = Pending { row, payload, done };
        if self.sender.send(pending).await.is_err() {
            return Err(CommitError::Db(DbErr::Custom("the commit task has stopped".into())));
        }
        // Queued: the writer will commit it whether or not we are still waiting.
        let _ = HANDED_OFF.try_with(|handed_off| handed_off.store(true, Ordering::Release));
        outcome.await.unwrap_or_else(|_| Err(CommitError::Db(DbErr::Custom("the commit task has stopped".into()))))
    }
}

impl super::Service {
    /// The group-commit writer's work, for the caller to run as the task
    /// named [`TASK`] (chantra's app.rs supervises it). Until it runs,
    /// publishes wait in the queue.
    pub fn commit_writer(&self) -> Job {
        self.commits().writer(self.db.clone(), self.fanout.clone())
    }

    /// Makes the commit writer panic in its next batch, as a bug would;
    /// tests use it to prove the writer survives.
    #[doc(hidden)]
    pub fn crash_commit_writer(&self) {
        self.commits().crash_next.store(true, Ordering::SeqCst);
    }
}

async fn run(db: DatabaseConnection, fanout: Fanout, receiver: &mut mpsc::Receiver<Pending>, crash: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let size = batch.len();
        let written = AssertUnwindSafe(write_batch(&db, &fanout, std::mem::take(&mut batch), &crash)).catch_unwind();
        // The unwind dropped the batch's answers: its publishers get an error, the queue lives on.
        if let Err(panic) = written.await {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(task = TASK, size, panic = %message, "a commit batch panicked; its publishes failed, the writer goes on");
            crate::metrics::record_task_failure(TASK);
        }
    }
}

async fn write_batch(db: &DatabaseConnection, fanout: &Fanout, batch: Vec<Pending>, crash: &AtomicBool) {
    if crash.swap(false, Ordering::SeqCst) {
        panic!("the commit writer was told to crash");
    }
    // Local mode: deliveries leave in commit order (see Fanout::sequence).
    let _in_order = fanout.sequence().await;
    let rows: Vec<_> = batch.iter().map(|p| (p.row.clone(), p.payload.clone())).collect();
    match write(db, fanout, rows).await {
        Ok(outcomes) => {
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                finish(fanout, pending, outcome);
            }
        }
        Err(err) if batch.len() == 1 => {
            let pending = batch.into_iter().next().expect("one message");
            let _ = pending.done.send(Err(err));
        }
        Err(err) => {
            tracing::debug!(error = %describe(&err), size = batch.len(), "batch failed; writing its messages one by one");
            for pending in batch {
                let one = vec![(pending.row.clone(), pending.payload.clone())];
                let outcome = match write(db, fanout, one).await {
                    Ok(mut outcomes) => outcomes.pop().expect("one outcome per message"),
                    Err(err) => Err(err),
                };
                finish(fanout, pending, outcome);
            }
        }
    }
}

/// Delivers a committed message to local readers and answers its publisher.
fn finish(fanout: &Fanout, pending: Pending, outcome: Result<message::Model, CommitError>) {
    if let Ok(row) = &outcome {
        // A message too large for the live ring travels as its id (its payload is not kept).
        fanout.deliver_local(row.channel_id, || match fanout.hub().carries_frame(row.payload_size) {
            true => HubEvent::Message(LiveMessage::new(row.clone(), pending.payload.clone())),
            false => HubEvent::Stored { id: row.id, expires_at: row.expires_at },
        });
    }
    let _ = pending.done.send(outcome);
}

/// One transaction for `rows` (and the payloads of `payload_inline` rows);
/// per row, its committed form or why it was refused (its channel is gone).
/// An `Err` means nothing was written.
async fn write(
    db: &DatabaseConnection,
    fanout: &Fanout,
    mut rows: Vec<(message::Model, Bytes)>,
) -> Result<Vec<Result<message::Model, CommitError>>, CommitError> {
    let txn = db.begin().await?;
    // Each channel once: lock it (by updating its row) and read its newest
    // id. Locked in id order: batches of two processes (or two writers)
    // that share channels then wait for each other instead of deadlocking,
    // which PostgreSQL would only break after deadlock_timeout (1 s) by
    // failing one batch.
    let mut newest: HashMap<ChannelId, Option<Option<MessageId>>> = HashMap::new();
    for channel in lock_order(&rows) {
        let last_at = rows.iter().filter(|(r, _)| r.channel_id == channel).map(|(r, _)| r.created_at).max();
        let last_at = last_at.expect("lock_order lists only the rows' channels");
        let state = if db::channels::set_last_published(&txn, channel, last_at).await? {
            Some(db::messages::newest_id(&txn, channel).await?)
        } else {
            None
        };
        newest.insert(channel, state);
    }
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut inserts = Vec::with_capacity(rows.len());
    let mut payloads = Vec::new();
    let mut notices = Vec::with_capacity(rows.len());
    for (row, payload) in &mut rows {
        match newest.get_mut(&row.channel_id).expect("every channel was looked up") {
            None => outcomes.push(Err(CommitError::ChannelGone)),
            Some(last) => {
                let id = MessageId::next_after(*last);
                *last = Some(id);
                row.id = id;
                if row.payload_inline {
                    payloads.push((id, payload.to_vec()));
                }
                inserts.push(row.clone());
                notices.push(Notice::Message { channel: row.channel_id, message: id });
                outcomes.push(Ok(row.clone()));
            }
        }
    }
    db::messages::insert_many(&txn, inserts).await?;
    db::messages::insert_payloads(&txn, payloads).await?;
    fanout.notify_all(&txn, &notices).await?;
    txn.commit().await?;
    fanout.committed(&notices);
    Ok(outcomes)
}

/// The channels of a batch, each once, in the order their rows are locked:
/// ascending id, the one order every writer of every process follows.
fn lock_order(rows: &[(message::Model, Bytes)]) -> Vec<ChannelId> {
    let mut channels: Vec<ChannelId> = rows.iter().map(|(row, _)| row.channel_id).collect();
    channels.sort_unstable();
    channels.dedup();
    channels
}

fn describe(err: &CommitError) -> String {
    match err {
        CommitError::ChannelGone => "channel gone".into(),
        CommitError::Db(err) => err.to_string(),
    }
}

//! The lifecycle sweeper (DESIGN §7): purges expired messages, deletes idle
//! channels, purges read grants that ended (revoked or expired) longer than
//! GRANT_PURGE_GRACE_SECS ago, reconciles the payload store with the
//! database, and forgets old MCP sessions.
//!
//! Every step works in bounded batches of short statements and is
//! idempotent — objects are deleted before their rows, and deleting what is
//! already gone succeeds — so a crash mid-pass loses nothing and the next
//! pass resumes. On PostgreSQL an advisory lock lets one sweeper work at a
//! time across all processes; the others skip the pass.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use sea_orm::DbBackend;
use sea_orm::sqlx;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::db::{self, entity::message};
use crate::error::AppError;
use crate::payload::StoreError;

/// Arbitrary but fixed: the advisory-lock key of the sweeper ("chantra" in ASCII).
const ADVISORY_LOCK_KEY: i64 = 0x0063_6861_6e74_7261;
/// Object deletions in flight at once.
const DELETE_CONCURRENCY: usize = 16;
/// MCP sessions are forgotten after a week; clients re-initialize.
const MCP_SESSION_DAYS: i64 = 7;

#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub interval: Duration,
    pub batch: u64,
    /// Objects without a row (and rows without an object) younger than this
    /// are left alone: a publish may be between its two writes.
    pub orphan_grace: chrono::Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// False when another process held the sweeper lock.
    pub ran: bool,
    pub expired_messages: u64,
    pub idle_channels: u64,
    pub orphan_objects: u64,
    pub rows_without_object: u64,
    pub mcp_sessions: u64,
    /// Revoked or expired read grants removed after their grace period.
    pub purged_grants: u64,
}

impl Service {
    /// One full pass, unless another sweeper is working right now.
    pub async fn sweep_once(&self, settings: &SweepSettings) -> Result<SweepReport, AppError> {
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                let mut lock_conn = pool.acquire().await.map_err(|e| {
                    tracing::warn!(error = %e, "sweeper cannot get a connection");
                    AppError::DatabaseUnavailable
                })?;
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(ADVISORY_LOCK_KEY)
                    .fetch_one(&mut *lock_conn)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "sweeper lock query failed");
                        AppError::DatabaseUnavailable
                    })?;
                if !locked {
                    tracing::debug!("another sweeper is working; skipping this pass");
                    return Ok(SweepReport::default());
                }
                let result = self.sweep_steps(settings).await;
                let unlocked =
                    sqlx::query("SELECT pg_advisory_unlock($1)").bind(ADVISORY_LOCK_KEY).execute(&mut *lock_conn).await;
                if unlocked.is_err() {
                    // Closing the session releases the lock: drop the connection rather than return it.
                    lock_conn.detach();
                }
                result
            }
            _ => {
                let _single = self.sweep_guard.lock().await;
                self.sweep_steps(settings).await
            }
        }
    }

    async fn sweep_steps(&self, settings: &SweepSettings) -> Result<SweepReport, AppError> {
        let mut report = SweepReport { ran: true, ..Default::default() };
        report.expired_messages = self.purge_expired(settings.batch).await?;
        report.idle_channels = self.delete_idle_channels(settings.batch).await?;
        report.purged_grants = self.purge_ended_grants(settings.batch).await?;
        let (orphans, missing) = self.reconcile_store(settings).await?;
        report.orphan_objects = orphans;
        report.rows_without_object = missing;
        report.mcp_sessions =
            db::mcp_sessions::delete_older_than(&self.db, self.clock.now() - chrono::Duration::days(MCP_SESSION_DAYS))
                .await?;
        if report != (SweepReport { ran: true, ..Default::default() }) {
            tracing::info!(?report, "sweep pass");
        }
        Ok(report)
    }

    /// Expired messages: objects first, then rows, a batch at a time.
    async fn purge_expired(&self, batch: u64) -> Result<u64, AppError> {
        let mut purged = 0;
        loop {
            let rows = db::sweep::expired_messages(&self.db, self.clock.now(), batch).await?;
            if rows.is_empty() {
                return Ok(purged);
            }
            // Each channel's high-water mark first: a reader resuming before
            // a purged message is told of the gap (item 9 of issue 13).
            let mut newest = std::collections::BTreeMap::new();
            for row in &rows {
                let id = newest.entry(row.channel_id).or_insert(row.id);
                *id = (*id).max(row.id);
            }
            for (channel, through) in newest {
                db::sweep::mark_purged(&self.db, channel, through).await?;
            }
            self.discard_payloads(&rows).await?;
            purged += db::sweep::delete_messages(&self.db, rows.iter().map(|r| r.id).collect()).await?;
            if (rows.len() as u64) < batch {
                return Ok(purged);
            }
        }
    }

    /// Grants revoked or expired longer than the grace ago. Until then a
    /// reader with such a token is told why it cannot read (revoked,
    /// expired); afterwards the token is simply unknown (invalid_token).
    async fn purge_ended_grants(&self, batch: u64) -> Result<u64, AppError> {
        let cutoff = self.clock.now() - self.settings.grant_purge_grace;
        let mut purged = 0;
        loop {
            let ids = db::sweep::ended_grants(&self.db, cutoff, batch).await?;
            purged += db::sweep::delete_grants(&self.db, ids.clone()).await?;
            if (ids.len() as u64) < batch {
                return Ok(purged);
            }
        }
    }

    /// Channels idle past the limit, deleted like a publisher would (live
    /// streams end with `event: deleted`).
    async fn delete_idle_channels(&self, batch: u64) -> Result<u64, AppError> {
        let cutoff = self.clock.now() - self.settings.channel_idle;
        let mut deleted = 0;
        loop {
            let ids = db::sweep::idle_channels(&self.db, cutoff, batch).await?;
            for id in &ids {
                if self.remove_channel(*id, Some(cutoff)).await? {
                    deleted += 1;
                }
            }
            if (ids.len() as u64) < batch {
                return Ok(deleted);
            }
        }
    }

    /// Objects no row points at (a crash between the object write and the
    /// row insert, a failed cleanup) are deleted once older than the grace
    /// period; rows whose object is missing are reported and purged.
    async fn reconcile_store(&self, settings: &SweepSettings) -> Result<(u64, u64), AppError> {
        let now = self.clock.now();
        let settled = now - settings.orphan_grace;
        let objects = self.store.list(crate::payload::ALL_CHANNELS_PREFIX).await?;
        let existing: HashSet<String> = objects.iter().map(|o| o.key.clone()).collect();

        let mut orphans = 0;
        for chunk in objects.chunks(settings.batch.max(1) as usize) {
            let settled_keys: Vec<String> =
                chunk.iter().filter(|o| o.modified < settled).map(|o| o.key.clone()).collect();
            let in_use: HashSet<String> =
                db::sweep::keys_in_use(&self.db, settled_keys.clone()).await?.into_iter().collect();
            let stray: Vec<String> = settled_keys.into_iter().filter(|k| !in_use.contains(k)).collect();
            orphans += stray.len() as u64;
            self.delete_objects(stray).await?;
        }

        let mut missing = Vec::new();
        let mut after = None;
        loop {
            let page = db::sweep::message_keys_after(&self.db, after, settings.batch).await?;
            after = page.last().map(|(id, _, _)| *id);
            missing.extend(
                page.iter()
                    .filter(|(_, key, created)| *created < settled && !existing.contains(key))
                    .map(|(id, _, _)| *id),
            );
            if (page.len() as u64) < settings.batch {
                break;
            }
        }
        if !missing.is_empty() {
            tracing::warn!(count = missing.len(), ids = ?missing, "messages whose payload object is missing; purging them");
        }
        let mut purged = 0;
        for chunk in missing.chunks(settings.batch.max(1) as usize) {
            purged += db::sweep::delete_messages(&self.db, chunk.to_vec()).await?;
        }
        Ok((orphans, purged))
    }

    /// The payloads of `rows`, whose rows are deleted: objects deleted from
    /// the store; a payload kept in the database goes with its row, only
    /// the cache forgets it.
    pub(super) async fn discard_payloads(&self, rows: &[message::Model]) -> Result<(), AppError> {
        let mut objects = Vec::new();
        for row in rows {
            match row.payload_inline {
                true => self.store.forget(&row.payload_object_key),
                false => objects.push(row.payload_object_key.clone()),
            }
        }
        self.delete_objects(objects).await
    }

    async fn delete_objects(&self, keys: Vec<String>) -> Result<(), AppError> {
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(keys)
            .map(|key| async move { self.store.delete(&key).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    /// Sweeps every `interval` until shutdown; failures are logged and retried next time.
    pub async fn run_sweeper(self, settings: SweepSettings, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.sweep_once(&settings).await {
                tracing::warn!(error = %err, "sweep pass failed; retrying next interval");
            }
        }
    }
}

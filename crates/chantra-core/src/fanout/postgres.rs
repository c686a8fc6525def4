//! The PostgreSQL bus: the writing transaction sends a `NOTIFY` with ids
//! only (db/notify.rs); PostgreSQL delivers notifications when (and only
//! if) it commits, in commit order, to every process's listener — this job —
//! which hands them to the service's loader (service/listener.rs) in order.
//!
//! After the connection is lost the listener reconnects with backoff and
//! asks for a resync, so what was committed meanwhile is caught up by cursor
//! and readers holding grants re-check them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio_util::sync::CancellationToken;

use super::{Hub, Notice, NoticeBus, NoticeSink};
use crate::db;
use crate::supervisor::Job;

pub struct PostgresBus {
    db: DatabaseConnection,
}

impl PostgresBus {
    /// `db` must be a PostgreSQL connection: the listener takes a
    /// connection of its own from its pool.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl NoticeBus for PostgresBus {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn within(&self, txn: &DatabaseTransaction, notices: &[Notice]) -> Result<(), DbErr> {
        db::notify::send(txn, notices.iter().map(Notice::encode).collect()).await
    }

    fn receivers(&self, _hub: &Arc<Hub>, sink: NoticeSink, shutdown: CancellationToken) -> Vec<(&'static str, Job)> {
        vec![("notification_listener", Box::pin(listen(self.db.clone(), sink, shutdown)))]
    }
}

async fn listen(db: DatabaseConnection, sink: NoticeSink, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let listener = db::notify::listen(&db);
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
        if sink.resync().await.is_err() {
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
                        crate::metrics::get().notices_received.increment(1);
                        if sink.notice(notice).await.is_err() {
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

//! Live fan-out: how a committed message, a deleted channel or a revoked
//! grant reaches every open stream, in this process and in every other.
//!
//! - SQLite (single process): the publisher delivers to the in-process hub
//!   right after its commit, holding a sequencer so deliveries keep commit
//!   (= id) order.
//! - PostgreSQL (any number of processes): the writing transaction sends a
//!   `NOTIFY` with ids only (db/notify.rs); PostgreSQL delivers notifications
//!   in commit order to every process's listener (service/listener.rs), which
//!   loads each message once
//!   — only if someone here subscribes to its channel — and broadcasts it.

pub mod hub;

use std::sync::Arc;

pub use hub::{Hub, HubEvent, LiveMessage};
use sea_orm::{ConnectionTrait, DbErr};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::db;
use crate::domain::{ChannelId, GrantId, MessageId};

/// What a notification announces. Ids only: NOTIFY payloads are small, and
/// each process loads what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Message { channel: ChannelId, message: MessageId },
    Deleted { channel: ChannelId },
    Revoked { channel: ChannelId, grant: GrantId },
}

impl Notice {
    pub fn encode(&self) -> String {
        match self {
            Notice::Message { channel, message } => format!("m {channel} {message}"),
            Notice::Deleted { channel } => format!("d {channel}"),
            Notice::Revoked { channel, grant } => format!("r {channel} {grant}"),
        }
    }

    /// Reads what [`Notice::encode`] wrote (ids in their hyphenated form).
    pub fn parse(payload: &str) -> Option<Notice> {
        let mut parts = payload.split(' ');
        let kind = parts.next()?;
        let channel = parts.next()?.parse().ok()?;
        let notice = match kind {
            "m" => Notice::Message { channel, message: parts.next()?.parse().ok()? },
            "d" => Notice::Deleted { channel },
            "r" => Notice::Revoked { channel, grant: parts.next()?.parse().ok()? },
            _ => return None,
        };
        parts.next().is_none().then_some(notice)
    }

    pub fn channel(&self) -> ChannelId {
        match self {
            Notice::Message { channel, .. } | Notice::Deleted { channel } | Notice::Revoked { channel, .. } => *channel,
        }
    }
}

#[derive(Clone)]
enum Mode {
    Local { sequencer: Arc<Mutex<()>> },
    Postgres,
}

/// The service layer's handle on fan-out; cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    hub: Arc<Hub>,
    mode: Mode,
}

impl Fanout {
    pub fn local(hub: Arc<Hub>) -> Self {
        Self { hub, mode: Mode::Local { sequencer: Arc::new(Mutex::new(())) } }
    }

    pub fn postgres(hub: Arc<Hub>) -> Self {
        Self { hub, mode: Mode::Postgres }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// In local mode, held from the write transaction until delivery so
    /// that deliveries happen in commit order; PostgreSQL orders notifications itself.
    pub async fn sequence(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.mode {
            Mode::Local { sequencer } => Some(sequencer.clone().lock_owned().await),
            Mode::Postgres => None,
        }
    }

    /// Announces `notice` when (and only if) `txn` commits. No-op locally.
    pub async fn notify(&self, txn: &impl ConnectionTrait, notice: Notice) -> Result<(), DbErr> {
        self.notify_all(txn, &[notice]).await
    }

    /// Announces every notice in one statement when `txn` commits. No-op locally.
    pub async fn notify_all(&self, txn: &impl ConnectionTrait, notices: &[Notice]) -> Result<(), DbErr> {
        if notices.is_empty() || matches!(self.mode, Mode::Local { .. }) {
            return Ok(());
        }
        db::notify::send(txn, notices.iter().map(Notice::encode).collect()).await
    }

    /// Delivers to this process's hub after a commit, in local mode; with
    /// PostgreSQL the listener does it for every process, this one included.
    pub fn deliver_local(&self, channel: ChannelId, event: impl FnOnce() -> HubEvent) {
        if let Mode::Local { .. } = self.mode
            && self.hub.has_subscribers(channel)
        {
            self.hub.send(channel, event());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let (c, m, g) = (ChannelId::new(), MessageId::new(), GrantId::new());
        for notice in [
            Notice::Message { channel: c, message: m },
            Notice::Deleted { channel: c },
            Notice::Revoked { channel: c, grant: g },
        ] {
            assert_eq!(Notice::parse(&notice.encode()), Some(notice));
        }
        assert_eq!(Notice::parse("x 1"), None);
        assert_eq!(Notice::parse(&format!("d {c} extra")), None);
        assert_eq!(Notice::parse("m not-a-uuid x"), None);
    }
}

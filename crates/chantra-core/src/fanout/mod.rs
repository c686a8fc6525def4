//! Live fan-out: how a committed message, a deleted channel or a revoked
//! grant reaches every open stream, in this process and in every other.
//!
//! Two halves: the [`Hub`] (in-process broadcast to this process's readers)
//! and the [`NoticeBus`] (between processes), chosen at startup:
//!
//! - [`LocalBus`] (SQLite, one process): the publisher delivers to the hub
//!   right after its commit, in commit order.
//! - [`PostgresBus`] (default with PostgreSQL): the writing transaction
//!   sends a `NOTIFY`; every process's listener receives it in commit order.
//! - NATS (`FANOUT_URL=nats://…`, the `chantra-nats` crate): notices are
//!   published after the commit on one subject per channel, received only
//!   where the channel has readers.
//!
//! On the receiving side the service's loader (service/listener.rs) loads
//! each message once per process — only when a reader here follows its
//! channel — and broadcasts it; after any lost notice it catches readers up
//! from the database by cursor.

pub mod bus;
pub mod hub;
pub mod local;
pub mod postgres;

use std::sync::Arc;

pub use bus::{BusHealth, Incoming, NoticeBus, NoticeQueue, NoticeSink, QueueClosed};
pub use hub::{Framing, Hub, HubEvent, LiveMessage};
pub use local::LocalBus;
pub use postgres::PostgresBus;
use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::OwnedMutexGuard;

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

/// The service layer's handle on fan-out: this process's hub and the bus
/// between processes. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    hub: Arc<Hub>,
    bus: Arc<dyn NoticeBus>,
}

impl Fanout {
    pub fn new(hub: Arc<Hub>, bus: Arc<dyn NoticeBus>) -> Self {
        Self { hub, bus }
    }

    /// In-process fan-out (SQLite).
    pub fn local(hub: Arc<Hub>) -> Self {
        Self::new(hub, Arc::new(LocalBus::new()))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn bus(&self) -> &Arc<dyn NoticeBus> {
        &self.bus
    }

    /// Held from the write transaction until delivery when the writer
    /// delivers itself, so that deliveries happen in commit order.
    pub async fn sequence(&self) -> Option<OwnedMutexGuard<()>> {
        self.bus.sequence().await
    }

    /// Inside `txn`: announces `notice` if the bus commits with the data.
    pub async fn notify(&self, txn: &DatabaseTransaction, notice: Notice) -> Result<(), DbErr> {
        self.notify_all(txn, &[notice]).await
    }

    /// Inside `txn`: announces every notice if the bus commits with the data.
    pub async fn notify_all(&self, txn: &DatabaseTransaction, notices: &[Notice]) -> Result<(), DbErr> {
        if notices.is_empty() {
            return Ok(());
        }
        self.bus.within(txn, notices).await
    }

    /// After the commit: announces the notices on a bus outside the database.
    pub fn committed(&self, notices: &[Notice]) {
        if !notices.is_empty() {
            self.bus.committed(notices);
        }
    }

    /// Delivers to this process's hub after a commit, when the bus is
    /// in-process; otherwise the receiving side does it for every process,
    /// this one included.
    pub fn deliver_local(&self, channel: ChannelId, event: impl FnOnce() -> HubEvent) {
        if self.bus.in_process() && self.hub.has_subscribers(channel) {
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

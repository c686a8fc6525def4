//! The in-process hub: channel id → a broadcast of ready-encoded events.
//!
//! A message is encoded once and its `Bytes` frame is shared by every
//! subscriber of the channel in this process; the broadcast ring (SSE_BUFFER
//! slots per followed channel) is the only buffer. A slow subscriber keeps
//! at most the ring's frames alive; one that falls further behind is told it
//! lagged and catches up from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum HubEvent {
    Message {
        id: Uuid,
        expires_at: DateTime<Utc>,
        frame: Bytes,
    },
    /// The channel is gone: end every stream with `event: deleted`.
    Deleted,
    /// A grant was revoked: end the streams opened with it.
    GrantRevoked(Uuid),
    /// A message could not be loaded for broadcast: subscribers catch up
    /// from the database by their own cursor (and retry until it works).
    CatchUp,
    /// Revocations (and, with `channel`, deletions) may have been missed —
    /// the listener lost its connection: readers holding a grant check it
    /// again, and with `channel` every reader checks its channel still exists.
    Recheck {
        channel: bool,
    },
}

struct Feed {
    sender: broadcast::Sender<HubEvent>,
    /// Newest message broadcast (at first: shortly before the feed opened),
    /// where a resync starts from.
    last_message: Uuid,
}

pub struct Hub {
    feeds: Mutex<HashMap<Uuid, Feed>>,
    capacity: usize,
}

/// Keeps a channel's feed alive; when the last one drops, the feed goes.
pub struct Subscription {
    pub receiver: broadcast::Receiver<HubEvent>,
    _guard: FeedGuard,
}

struct FeedGuard {
    hub: Arc<Hub>,
    channel: Uuid,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        let mut feeds = self.hub.lock();
        // The subscription's receiver is dropped before this guard (field
        // order), so no receivers left means nobody listens here any more.
        if feeds.get(&self.channel).is_some_and(|f| f.sender.receiver_count() == 0) {
            feeds.remove(&self.channel);
        }
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self { feeds: Mutex::new(HashMap::new()), capacity: capacity.max(1) })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Feed>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single map operation), so poisoning is ignored.
        self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(self: &Arc<Self>, channel: Uuid) -> Subscription {
        let receiver = {
            let mut feeds = self.lock();
            let feed = feeds
                .entry(channel)
                .or_insert_with(|| Feed { sender: broadcast::channel(self.capacity).0, last_message: opened_floor() });
            feed.sender.subscribe()
        };
        Subscription { receiver, _guard: FeedGuard { hub: self.clone(), channel } }
    }

    pub fn has_subscribers(&self, channel: Uuid) -> bool {
        self.lock().contains_key(&channel)
    }

    /// Broadcasts to the channel's readers here, if any. The send (which
    /// wakes every reader) happens outside the map's lock, so one busy
    /// channel does not hold up the others; callers send one channel's
    /// events from one task at a time, which keeps their order.
    pub fn send(&self, channel: Uuid, event: HubEvent) {
        let sender = {
            let mut feeds = self.lock();
            let Some(feed) = feeds.get_mut(&channel) else { return };
            if let HubEvent::Message { id, .. } = &event {
                feed.last_message = feed.last_message.max(*id);
            }
            feed.sender.clone()
        };
        let _ = sender.send(event);
    }

    /// Channels with subscribers here, with the newest message each has seen.
    pub fn active_channels(&self) -> Vec<(Uuid, Uuid)> {
        self.lock().iter().map(|(id, feed)| (*id, feed.last_message)).collect()
    }
}

/// A cursor a little before now: readers of a new feed replayed what came
/// before themselves, and anything repeated is dropped by id.
fn opened_floor() -> Uuid {
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
    crate::domain::MessageId::floor_at(millis.saturating_sub(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feeds_live_as_long_as_subscribers() {
        let hub = Hub::new(4);
        let channel = Uuid::now_v7();
        let mut a = hub.subscribe(channel);
        let b = hub.subscribe(channel);
        assert!(hub.has_subscribers(channel));
        hub.send(channel, HubEvent::Deleted);
        assert!(matches!(a.receiver.recv().await, Ok(HubEvent::Deleted)));
        drop(b);
        assert!(hub.has_subscribers(channel));
        drop(a);
        assert!(!hub.has_subscribers(channel));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged() {
        let hub = Hub::new(2);
        let channel = Uuid::now_v7();
        let mut slow = hub.subscribe(channel);
        for _ in 0..5 {
            hub.send(channel, HubEvent::Message { id: Uuid::now_v7(), expires_at: Utc::now(), frame: Bytes::new() });
        }
        assert!(matches!(slow.receiver.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
    }
}

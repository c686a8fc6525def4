//! The in-process hub: channel id → a broadcast of committed events.
//!
//! A message is loaded once per process and shared by every subscriber of
//! the channel here ([`LiveMessage`]); the edge that encodes it (SSE) does so
//! once and caches its frame in it, so 5,000 readers share one encoding. The
//! broadcast ring is the only buffer: SSE_BUFFER slots shared by a channel's
//! readers, except that a channel's first reader gets a ring of its own of
//! [`LONE_READER_SLOTS`] — most channels have one reader (10,000 channels ×
//! 1 reader kept 10,000 rings of 128 slots, 7 KiB each), and one reader that
//! falls behind costs one catch-up. A slow subscriber keeps at most its
//! ring's frames alive; one that falls further behind is told it lagged and
//! catches up from the database.
//!
//! Both are bounded in bytes: a frame larger than SSE_LIVE_FRAME_MAX_BYTES
//! crosses the ring as its id only ([`HubEvent::Stored`]), and each reader
//! loads it through the replay path, whose frames all draw on one
//! process-wide budget ([`Hub::replay_memory`], SSE_REPLAY_MEMORY_BYTES).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::db::entity::message;
use crate::domain::{ChannelId, GrantId, MessageId};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, broadcast};

/// A committed message with its payload, shared by every reader in this process.
#[derive(Debug)]
pub struct LiveMessage {
    pub row: message::Model,
    pub payload: Bytes,
    /// The edge's encodings of this message (an SSE frame, a JSON line),
    /// each made by the first reader that needs it and shared by the others.
    /// A line is only made when an NDJSON reader follows the channel; then
    /// a ring entry holds two encodings. The ring admits a message by its
    /// base64 size ([`Hub::carries_frame`]), and no encoding is larger than
    /// that plus its fields (the edge sends text that would escape to more
    /// as base64): an entry holds at most the payload and two such frames.
    encoded: [OnceLock<Bytes>; Framing::COUNT],
}

/// The wire forms an edge keeps of a live message, one slot each in
/// [`LiveMessage::encoded`]: the core names them, the edge (chantra's
/// `http::channels`) makes the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A Server-Sent Events frame.
    EventStream,
    /// A line of newline-delimited JSON.
    JsonLines,
}

impl Framing {
    const COUNT: usize = 2;
}

impl LiveMessage {
    pub fn new(row: message::Model, payload: Bytes) -> Arc<Self> {
        Arc::new(Self { row, payload, encoded: Default::default() })
    }

    pub fn id(&self) -> MessageId {
        self.row.id
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.row.expires_at
    }

    /// This message in `framing`, encoded by `encode` once per process:
    /// every caller must pass the same encoding for a framing (there is one
    /// per process, the edge's).
    pub fn encoded(&self, framing: Framing, encode: impl FnOnce(&Self) -> Bytes) -> Bytes {
        self.encoded[framing as usize].get_or_init(|| encode(self)).clone()
    }
}

#[derive(Debug, Clone)]
pub enum HubEvent {
    Message(Arc<LiveMessage>),
    /// A committed message too large to keep in the ring: each reader loads
    /// it from the store (the catch-up path, within the replay memory budget).
    Stored {
        id: MessageId,
        expires_at: DateTime<Utc>,
    },
    /// The channel is gone: end every stream with `event: deleted`.
    Deleted,
    /// A grant was revoked: end the streams opened with it.
    GrantRevoked(GrantId),
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

/// Slots of the ring a channel's first reader follows (or SSE_BUFFER, if
/// smaller). 8, not 16: 10,000 channels × 1 reader took 7.9–8.0 KiB per
/// stream instead of 8.1–8.2; a lone reader more than 8 messages behind (a
/// commit batch of 9+ for its channel) catches up with one page query.
pub const LONE_READER_SLOTS: usize = 8;

struct Feed {
    /// The first reader's own ring of [`LONE_READER_SLOTS`], while it reads.
    lone: Option<broadcast::Sender<HubEvent>>,
    /// The ring of SSE_BUFFER slots every later reader shares. Every event
    /// goes to both.
    shared: Option<broadcast::Sender<HubEvent>>,
    /// Newest message broadcast (at first: shortly before the feed opened),
    /// where a resync starts from.
    last_message: MessageId,
}

pub struct Hub {
    feeds: Mutex<HashMap<ChannelId, Feed>>,
    /// Set by [`Hub::close`] (under the feeds' lock), read by every reader
    /// on every wake-up: a flag no one writes until shutdown stays in every
    /// core's cache, where a cancellation token's lock would not.
    closed: AtomicBool,
    /// Woken when a feed opens or closes (a channel gains its first reader
    /// here or loses its last): a bus that subscribes per channel follows it.
    feeds_changed: Notify,
    capacity: usize,
    /// Larger frames travel as [`HubEvent::Stored`].
    live_frame_max: usize,
    /// Bytes of replay frames (and the payloads they are encoded from) all
    /// readers here may hold at once; one permit per byte.
    replay_memory: Arc<Semaphore>,
    replay_memory_bytes: u32,
}

/// Keeps a channel's feed alive; when the last one drops, the feed goes.
pub struct Subscription {
    pub receiver: broadcast::Receiver<HubEvent>,
    _guard: FeedGuard,
}

struct FeedGuard {
    hub: Arc<Hub>,
    channel: ChannelId,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        let mut feeds = self.hub.lock();
        // The subscription's receiver is dropped before this guard (field
        // order), so no receivers left means nobody listens here any more.
        let Some(feed) = feeds.get_mut(&self.channel) else { return };
        // A ring whose readers all left is not sent to any more.
        for ring in [&mut feed.lone, &mut feed.shared] {
            if ring.as_ref().is_some_and(|r| r.receiver_count() == 0) {
                *ring = None;
            }
        }
        if feed.lone.is_none() && feed.shared.is_none() {
            feeds.remove(&self.channel);
            self.hub.feeds_changed.notify_one();
        }
    }
}

impl Hub {
    /// A hub with the default byte limits (64 KiB live frames, 64 MiB of replays).
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_limits(capacity, 64 * 1024, 64 * 1024 * 1024)
    }

    pub fn with_limits(capacity: usize, live_frame_max: usize, replay_memory: u64) -> Arc<Self> {
        // A semaphore's permits are acquired in u32 amounts: 4 GiB is the most it can meter.
        let replay_memory_bytes = u32::try_from(replay_memory).unwrap_or(u32::MAX).max(1);
        Arc::new(Self {
            feeds: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            feeds_changed: Notify::new(),
            capacity: capacity.max(1),
            live_frame_max,
            replay_memory: Arc::new(Semaphore::new(replay_memory_bytes as usize)),
            replay_memory_bytes,
        })
    }

    /// The process-wide budget of replay bytes, and its size.
    pub fn replay_memory(&self) -> (&Arc<Semaphore>, u32) {
        (&self.replay_memory, self.replay_memory_bytes)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ChannelId, Feed>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single map operation), so poisoning is ignored.
        self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(self: &Arc<Self>, channel: ChannelId) -> Subscription {
        let receiver = {
            let mut feeds = self.lock();
            if self.closed.load(Ordering::Relaxed) {
                // After [`Hub::close`]: a feed that is closed from the start.
                broadcast::channel(1).1
            } else {
                let feed = feeds.entry(channel).or_insert_with(|| {
                    self.feeds_changed.notify_one();
                    Feed { lone: None, shared: None, last_message: opened_floor() }
                });
                if feed.lone.is_none() && feed.shared.is_none() && LONE_READER_SLOTS < self.capacity {
                    // The first reader: a ring of its own, small unless SSE_BUFFER is.
                    feed.lone.insert(broadcast::channel(LONE_READER_SLOTS).0).subscribe()
                } else {
                    feed.shared.get_or_insert_with(|| broadcast::channel(self.capacity).0).subscribe()
                }
            }
        };
        Subscription { receiver, _guard: FeedGuard { hub: self.clone(), channel } }
    }

    /// Closes every feed, for good: each reader sees its feed end
    /// ([`broadcast::error::RecvError::Closed`]) and ends its stream, and a
    /// feed subscribed to afterwards is closed from the start. The process's
    /// shutdown ends its streams this way (`chantra::app`), so that a reader
    /// does not watch a cancellation token of its own on every wake-up.
    pub fn close(&self) {
        let feeds = {
            let mut feeds = self.lock();
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *feeds)
        };
        // Dropping the rings' senders wakes every receiver.
        drop(feeds);
        self.feeds_changed.notify_one();
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether a message of `payload_size` bytes crosses the ring as its
    /// frame; otherwise it travels as [`HubEvent::Stored`]. Producers ask
    /// first, so a payload `send` would not keep is never loaded or encoded
    /// (its base64 alone is already over the limit).
    pub fn carries_frame(&self, payload_size: i64) -> bool {
        let size = usize::try_from(payload_size).unwrap_or(usize::MAX);
        size.div_ceil(3).saturating_mul(4) <= self.live_frame_max
    }

    pub fn has_subscribers(&self, channel: ChannelId) -> bool {
        self.lock().contains_key(&channel)
    }

    /// Broadcasts to the channel's readers here, if any. The send (which
    /// wakes every reader) happens outside the map's lock, so one busy
    /// channel does not hold up the others; callers send one channel's
    /// events from one task at a time, which keeps their order.
    pub fn send(&self, channel: ChannelId, event: HubEvent) {
        let event = match event {
            // The ring would pin up to SSE_BUFFER such frames per channel.
            HubEvent::Message(live) if !self.carries_frame(live.row.payload_size) => {
                HubEvent::Stored { id: live.id(), expires_at: live.expires_at() }
            }
            other => other,
        };
        let rings = {
            let mut feeds = self.lock();
            let Some(feed) = feeds.get_mut(&channel) else { return };
            match &event {
                HubEvent::Message(live) => feed.last_message = feed.last_message.max(live.id()),
                HubEvent::Stored { id, .. } => feed.last_message = feed.last_message.max(*id),
                _ => {}
            }
            [feed.lone.clone(), feed.shared.clone()]
        };
        for ring in rings.into_iter().flatten() {
            let _ = ring.send(event.clone());
        }
    }

    /// The newest message broadcast on `channel` here (where a catch-up
    /// starts), if it has readers here.
    pub fn last_message(&self, channel: ChannelId) -> Option<MessageId> {
        self.lock().get(&channel).map(|feed| feed.last_message)
    }

    /// Resolves after a channel gained its first reader here or lost its
    /// last one (at once if that happened since the previous wait). Meant
    /// for one waiter: the bus that follows the set of channels.
    pub async fn feeds_changed(&self) {
        self.feeds_changed.notified().await;
    }

    /// Channels with subscribers here, with the newest message each has seen.
    pub fn active_channels(&self) -> Vec<(ChannelId, MessageId)> {
        self.lock().iter().map(|(id, feed)| (*id, feed.last_message)).collect()
    }
}

/// A cursor a little before now: readers of a new feed replayed what came
/// before themselves, and anything repeated is dropped by id.
fn opened_floor() -> MessageId {
    MessageId::floor_ago(std::time::Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: MessageId, payload: &'static [u8]) -> HubEvent {
        let row = message::Model {
            id,
            channel_id: ChannelId::new(),
            payload_object_key: String::new(),
            payload_size: payload.len() as i64,
            content_type: "text/plain".into(),
            created_at: Utc::now(),
            expires_at: Utc::now(),
            idempotency_key: None,
            payload_inline: false,
        };
        HubEvent::Message(LiveMessage::new(row, Bytes::from_static(payload)))
    }

    #[tokio::test]
    async fn feeds_live_as_long_as_subscribers() {
        let hub = Hub::new(4);
        let channel = ChannelId::new();
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
    async fn closing_ends_every_feed_and_every_later_one() {
        use broadcast::error::RecvError;
        let hub = Hub::new(4);
        let (one, two) = (ChannelId::new(), ChannelId::new());
        // A lone reader (its own ring) and two sharing one: every ring closes.
        let mut lone = hub.subscribe(one);
        let (mut first, mut second) = (hub.subscribe(two), hub.subscribe(two));
        let waiting = tokio::spawn(async move { lone.receiver.recv().await.map(|_| ()) });
        tokio::task::yield_now().await;
        hub.close();
        assert!(hub.is_closed());
        assert!(matches!(waiting.await.unwrap(), Err(RecvError::Closed)), "a waiting reader is woken");
        assert!(matches!(first.receiver.recv().await, Err(RecvError::Closed)));
        assert!(matches!(second.receiver.recv().await, Err(RecvError::Closed)));
        // Sends go nowhere, and a reader arriving now finds its feed closed.
        hub.send(two, HubEvent::Deleted);
        let mut late = hub.subscribe(one);
        assert!(matches!(late.receiver.recv().await, Err(RecvError::Closed)));
        assert!(!hub.has_subscribers(one) && hub.active_channels().is_empty());
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged() {
        let hub = Hub::new(2);
        let channel = ChannelId::new();
        let mut slow = hub.subscribe(channel);
        for _ in 0..5 {
            hub.send(channel, live(MessageId::new(), b""));
        }
        assert!(matches!(slow.receiver.recv().await, Err(broadcast::error::RecvError::Lagged(3))));
    }

    #[tokio::test]
    async fn a_lone_reader_has_a_small_ring_and_later_readers_share_a_full_one() {
        let hub = Hub::new(128);
        let channel = ChannelId::new();
        let mut first = hub.subscribe(channel);
        let mut second = hub.subscribe(channel);
        let mut third = hub.subscribe(channel);
        let sent: Vec<MessageId> = (0..40).map(|_| MessageId::new()).collect();
        for id in &sent {
            hub.send(channel, live(*id, b"x"));
        }
        // The first reader's ring holds LONE_READER_SLOTS (it was 128 for everyone): the rest lost to it.
        let lost = sent.len() - LONE_READER_SLOTS;
        assert!(matches!(first.receiver.recv().await, Err(broadcast::error::RecvError::Lagged(n)) if n == lost as u64));
        assert!(matches!(first.receiver.recv().await, Ok(HubEvent::Message(m)) if m.id() == sent[lost]));
        // The others share the full ring: every event, in order.
        for reader in [&mut second, &mut third] {
            for id in &sent {
                assert!(matches!(reader.receiver.recv().await, Ok(HubEvent::Message(m)) if m.id() == *id));
            }
        }
        // The first reader leaves: its ring goes, the others go on, and a
        // reader joining now shares their ring.
        drop(first);
        assert!(hub.lock()[&channel].lone.is_none());
        let mut fourth = hub.subscribe(channel);
        assert!(hub.lock()[&channel].lone.is_none());
        hub.send(channel, HubEvent::Deleted);
        for reader in [&mut second, &mut fourth] {
            assert!(matches!(reader.receiver.recv().await, Ok(HubEvent::Deleted)));
        }
        drop((second, third, fourth));
        assert!(!hub.has_subscribers(channel));
        // A hub whose SSE_BUFFER is small gives every reader one ring of that size.
        let small = Hub::new(4);
        let (_a, _b) = (small.subscribe(channel), small.subscribe(channel));
        assert!(small.lock()[&channel].lone.is_none());
    }

    #[tokio::test]
    async fn large_frames_cross_the_ring_as_ids() {
        let hub = Hub::with_limits(4, 8, 1024);
        let channel = ChannelId::new();
        let mut reader = hub.subscribe(channel);
        let (small, large) = (MessageId::new(), MessageId::new());
        // 6 payload bytes are 8 of base64 (fits the 8-byte limit); 7 are 12.
        hub.send(channel, live(small, b"123456"));
        hub.send(channel, live(large, b"1234567"));
        assert!(matches!(reader.receiver.recv().await, Ok(HubEvent::Message(m)) if m.id() == small));
        assert!(matches!(reader.receiver.recv().await, Ok(HubEvent::Stored { id, .. }) if id == large));
        assert_eq!(hub.active_channels(), vec![(channel, large)]);
        assert_eq!(hub.replay_memory().1, 1024);
        // 6 payload bytes are 8 of base64: the most an 8-byte limit carries.
        assert!(hub.carries_frame(6));
        assert!(!hub.carries_frame(7));
    }
}

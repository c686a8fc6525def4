//! The service layer: every business rule of channels, grants and messages.
//! REST, the channels role and MCP all call these methods, so each rule is
//! written once. It is the only caller of `db/` and `payload/`.

mod channels;
mod coalesce;
mod grants;
pub mod listener;
mod publish;
mod reads;
mod stream;
mod sweeper;
pub mod views;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::clock::Clock;
use crate::db::entity::channel;
use crate::domain::{ChannelId, MessageId, PublishToken, TokenFingerprint, TokenHasher, Visibility};
use crate::error::AppError;
use crate::fanout::Fanout;
use crate::payload::PayloadStore;

pub use grants::{GRANTS_IN_VIEW, MAX_GRANT_PAGE};
pub use publish::{PublishInput, Published};
pub use publish::{TASK as COMMIT_WRITER, within_unless_committing};
pub use reads::{Gap, MAX_PAGE, Reader, ReaderState, ReplayStart, message_event};
pub use stream::{Cursor, ReaderStream, Revocation, StreamEvent, StreamSettings};
pub use sweeper::{SweepReport, SweepSettings};

/// Settings the service layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub channel_base_url: String,
    pub max_payload_bytes: usize,
    /// Payloads up to this size are written into the database with their
    /// message (one group commit, no object); larger ones go to the store.
    pub payload_inline_max_bytes: usize,
    /// Payload bytes one read page may carry (at least one message always).
    pub page_max_bytes: u64,
    pub channel_idle: chrono::Duration,
    /// Grant rows one channel may hold, whatever their state.
    pub max_grants_per_channel: u64,
    /// How long a revoked or expired grant is kept before the sweeper purges it.
    pub grant_purge_grace: chrono::Duration,
}

/// Cheap to clone: one reference count (every request clones the router's
/// state, and with it this; a dozen handles counted one by one were ~3 % of
/// a publish's CPU, perf).
#[derive(Clone)]
pub struct Service(Arc<Shared>);

/// What every clone of a [`Service`] shares; its fields are the service
/// layer's own (reached through `Deref`).
pub struct Shared {
    db: DatabaseConnection,
    store: Arc<dyn PayloadStore>,
    hasher: TokenHasher,
    clock: Clock,
    fanout: Fanout,
    settings: ServiceSettings,
    /// One sweep at a time in this process (PostgreSQL adds a cross-process lock).
    sweep_guard: tokio::sync::Mutex<()>,
    /// Publish credentials of recently published-to channels, so a publish
    /// needs no lookup (a deleted channel still fails in the commit: 404).
    publish_auth: std::sync::Mutex<std::collections::HashMap<ChannelId, PublishAuth>>,
    /// The group-commit queue; its writer runs as a supervised task
    /// ([`Service::commit_writer`]).
    commits: publish::CommitQueue,
    /// Identical reads of a reconnect storm, shared (see [`coalesce`]).
    shared_reads: SharedReads,
}

/// The reads every resuming reader of a channel repeats, each shared by
/// the readers asking at the same time.
#[derive(Default)]
struct SharedReads {
    /// A reader's channel row (is it there, public or private).
    channels: coalesce::Coalescer<ChannelId, Option<channel::Model>>,
    /// A resume's plan, by channel, cursor and replay cap.
    resumes: coalesce::Coalescer<(ChannelId, MessageId, u64), Option<crate::db::messages::ResumeState>>,
    /// A page of replay rows, by channel, cursor and page size.
    pages: coalesce::Coalescer<(ChannelId, MessageId, u64), Vec<crate::db::entity::message::Model>>,
}

impl std::ops::Deref for Service {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Service {
    pub fn new(
        db: DatabaseConnection,
        store: Arc<dyn PayloadStore>,
        hasher: TokenHasher,
        clock: Clock,
        fanout: Fanout,
        settings: ServiceSettings,
    ) -> Self {
        Self(Arc::new(Shared {
            db,
            store,
            hasher,
            clock,
            fanout,
            settings,
            sweep_guard: tokio::sync::Mutex::default(),
            publish_auth: std::sync::Mutex::default(),
            commits: publish::CommitQueue::new(),
            shared_reads: SharedReads::default(),
        }))
    }

    fn commits(&self) -> &publish::CommitQueue {
        &self.commits
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn store(&self) -> &Arc<dyn PayloadStore> {
        &self.store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// Payload bytes one read page may carry (PAGE_MAX_BYTES; at least one message always).
    pub fn page_max_bytes(&self) -> u64 {
        self.settings.page_max_bytes
    }

    /// The channel, if `token` is its publish token. Unknown channel is 404,
    /// any other token 401; the hash comparison is constant-time.
    async fn authorize_publisher(&self, id: ChannelId, token: &PublishToken) -> Result<channel::Model, AppError> {
        let channel = crate::db::channels::find(&self.db, id).await?.ok_or(AppError::ChannelNotFound)?;
        if !self.hasher.hash_publish(token).matches(&channel.publish_token_hash) {
            return Err(AppError::InvalidToken);
        }
        Ok(channel)
    }

    /// `authorize_publisher` for the publish hot path: the channel's token
    /// hash comes from memory when this process has seen it, and a token
    /// this process has already checked is recognised by its fingerprint
    /// (BLAKE2b, well under a microsecond) instead of hashed again (Argon2,
    /// ~30 µs: a sixth of the CPU of a publish under load).
    async fn authorize_publish(&self, id: ChannelId, token: &PublishToken) -> Result<(), AppError> {
        /// Bounds the memory: past this many channels the map starts over.
        const MAX_CACHED: usize = 10_000;
        let fingerprint = self.hasher.fingerprint_publish(token);
        // The usual case, a token checked here before, copies nothing out of the map.
        let stored_hash = match self.publish_auth.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            Some(auth) if auth.verified.matches(&fingerprint) => return Ok(()),
            cached => cached.map(|auth| auth.stored_hash.clone()),
        };
        let stored_hash = match stored_hash {
            Some(hash) if self.hasher.hash_publish(token).matches(&hash) => hash,
            Some(_) => return Err(AppError::InvalidToken),
            None => self.authorize_publisher(id, token).await?.publish_token_hash,
        };
        let mut map = self.publish_auth.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, PublishAuth { stored_hash, verified: fingerprint });
        Ok(())
    }

    fn channel_url(&self, id: ChannelId, visibility: Visibility) -> String {
        format!("{}/channel/v1/{}/{}", self.settings.channel_base_url, visibility, id)
    }
}

/// What this process knows about a channel's publish token.
struct PublishAuth {
    /// The stored (Argon2) hash.
    stored_hash: String,
    /// The fingerprint of the token that last matched it here.
    verified: TokenFingerprint,
}

fn visibility_of(channel: &channel::Model) -> Result<Visibility, AppError> {
    Visibility::from_db(&channel.visibility).ok_or_else(|| {
        tracing::error!(channel = %channel.id, value = %channel.visibility, "unknown visibility in the database");
        AppError::Internal
    })
}

//! Where message payloads live: a `PayloadStore` trait with a filesystem
//! implementation (embedded default) and an S3 one (production: MinIO, garage,
//! AWS). Metadata lives in the database; the store only sees opaque keys.
//!
//! Keys group a channel's objects under one prefix, `channels/{channel_id}/`,
//! so deleting a channel is one prefix delete.

mod cache;
mod fs;

use async_trait::async_trait;
use bytes::Bytes;

pub use fs::FsStore;

use crate::domain::{ChannelId, MessageId};

/// Which store holds payloads (built by the binary's config from DATA_DIR and S3_*).
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Filesystem { root: std::path::PathBuf },
    S3(S3Config),
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: crate::domain::Secret<String>,
    pub timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    /// The store could not be reached or refused the operation; the cause is
    /// for logs, never for clients.
    #[error("payload store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PayloadStore: Send + Sync + 'static {
    /// Short name for logs and /readyz ("filesystem", "s3").
    fn kind(&self) -> &'static str;
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Deleting a missing object succeeds: every delete is idempotent.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every object whose key starts with `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
    /// Cheap reachability check for /readyz.
    async fn check(&self) -> Result<(), StoreError>;
    /// Every object under `prefix`, with when it was last written.
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError>;
    /// Keeps `bytes` where reads of `key` look first (the cache in front of
    /// the store) without writing the store: for a payload kept in the
    /// database (`messages.payload_inline`). A store without a cache keeps
    /// nothing.
    fn remember(&self, key: &str, bytes: &Bytes) {
        let _ = (key, bytes);
    }
    /// What [`PayloadStore::remember`] (or a recent read or write) keeps
    /// under `key`, without a call to the store.
    fn recall(&self, key: &str) -> Option<Bytes> {
        let _ = key;
        None
    }
    /// Drops what is kept under `key` without a call to the store (the
    /// payload's row is gone).
    fn forget(&self, key: &str) {
        let _ = key;
    }
    /// Makes sure objects expire by themselves after `days` (a safety net
    /// for orphans). Only object stores have such rules.
    async fn ensure_expiry_rule(&self, days: u32) -> Result<ExpiryRule, StoreError> {
        let _ = days;
        Ok(ExpiryRule::NotApplicable)
    }
}

#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// What `ensure_expiry_rule` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryRule {
    AlreadyPresent,
    Created,
    /// The server refused lifecycle rules (some S3 implementations do).
    Unsupported(String),
    NotApplicable,
}

/// Every channel's objects live under this prefix.
pub const ALL_CHANNELS_PREFIX: &str = "channels/";

pub fn channel_prefix(channel: ChannelId) -> String {
    format!("channels/{channel}/")
}

pub fn object_key(channel: ChannelId, message: MessageId) -> String {
    format!("channels/{channel}/{message}")
}

/// `store` as the service uses it: every call timed into the metrics, and
/// recent payloads cached in front of it. The stores themselves are opened
/// by the binary: [`FsStore`] here, the S3 store in the chantra-s3 crate
/// (apart, so this crate's dependency tree has no HTTP stack).
pub fn layered<S: PayloadStore>(store: S) -> std::sync::Arc<dyn PayloadStore> {
    std::sync::Arc::new(cache::Cached::new(std::sync::Arc::new(Timed(store))))
}

/// A store whose every call is timed into `chantra_store_call_duration_seconds`.
struct Timed<S>(S);

async fn timed<T>(op: &'static str, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let result = call.await;
    crate::metrics::record_store_call(op, !matches!(result, Err(StoreError::Unavailable(_))), started.elapsed());
    result
}

#[async_trait]
impl<S: PayloadStore> PayloadStore for Timed<S> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StoreError> {
        timed("put", self.0.put(key, bytes, content_type)).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        timed("get", self.0.get(key)).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        timed("delete", self.0.delete(key)).await
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        timed("delete_prefix", self.0.delete_prefix(prefix)).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        timed("check", self.0.check()).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        timed("list", self.0.list(prefix)).await
    }
    async fn ensure_expiry_rule(&self, days: u32) -> Result<ExpiryRule, StoreError> {
        self.0.ensure_expiry_rule(days).await
    }
    fn remember(&self, key: &str, bytes: &Bytes) {
        self.0.remember(key, bytes);
    }
    fn recall(&self, key: &str) -> Option<Bytes> {
        self.0.recall(key)
    }
    fn forget(&self, key: &str) {
        self.0.forget(key);
    }
}

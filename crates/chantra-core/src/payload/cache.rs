//! A process-wide cache of recently written or read payloads, in front of
//! the store — and of payloads kept in the database, which the service
//! hands it itself (`remember`, `recall`, `forget`).
//!
//! Many readers of one channel want the same payloads at the same time: a
//! resume storm after a restart replays the same recent messages to every
//! subscriber, and each would otherwise fetch each object itself (100
//! readers × 70 messages = 7,000 S3 GETs in the fault suite). Objects never
//! change once written (every publish gets a fresh key), so a cached copy
//! is never stale; deletes remove it.
//!
//! Bounded by bytes, oldest inserted first out (FIFO): recent messages are
//! the ones replayed. Objects over [`MAX_OBJECT`] are not kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ExpiryRule, PayloadStore, StoreError, StoredObject};

/// Total bytes of payloads kept.
pub const CAPACITY: usize = 64 * 1024 * 1024;
/// Larger objects are always read from the store.
pub const MAX_OBJECT: usize = 256 * 1024;

#[derive(Default)]
struct Entries {
    by_key: HashMap<Arc<str>, Bytes>,
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

impl Entries {
    fn insert(&mut self, key: &str, value: Bytes) {
        if value.len() > MAX_OBJECT || self.by_key.contains_key(key) {
            return;
        }
        while self.bytes + value.len() > CAPACITY {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(evicted) = self.by_key.remove(&oldest) {
                self.bytes -= evicted.len();
            }
        }
        // A copy of its own: the caller's Bytes may be a slice of a much
        // larger buffer (hyper's read buffer), which caching would keep alive.
        let value = Bytes::copy_from_slice(&value);
        let key: Arc<str> = Arc::from(key);
        self.bytes += value.len();
        self.order.push_back(key.clone());
        self.by_key.insert(key, value);
    }

    /// Removes one key (the sweeper deletes expired messages one by one:
    /// no scan of the whole cache per delete).
    fn remove(&mut self, key: &str) {
        if let Some(value) = self.by_key.remove(key) {
            self.bytes -= value.len();
        }
        self.compact_order();
    }

    /// Removes what matches (a channel's prefix); the keys stay in `order`
    /// until they come up for eviction (then they find nothing to remove).
    fn remove_where(&mut self, matches: impl Fn(&str) -> bool) {
        let bytes = &mut self.bytes;
        self.by_key.retain(|key, value| {
            let keep = !matches(key);
            if !keep {
                *bytes -= value.len();
            }
            keep
        });
        self.compact_order();
    }

    /// Drops removed keys from `order` once they are the majority.
    fn compact_order(&mut self) {
        let by_key = &self.by_key;
        if self.order.len() > 2 * by_key.len() + 1024 {
            self.order.retain(|key| by_key.contains_key(key));
        }
    }
}

pub struct Cached {
    inner: Arc<dyn PayloadStore>,
    entries: Mutex<Entries>,
}

impl Cached {
    pub fn new(inner: Arc<dyn PayloadStore>) -> Self {
        Self { inner, entries: Mutex::default() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl PayloadStore for Cached {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.inner.put(key, bytes.clone(), content_type).await?;
        self.entries().insert(key, bytes);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        if let Some(hit) = self.entries().by_key.get(key).cloned() {
            return Ok(hit);
        }
        let bytes = self.inner.get(key).await?;
        self.entries().insert(key, bytes.clone());
        Ok(bytes)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries().remove(key);
        self.inner.delete(key).await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        self.entries().remove_where(|k| k.starts_with(prefix));
        self.inner.delete_prefix(prefix).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        self.inner.list(prefix).await
    }

    async fn ensure_expiry_rule(&self, days: u32) -> Result<ExpiryRule, StoreError> {
        self.inner.ensure_expiry_rule(days).await
    }

    fn remember(&self, key: &str, bytes: &Bytes) {
        self.entries().insert(key, bytes.clone());
    }

    fn recall(&self, key: &str) -> Option<Bytes> {
        self.entries().by_key.get(key).cloned()
    }

    fn forget(&self, key: &str) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_capacity_oldest_out() {
        let mut entries = Entries::default();
        let object = Bytes::from(vec![0u8; MAX_OBJECT]);
        let fits = CAPACITY / MAX_OBJECT;
        for i in 0..fits + 3 {
            entries.insert(&format!("k{i}"), object.clone());
        }
        assert_eq!(entries.bytes, fits * MAX_OBJECT);
        assert!(!entries.by_key.contains_key("k0") && !entries.by_key.contains_key("k2"));
        assert!(entries.by_key.contains_key("k3") && entries.by_key.contains_key(&*format!("k{}", fits + 2)));
        entries.insert("big", Bytes::from(vec![0u8; MAX_OBJECT + 1]));
        assert!(!entries.by_key.contains_key("big"));
    }

    #[test]
    fn deletes_remove_by_key_and_prefix() {
        let mut entries = Entries::default();
        for key in ["channels/a/1", "channels/a/2", "channels/b/1"] {
            entries.insert(key, Bytes::from_static(b"xyz"));
        }
        entries.remove_where(|k| k.starts_with("channels/a/"));
        assert_eq!(entries.by_key.len(), 1);
        assert_eq!(entries.bytes, 3);
        entries.remove("channels/b/1");
        assert_eq!(entries.bytes, 0);
        // A key evicted after its delete finds nothing to subtract.
        entries.insert("channels/c/1", Bytes::from_static(b"q"));
        assert_eq!(entries.bytes, 1);
    }
}

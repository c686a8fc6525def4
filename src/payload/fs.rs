//! Payloads as files under one root directory (the embedded default).
//! Each object is written once, under a fresh key, before its message row
//! exists: nobody reads it until it is complete. A crash mid-write leaves a
//! file without a row, which the sweeper removes as an orphan.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;

use super::{PayloadStore, StoreError, StoredObject};

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub async fn open(root: &Path) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("DATA_DIR: cannot create payload directory {}", root.display()))?;
        Ok(Self { root: root.to_path_buf() })
    }

    /// Maps a key to a path, refusing anything that could escape the root.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        if key.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::Unavailable(format!("refusing object key {key:?}")));
        }
        Ok(self.root.join(relative))
    }
}

fn unavailable(action: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{action} {}: {err}", path.display()))
}

#[async_trait]
impl PayloadStore for FsStore {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        // One trip to the blocking pool for the whole write.
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let create = || std::fs::File::create_new(&path);
            let mut file = match create() {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let dir = path.parent().unwrap_or(&path);
                    std::fs::create_dir_all(dir).map_err(|e| unavailable("create", dir, e))?;
                    create()
                }
                other => other,
            }
            .map_err(|e| unavailable("create", &path, e))?;
            file.write_all(&bytes).map_err(|e| unavailable("write", &path, e))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("write task failed: {e}")))?
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(unavailable("read", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("delete", &path, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        // Our prefixes are directories ("channels/{id}/").
        let path = self.path(prefix.trim_end_matches('/'))?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("delete", &path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        // A directory walk is blocking work: keep it off the async threads.
        tokio::task::spawn_blocking(move || walk(&root, &prefix))
            .await
            .map_err(|e| StoreError::Unavailable(format!("list task failed: {e}")))?
    }

    async fn check(&self) -> Result<(), StoreError> {
        let meta = tokio::fs::metadata(&self.root).await.map_err(|e| unavailable("stat", &self.root, e))?;
        if !meta.is_dir() {
            return Err(StoreError::Unavailable(format!("{} is not a directory", self.root.display())));
        }
        Ok(())
    }
}

/// Files under `root/prefix`, as keys relative to `root`; temporary files
/// of writes in progress are not objects.
fn walk(root: &Path, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
    let mut out = Vec::new();
    let mut pending = vec![root.join(prefix.trim_end_matches('/'))];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(unavailable("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| unavailable("list", &dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| unavailable("stat", &path, e))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            if key.contains(".tmp-") {
                continue;
            }
            let modified =
                meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_else(|_| chrono::Utc::now());
            out.push(StoredObject { key, modified });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_idempotent_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        store.put("channels/a/1", Bytes::from_static(b"hi"), "text/plain").await.unwrap();
        assert_eq!(store.get("channels/a/1").await.unwrap(), Bytes::from_static(b"hi"));
        store.put("channels/b/2", Bytes::from_static(b"x"), "text/plain").await.unwrap();
        let mut keys: Vec<String> = store.list("channels/").await.unwrap().into_iter().map(|o| o.key).collect();
        keys.sort();
        assert_eq!(keys, ["channels/a/1", "channels/b/2"]);
        store.delete_prefix("channels/a/").await.unwrap();
        assert!(matches!(store.get("channels/a/1").await, Err(StoreError::NotFound)));
        store.delete("channels/a/1").await.unwrap();
        store.delete_prefix("channels/a/").await.unwrap();
    }

    #[tokio::test]
    async fn refuses_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        assert!(store.put("../evil", Bytes::new(), "x/y").await.is_err());
        assert!(store.get("/etc/passwd").await.is_err());
    }
}

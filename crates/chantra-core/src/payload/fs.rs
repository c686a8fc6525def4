//! Payloads as files under one root directory (the embedded default).
//! Each object is written once, under a fresh key, before its message row
//! exists: nobody reads it until it is complete. A crash mid-write leaves a
//! file without a row, which the sweeper removes as an orphan.
//!
//! `put` returns only once the object survives a power loss: the bytes go
//! to a temporary file beside the final name, which is fsynced, renamed
//! into place and its directory fsynced (a new directory's parents too). So
//! a torn file never carries an object's name, and a message row — written
//! after `put` — never points at a name the disk forgot. Temporary files
//! left by a crash are not objects (`list` skips them) and are removed by
//! `list` once they are older than [`STALE_TEMPORARY`].

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;

use super::{PayloadStore, StoreError, StoredObject};

/// Marks a temporary file: `{key}.tmp-{random}`. Keys never contain it.
const TEMPORARY_MARK: &str = ".tmp-";
/// A temporary file this old belongs to a write that will never finish
/// (the process died): a write in progress takes milliseconds.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub async fn open(root: &Path) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(root)
            .await
            .with_context(|| format!("DATA_DIR: cannot create payload directory {}", root.display()))?;
        // The root's own name, if it was just made, must outlive a power loss
        // too. Best effort: its parent may not be readable by this user.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            let parent = parent.to_path_buf();
            match tokio::task::spawn_blocking(move || sync_dir(&parent)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot sync the parent of DATA_DIR"),
                Err(e) => tracing::warn!(error = %e, "cannot sync the parent of DATA_DIR"),
            }
        }
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

/// Writes `bytes` under `path` so that once this returns the object
/// survives a power loss, and no reader ever sees a partial file under
/// `path`: temporary file, fsync, rename, fsync of the directory. Costs two
/// fsyncs per object (two more for a channel's first object: its new
/// directory's parents up to `root`).
fn write_durably(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(root);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!("{name}{TEMPORARY_MARK}{:016x}", rand::random::<u64>()));
    let create = || std::fs::File::create_new(&temporary);
    let mut file = match create() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| unavailable("create", dir, e))?;
            // The new directories' names live in their parents: sync those up to the root.
            for ancestor in dir.ancestors().skip(1) {
                sync_dir(ancestor).map_err(|e| unavailable("sync", ancestor, e))?;
                if ancestor == root {
                    break;
                }
            }
            create()
        }
        other => other,
    }
    .map_err(|e| unavailable("create", &temporary, e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| unavailable("write", &temporary, e))
        .and_then(|()| std::fs::rename(&temporary, path).map_err(|e| unavailable("rename", path, e)));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    sync_dir(dir).map_err(|e| unavailable("sync", dir, e))
}

/// Makes the entries of `dir` (names created, renamed or removed) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl PayloadStore for FsStore {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let root = self.root.clone();
        // One trip to the blocking pool for the whole write and its syncs.
        tokio::task::spawn_blocking(move || write_durably(&root, &path, &bytes))
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

/// A temporary file left by a write that never finished (the process
/// died between creating and renaming it) is removed once it is stale.
fn remove_if_stale(path: &Path, meta: &std::fs::Metadata) {
    let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
    if age.is_some_and(|age| age >= STALE_TEMPORARY) {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed a temporary file left by an unfinished write"),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temporary file"),
        }
    }
}

/// Files under `root/prefix`, as keys relative to `root`; temporary files
/// of writes in progress are not objects (stale ones are removed).
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
            if key.contains(TEMPORARY_MARK) {
                remove_if_stale(&path, &meta);
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
    async fn durable_put_leaves_no_temporary_file_and_list_removes_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        store.put("channels/a/1", Bytes::from_static(b"hi"), "text/plain").await.unwrap();
        let channel = dir.path().join("channels/a");
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&channel), ["1"], "only the object, under its final name");
        // What a crash between creating and renaming leaves: one long ago, one just now.
        let stale = channel.join("2.tmp-00000000deadbeef");
        std::fs::write(&stale, b"torn").unwrap();
        let long_ago = std::time::SystemTime::now() - STALE_TEMPORARY - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(long_ago).unwrap();
        std::fs::write(channel.join("3.tmp-00000000cafebabe"), b"in progress").unwrap();
        let keys: Vec<String> = store.list("channels/").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["channels/a/1"], "temporary files are not objects");
        assert_eq!(names(&channel), ["1", "3.tmp-00000000cafebabe"], "the stale one is removed, the fresh one kept");
    }

    #[tokio::test]
    async fn refuses_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        assert!(store.put("../evil", Bytes::new(), "x/y").await.is_err());
        assert!(store.get("/etc/passwd").await.is_err());
    }
}

//! Background tasks by name, watched. chantra's app.rs starts every
//! long-lived task of the process here, in one place (`start_tasks`): the
//! group-commit writer, the sweeper, PostgreSQL's notification listener and
//! loader, the rate limiter's cleanup. A task that panics or returns before
//! shutdown is logged by name (error level) and started again with backoff;
//! while it is down /readyz answers 503 naming it.
//!
//! Tasks that depend on each other start as one group (the listener feeds
//! the loader through a queue): when one member stops, the others are
//! stopped too and the group starts afresh.
//!
//! Shutdown is one [`CancellationToken`] for the whole process: servers,
//! streams, MCP sessions and these tasks all watch the same token.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// A task's work: runs until shutdown (returning earlier is a failure).
pub type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// First wait before a restart; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A group that ran this long before failing starts again from the first backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What /readyz shows of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: &'static str,
    pub running: bool,
    /// Times it was started again after stopping.
    pub restarts: u64,
}

#[derive(Default)]
struct Entry {
    running: bool,
    restarts: u64,
    abort: Option<AbortHandle>,
}

/// The process's supervised tasks; cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    entries: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the group `start()` returns and keeps it running until
    /// `shutdown` is cancelled: whenever a member stops, the whole group is
    /// stopped and started again after a backoff. Needs a tokio runtime.
    pub fn supervise(
        &self,
        shutdown: CancellationToken,
        mut start: impl FnMut() -> Vec<(&'static str, Job)> + Send + 'static,
    ) {
        let tasks = self.clone();
        // The first run starts now, so /readyz lists the tasks from the first request on.
        let (mut group, mut names) = tasks.launch(start());
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = Instant::now();
                let joined = tokio::select! {
                    () = shutdown.cancelled() => None,
                    joined = group.join_next_with_id() => joined,
                };
                if shutdown.is_cancelled() {
                    // Each member sees the shutdown itself and finishes its work
                    // (the commit writer runs on, so in-flight publishes commit).
                    group.detach_all();
                    return;
                }
                let (name, reason) = match joined {
                    Some(Ok((id, ()))) => (names.get(&id).copied(), "returned unexpectedly".to_owned()),
                    Some(Err(err)) => (names.get(&err.id()).copied(), failure(err)),
                    None => (None, "had nothing to run".to_owned()),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                let name: &'static str = name.unwrap_or("unknown");
                let group_names: Vec<&str> = names.values().copied().collect();
                tracing::error!(task = name, %reason, group = ?group_names, restart_in = ?backoff, "background task stopped; restarting it");
                crate::metrics::record_task_failure(name);
                group.shutdown().await;
                for member in names.values() {
                    tasks.stopped(member);
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tasks.count_restart(names.values().copied());
                (group, names) = tasks.launch(start());
            }
        });
    }

    /// Spawns a group's jobs and marks them running.
    fn launch(&self, jobs: Vec<(&'static str, Job)>) -> (JoinSet<()>, BTreeMap<tokio::task::Id, &'static str>) {
        let mut group = JoinSet::new();
        let mut names = BTreeMap::new();
        for (name, job) in jobs {
            let handle = group.spawn(job);
            names.insert(handle.id(), name);
            self.started(name, handle);
        }
        (group, names)
    }

    /// Every supervised task, by name.
    pub fn statuses(&self) -> Vec<TaskStatus> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().map(|(name, e)| TaskStatus { name, running: e.running, restarts: e.restarts }).collect()
    }

    /// Stops the named task as a crash would (tests use it to prove the
    /// supervision); false if no such task is running.
    #[doc(hidden)]
    pub fn kill(&self, name: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(name).and_then(|e| e.abort.as_ref()) {
            Some(abort) if !abort.is_finished() => {
                abort.abort();
                true
            }
            _ => false,
        }
    }

    fn started(&self, name: &'static str, abort: AbortHandle) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(name).or_default();
        entry.running = true;
        entry.abort = Some(abort);
    }

    fn stopped(&self, name: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(name) {
            entry.running = false;
            entry.abort = None;
        }
    }

    fn count_restart<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if let Some(entry) = entries.get_mut(name) {
                entry.restarts += 1;
            }
        }
    }
}

/// Why a task ended: its panic message, or that it was cancelled.
fn failure(err: tokio::task::JoinError) -> String {
    if err.is_cancelled() {
        return "was cancelled".to_owned();
    }
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text payload".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn crash() {
        panic!("boom")
    }

    #[tokio::test]
    async fn supervised_group_restarts_after_a_member_stops() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new();
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = starts.clone();
        tasks.supervise(shutdown, move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let first: Job = if n == 0 { Box::pin(crash()) } else { Box::pin(std::future::pending::<()>()) };
            let second: Job = Box::pin(std::future::pending::<()>());
            vec![("first", first), ("second", second)]
        });
        // The first run panics at once; the group is down during the backoff, then back.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(tasks.statuses().iter().all(|s| !s.running), "{:?}", tasks.statuses());
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(500)).await;
        let statuses = tasks.statuses();
        assert!(statuses.iter().all(|s| s.running && s.restarts == 1), "{statuses:?}");
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(tasks.kill("second"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(tasks.statuses().iter().all(|s| !s.running));
    }
}

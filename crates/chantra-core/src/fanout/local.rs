//! The in-process bus (SQLite: one process). Nothing crosses a process
//! boundary: the writer delivers to this process's hub right after its
//! commit, holding a sequencer so deliveries keep commit (= id) order.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::NoticeBus;

#[derive(Default)]
pub struct LocalBus {
    sequencer: Arc<Mutex<()>>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl NoticeBus for LocalBus {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn sequence(&self) -> Option<OwnedMutexGuard<()>> {
        Some(self.sequencer.clone().lock_owned().await)
    }
}

//! Identical reads asked at the same time share one query ("single
//! flight"). A reconnect storm — thousands of readers of one channel coming
//! back with the same Last-Event-ID after a restart or a network blip —
//! otherwise asks the database the same three questions thousands of times
//! (the channel row, the resume plan, the first replay page).
//!
//! A caller may share only a query that has not *started* yet: a reader
//! joins the live feed before it asks, and the answer must cover everything
//! committed before that join (what the feed may have missed). A query that
//! started before the caller arrived could predate a commit the caller
//! depends on; one that starts after it cannot. So, per key, one query runs
//! at a time, and everyone who asks while it runs waits for the *next*
//! one, which starts when it ends and answers them all. A caller alone pays
//! nothing extra; under a storm a key costs one query per round trip
//! instead of one per caller.
//!
//! What is held is bounded by the callers themselves: one entry per key
//! with a query queued or running, removed when the last one ends (or its
//! leader gives up). A failed query is not shared: each waiting caller
//! then asks on its own and gets its own error.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// How a shared query ended, as its waiting callers see it.
#[derive(Clone)]
enum Outcome<T> {
    Pending,
    Done(T),
    /// The query failed: each caller asks again on its own.
    Failed,
}

/// Per key: the query that waits to start (its answer, for callers to
/// join), and the turn every query of the key takes in order.
struct Slot<T> {
    next: Option<watch::Receiver<Outcome<T>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Slot<T> {
    /// Takes `flight` (a query, by its answer's channel) off the queue, if
    /// it is still the one waiting.
    fn unqueue(&mut self, flight: &watch::Receiver<Outcome<T>>) {
        if self.next.as_ref().is_some_and(|queued| queued.same_channel(flight)) {
            self.next = None;
        }
    }
}

/// Shares identical concurrent reads by key; see the module docs.
pub(super) struct Coalescer<K, T> {
    slots: Mutex<HashMap<K, Slot<T>>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Coalescer<K, T> {
    fn default() -> Self {
        Self { slots: Mutex::default() }
    }
}

enum Role<T> {
    /// Runs the next query of the key (`flight` names it in the slot),
    /// answering `tx`'s receivers.
    Lead { flight: watch::Receiver<Outcome<T>>, tx: watch::Sender<Outcome<T>>, turn: Arc<tokio::sync::Mutex<()>> },
    /// Waits for the answer of a query not yet started.
    Follow(watch::Receiver<Outcome<T>>),
}

impl<K: Eq + Hash + Clone, T: Clone> Coalescer<K, T> {
    /// The answer of `query` for `key`, from a query started after this call.
    pub(super) async fn get<E, F, Fut>(&self, key: K, query: F) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            match self.role(&key) {
                Role::Follow(mut rx) => {
                    let answer = match rx.wait_for(|o| !matches!(o, Outcome::Pending)).await {
                        Ok(outcome) => match &*outcome {
                            Outcome::Done(value) => Some(value.clone()),
                            _ => None,
                        },
                        // Its leader gave up before answering (its caller went away): ask again.
                        Err(_) => continue,
                    };
                    return match answer {
                        Some(value) => Ok(value),
                        None => query().await,
                    };
                }
                Role::Lead { flight, tx, turn } => return self.lead(&key, flight, tx, turn, &query).await,
            }
        }
    }

    fn role(&self, key: &K) -> Role<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots
            .entry(key.clone())
            .or_insert_with(|| Slot { next: None, turn: Arc::new(tokio::sync::Mutex::new(())) });
        if let Some(rx) = &slot.next
            && rx.has_changed().is_ok()
        {
            return Role::Follow(rx.clone());
        }
        let (tx, flight) = watch::channel(Outcome::Pending);
        slot.next = Some(flight.clone());
        Role::Lead { flight, tx, turn: slot.turn.clone() }
    }

    async fn lead<E, F, Fut>(
        &self,
        key: &K,
        flight: watch::Receiver<Outcome<T>>,
        tx: watch::Sender<Outcome<T>>,
        turn: Arc<tokio::sync::Mutex<()>>,
        query: &F,
    ) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Cleans up however this ends, a dropped (cancelled) caller included.
        let leave = Leave { coalescer: self, key, flight };
        let running = turn.lock_owned().await;
        // Started: whoever asks from now on waits for the next query.
        if let Some(slot) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(key) {
            slot.unqueue(&leave.flight);
        }
        let result = query().await;
        let _ = tx.send(match &result {
            Ok(value) => Outcome::Done(value.clone()),
            Err(_) => Outcome::Failed,
        });
        drop(running);
        result
    }

    /// Keys with a query queued or running (tests: nothing is left behind).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

/// A leader leaving: its query is no longer queued, and a key with nothing
/// queued and no one taking its turn is forgotten.
struct Leave<'a, K: Eq + Hash + Clone, T: Clone> {
    coalescer: &'a Coalescer<K, T>,
    key: &'a K,
    flight: watch::Receiver<Outcome<T>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Drop for Leave<'_, K, T> {
    fn drop(&mut self) {
        let mut slots = self.coalescer.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = slots.get_mut(self.key) else { return };
        slot.unqueue(&self.flight);
        // The map holds one handle of the turn; each leader holds another until it leaves.
        // (Our own handle was moved into the lock guard, dropped before this guard.)
        if slot.next.is_none() && Arc::strong_count(&slot.turn) == 1 {
            slots.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A query that counts its runs, takes a while, and answers the number
    /// of runs so far (so a caller can tell which run answered it).
    async fn slow(runs: &AtomicUsize) -> Result<usize, ()> {
        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(run)
    }

    type Shared = Arc<Coalescer<u32, usize>>;

    /// A caller asking `key` through `slow`, as its own task.
    fn ask(coalescer: &Shared, runs: &Arc<AtomicUsize>, key: u32) -> tokio::task::JoinHandle<Result<usize, ()>> {
        let runs = runs.clone();
        ask_with(coalescer, key, move || {
            let runs = runs.clone();
            async move { slow(&runs).await }
        })
    }

    /// A caller asking `key` through `query`, as its own task.
    fn ask_with<E, F, Fut>(coalescer: &Shared, key: u32, query: F) -> tokio::task::JoinHandle<Result<usize, E>>
    where
        E: Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, E>> + Send,
    {
        let coalescer = coalescer.clone();
        tokio::spawn(async move { coalescer.get(key, query).await })
    }

    #[tokio::test(start_paused = true)]
    async fn callers_during_a_query_share_the_next_one() {
        let coalescer: Shared = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let first = ask(&coalescer, &runs, 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // 100 callers arrive while the first query runs: they must not take
        // its answer (it started before them), and they share one more.
        let later: Vec<_> = (0..100).map(|_| ask(&coalescer, &runs, 1)).collect();
        assert_eq!(first.await.unwrap(), Ok(1));
        for caller in later {
            assert_eq!(caller.await.unwrap(), Ok(2), "answered by the query started after it asked");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(coalescer.keys(), 0, "nothing left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn other_keys_do_not_wait() {
        let coalescer: Shared = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..3).map(|key| ask(&coalescer, &runs, key)).collect();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(callers.iter().all(|c| c.is_finished()), "three keys, three queries at once");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_query_is_asked_again_by_each_waiting_caller() {
        let coalescer: Shared = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let failing = |runs: Arc<AtomicUsize>| async move {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if run <= 2 { Err(run) } else { Ok(run) }
        };
        let ask_failing = || {
            let runs = runs.clone();
            ask_with(&coalescer, 1, move || failing(runs.clone()))
        };
        let first = ask_failing();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiting: Vec<_> = (0..3).map(|_| ask_failing()).collect();
        assert_eq!(first.await.unwrap(), Err(1));
        let mut answers: Vec<_> = Vec::new();
        for caller in waiting {
            answers.push(caller.await.unwrap());
        }
        // The shared (second) query failed: its leader got the error, the
        // two others asked again, each on its own.
        answers.sort();
        assert_eq!(answers, vec![Ok(3), Ok(4), Err(2)]);
        assert_eq!(coalescer.keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_gives_up_hands_over() {
        let coalescer: Shared = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let first = ask(&coalescer, &runs, 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The next query's leader is cancelled while it waits for its turn.
        let leader = ask(&coalescer, &runs, 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let follower = ask(&coalescer, &runs, 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        leader.abort();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(follower.await.unwrap(), Ok(2), "the follower ran the query itself");
        assert_eq!(coalescer.keys(), 0);
    }
}

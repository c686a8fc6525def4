//! A fleet of subscribers: opens them (a bounded number of connects at a
//! time, honouring `Retry-After` on 429/503), follows their streams, records
//! what each one received, drops them all at once and reconnects them with
//! `Last-Event-ID`.
//!
//! A process may hold fewer sockets than a large run needs (the file
//! descriptor limit), so the fleet is either local (tasks in this process) or
//! remote: worker processes of this same binary (`--worker`), each running a
//! local fleet over a share of the subscribers and answering commands as JSON
//! lines on stdin/stdout. Both answer the same four operations.

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{Semaphore, mpsc};

use crate::message::{self, Format, MAX_SEQ};
use crate::sse::{self, Endpoint, Refused};
use crate::stats::{Histogram, HistogramData, Tally, merge_tally};

/// How every subscriber of a fleet behaves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FleetConfig {
    pub format: Format,
    /// Channels the subscribers are spread over (indexes 0..channels).
    pub channels: usize,
    /// Limit for one connection attempt (connect, request, response head).
    pub attempt_timeout_secs: u64,
    /// Limit for a whole open/reconnect operation.
    pub deadline_secs: u64,
    /// Retries of one subscriber after a 429/503 or an I/O error, and resumes
    /// after the server closed a stream.
    pub max_retries: u32,
    /// Resume with Last-Event-ID when the server closes a stream (a real
    /// EventSource does); when false, a closed stream stays closed.
    pub resume_on_close: bool,
}

/// One subscriber: its URL, its channel's index and the source address it binds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubSpec {
    pub url: String,
    pub channel: u32,
    pub source: Option<IpAddr>,
}

/// The outcome of opening (or reconnecting) every subscriber.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnectReport {
    pub requested: u64,
    pub connected: u64,
    pub failed: u64,
    /// Still trying when the operation's deadline passed.
    pub pending: u64,
    /// Wall time until every subscriber had connected or given up.
    pub all_ms: u64,
    /// Wall time until the last successful connect.
    pub last_connected_ms: u64,
    /// Per subscriber: from its first attempt to its 200, retries included.
    pub time: HistogramData,
    /// Every attempt's answer: "200", "429", "503 retry-after", "io: …".
    pub statuses: Tally,
    pub retries: u64,
}

impl ConnectReport {
    fn merge(&mut self, other: &ConnectReport) {
        self.requested += other.requested;
        self.connected += other.connected;
        self.failed += other.failed;
        self.pending += other.pending;
        self.all_ms = self.all_ms.max(other.all_ms);
        self.last_connected_ms = self.last_connected_ms.max(other.last_connected_ms);
        self.time.merge(&other.time);
        merge_tally(&mut self.statuses, &other.statuses);
        self.retries += other.retries;
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub delivered: u64,
    pub open: u64,
}

/// What the subscribers received, checked against what was published.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub subscribers: u64,
    pub expected: u64,
    /// Distinct messages received (each counted once per subscriber).
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Messages that arrived after one with a higher sequence number.
    pub out_of_order: u64,
    /// Subscribers that got every published message exactly once, in order.
    pub exact: u64,
    pub open_at_end: u64,
    /// Streams the server closed (or that failed) after they had opened.
    pub closes: Tally,
    /// Attempts made while resuming after such a close.
    pub resume_statuses: Tally,
    pub gap_events: u64,
    pub other_events: Tally,
    pub keepalives: u64,
    pub unparsed: u64,
    pub latency: HistogramData,
}

impl Outcome {
    fn merge(&mut self, other: &Outcome) {
        self.subscribers += other.subscribers;
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.exact += other.exact;
        self.open_at_end += other.open_at_end;
        merge_tally(&mut self.closes, &other.closes);
        merge_tally(&mut self.resume_statuses, &other.resume_statuses);
        self.gap_events += other.gap_events;
        merge_tally(&mut self.other_events, &other.other_events);
        self.keepalives += other.keepalives;
        self.unparsed += other.unparsed;
        self.latency.merge(&other.latency);
    }
}

/// The commands a worker process answers, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Command {
    Open { concurrency: usize },
    Progress,
    Drop,
    Finish { expected_by_channel: Vec<u64> },
}

/// The first line a worker reads.
#[derive(Serialize, Deserialize)]
struct WorkerInit {
    config: FleetConfig,
    subscribers: Vec<SubSpec>,
}

// ------------------------------------------------------------------ local

/// What one subscriber has seen so far; survives drops and reconnects.
#[derive(Default)]
struct SubState {
    /// One bit per sequence number received.
    seen: Vec<u64>,
    max_seq: Option<u64>,
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    last_event_id: Option<String>,
    open: bool,
    closes: Tally,
    resume_statuses: Tally,
    gap_events: u64,
    other_events: Tally,
    unparsed: u64,
}

impl SubState {
    /// Records message `seq`; true when it is new for this subscriber.
    fn record(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return false;
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        if self.max_seq.is_some_and(|max| seq < max) {
            self.out_of_order += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(seq, |max| max.max(seq)));
        true
    }
}

struct Sub {
    endpoint: Endpoint,
    channel: u32,
    source: Option<IpAddr>,
    state: Arc<Mutex<SubState>>,
}

/// Shared by every subscriber task of a process.
#[derive(Default)]
struct Shared {
    latency: Histogram,
    delivered: AtomicU64,
    keepalives: AtomicU64,
}

/// What a subscriber task reports once its connect phase ends.
struct Connected {
    ok: bool,
    elapsed: Duration,
    statuses: Tally,
    retries: u64,
}

pub struct LocalFleet {
    config: Arc<FleetConfig>,
    subs: Vec<Sub>,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(state: &Mutex<SubState>) -> std::sync::MutexGuard<'_, SubState> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LocalFleet {
    pub fn new(config: FleetConfig, specs: Vec<SubSpec>) -> Result<Self, String> {
        let mut endpoints: std::collections::HashMap<String, Endpoint> = std::collections::HashMap::new();
        let mut subs = Vec::with_capacity(specs.len());
        for spec in specs {
            let endpoint = match endpoints.get(&spec.url) {
                Some(e) => e.clone(),
                None => {
                    let e = Endpoint::parse(&spec.url)?;
                    endpoints.insert(spec.url.clone(), e.clone());
                    e
                }
            };
            subs.push(Sub { endpoint, channel: spec.channel, source: spec.source, state: Default::default() });
        }
        Ok(Self { config: Arc::new(config), subs, shared: Default::default(), tasks: Vec::new() })
    }

    /// Starts every subscriber (resuming from its last event id, if any) and
    /// waits until each has connected or given up, or the deadline passes.
    pub async fn open(&mut self, concurrency: usize) -> ConnectReport {
        self.drop_all().await;
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        for sub in &self.subs {
            let task = SubscriberTask {
                endpoint: sub.endpoint.clone(),
                source: sub.source,
                state: sub.state.clone(),
                shared: self.shared.clone(),
                config: self.config.clone(),
            };
            let (gate, tx) = (gate.clone(), tx.clone());
            self.tasks.push(tokio::spawn(async move { task.run(gate, tx).await }));
        }
        drop(tx);
        let mut report = ConnectReport { requested: self.subs.len() as u64, ..Default::default() };
        let times = Histogram::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.config.deadline_secs);
        let mut answered = 0;
        while answered < self.subs.len() {
            let Ok(Some(done)) = tokio::time::timeout_at(deadline, rx.recv()).await else { break };
            answered += 1;
            if done.ok {
                report.connected += 1;
                report.last_connected_ms = started.elapsed().as_millis() as u64;
                times.record(done.elapsed.as_micros() as u64);
            } else {
                report.failed += 1;
            }
            merge_tally(&mut report.statuses, &done.statuses);
            report.retries += done.retries;
        }
        report.pending = (self.subs.len() - answered) as u64;
        report.all_ms = started.elapsed().as_millis() as u64;
        report.time = times.data();
        report
    }

    pub fn progress(&self) -> Progress {
        Progress {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            open: self.subs.iter().filter(|s| lock(&s.state).open).count() as u64,
        }
    }

    /// Closes every stream at once (the client side of a mass disconnect).
    pub async fn drop_all(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        for sub in &self.subs {
            lock(&sub.state).open = false;
        }
    }

    /// Stops every subscriber and checks what each received against the
    /// number of messages published to its channel.
    pub async fn finish(&mut self, expected_by_channel: &[u64]) -> Outcome {
        let open_at_end = self.progress().open;
        self.drop_all().await;
        let mut outcome = Outcome {
            subscribers: self.subs.len() as u64,
            open_at_end,
            keepalives: self.shared.keepalives.load(Ordering::Relaxed),
            latency: self.shared.latency.data(),
            ..Default::default()
        };
        for sub in &self.subs {
            let state = lock(&sub.state);
            let expected = expected_by_channel.get(sub.channel as usize).copied().unwrap_or(0);
            outcome.expected += expected;
            outcome.delivered += state.unique;
            outcome.missing += expected.saturating_sub(state.unique);
            outcome.duplicates += state.duplicates;
            outcome.out_of_order += state.out_of_order;
            if state.unique == expected && state.duplicates == 0 && state.out_of_order == 0 {
                outcome.exact += 1;
            }
            merge_tally(&mut outcome.closes, &state.closes);
            merge_tally(&mut outcome.resume_statuses, &state.resume_statuses);
            outcome.gap_events += state.gap_events;
            merge_tally(&mut outcome.other_events, &state.other_events);
            outcome.unparsed += state.unparsed;
        }
        outcome
    }
}

struct SubscriberTask {
    endpoint: Endpoint,
    source: Option<IpAddr>,
    state: Arc<Mutex<SubState>>,
    shared: Arc<Shared>,
    config: Arc<FleetConfig>,
}

impl SubscriberTask {
    async fn run(self, gate: Arc<Semaphore>, report: mpsc::UnboundedSender<Connected>) {
        let permit = gate.acquire_owned().await.ok();
        let mut stream = self.connect(Some(report)).await;
        drop(permit);
        let mut resumes = 0;
        while let Some(open) = stream {
            lock(&self.state).open = true;
            let ended = open.follow(|event| self.on_event(event), || self.on_comment()).await;
            let reason = match ended {
                Ok(()) => "closed by the server".to_owned(),
                Err(e) => format!("io: {e}"),
            };
            {
                let mut state = lock(&self.state);
                state.open = false;
                *state.closes.entry(reason).or_default() += 1;
            }
            resumes += 1;
            if !self.config.resume_on_close || resumes > self.config.max_retries {
                return;
            }
            stream = self.connect(None).await;
        }
    }

    /// Connection attempts until a 200, retrying 429/503 (after their
    /// Retry-After) and I/O errors; sends the connect report when asked to.
    async fn connect(&self, report: Option<mpsc::UnboundedSender<Connected>>) -> Option<sse::Stream> {
        let started = Instant::now();
        let attempt_timeout = Duration::from_secs(self.config.attempt_timeout_secs);
        let mut statuses = Tally::new();
        let mut retries = 0u64;
        let result = loop {
            let last_event_id = lock(&self.state).last_event_id.clone();
            let outcome = sse::open(&self.endpoint, self.source, last_event_id.as_deref(), attempt_timeout).await;
            let wait = match &outcome {
                Ok(_) => None,
                Err(Refused::Status { code: 429 | 503, retry_after }) => Some(retry_after.unwrap_or(1).clamp(1, 30)),
                Err(Refused::Io(_)) => Some(1),
                Err(Refused::Status { .. }) => None,
            };
            let label = match &outcome {
                Ok(_) => "200".to_owned(),
                Err(refused) => refused.label(),
            };
            *statuses.entry(label).or_default() += 1;
            match (outcome, wait) {
                (Ok(stream), _) => break Some(stream),
                (Err(_), Some(secs)) if retries < u64::from(self.config.max_retries) => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                (Err(_), _) => break None,
            }
        };
        match report {
            Some(tx) => {
                let ok = result.is_some();
                let _ = tx.send(Connected { ok, elapsed: started.elapsed(), statuses, retries });
            }
            None => merge_tally(&mut lock(&self.state).resume_statuses, &statuses),
        }
        result
    }

    fn on_event(&self, event: sse::Event<'_>) {
        let mut state = lock(&self.state);
        if let Some(id) = event.id
            && state.last_event_id.as_deref() != Some(id)
        {
            state.last_event_id = Some(id.to_owned());
        }
        match event.event {
            None | Some("message") => {}
            Some("gap") => {
                state.gap_events += 1;
                return;
            }
            Some(other) => {
                *state.other_events.entry(other.to_owned()).or_default() += 1;
                return;
            }
        }
        match message::decode(event.data, self.config.format) {
            Some((seq, sent)) if seq <= MAX_SEQ => {
                if state.record(seq) {
                    drop(state);
                    self.shared.latency.record(message::now_micros().saturating_sub(sent));
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => state.unparsed += 1,
        }
    }

    fn on_comment(&self) {
        self.shared.keepalives.fetch_add(1, Ordering::Relaxed);
    }
}

// ----------------------------------------------------------------- remote

struct Worker {
    child: tokio::process::Child,
    /// Dropped (closing the pipe) to tell the worker to stop.
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Subscribers spread over worker processes of this binary.
pub struct RemoteFleet {
    workers: Vec<Worker>,
}

impl RemoteFleet {
    pub async fn spawn(config: &FleetConfig, specs: Vec<SubSpec>, processes: usize) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let per = specs.len().div_ceil(processes.max(1)).max(1);
        let mut workers = Vec::new();
        for share in specs.chunks(per) {
            let mut child = tokio::process::Command::new(&exe)
                .arg("--worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("spawning a worker: {e}"))?;
            let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("worker without pipes".to_owned());
            };
            let init = WorkerInit { config: config.clone(), subscribers: share.to_vec() };
            let mut line = serde_json::to_vec(&init).map_err(|e| e.to_string())?;
            line.push(b'\n');
            stdin.write_all(&line).await.map_err(|e| format!("worker stdin: {e}"))?;
            workers.push(Worker { child, stdin: Some(stdin), stdout: BufReader::new(stdout).lines() });
        }
        Ok(Self { workers })
    }

    /// Sends one command to every worker and reads every answer.
    async fn call<T: for<'de> Deserialize<'de>>(&mut self, command: &Command) -> Result<Vec<T>, String> {
        let mut line = serde_json::to_vec(command).map_err(|e| e.to_string())?;
        line.push(b'\n');
        for worker in &mut self.workers {
            let stdin = worker.stdin.as_mut().ok_or("worker already stopped")?;
            stdin.write_all(&line).await.map_err(|e| format!("worker stdin: {e}"))?;
        }
        let answers = futures::future::join_all(self.workers.iter_mut().map(|w| w.stdout.next_line())).await;
        answers
            .into_iter()
            .map(|answer| match answer {
                Ok(Some(text)) => serde_json::from_str(&text).map_err(|e| format!("worker answer: {e}")),
                Ok(None) => Err("a worker exited".to_owned()),
                Err(e) => Err(format!("worker stdout: {e}")),
            })
            .collect()
    }

    async fn shutdown(&mut self) {
        for worker in &mut self.workers {
            worker.stdin.take();
        }
        for worker in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await.is_err() {
                let _ = worker.child.kill().await;
            }
        }
    }
}

/// The body of `chantra-load --worker`: a local fleet driven over stdin/stdout.
pub async fn worker_main() -> Result<(), String> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let init = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("no init line")?;
    let init: WorkerInit = serde_json::from_str(&init).map_err(|e| format!("init: {e}"))?;
    let mut fleet = LocalFleet::new(init.config, init.subscribers)?;
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let command: Command = serde_json::from_str(&line).map_err(|e| format!("command: {e}"))?;
        let answer = match command {
            Command::Open { concurrency } => serde_json::to_string(&fleet.open(concurrency).await),
            Command::Progress => serde_json::to_string(&fleet.progress()),
            Command::Drop => {
                fleet.drop_all().await;
                serde_json::to_string(&fleet.progress())
            }
            Command::Finish { expected_by_channel } => serde_json::to_string(&fleet.finish(&expected_by_channel).await),
        }
        .map_err(|e| e.to_string())?;
        stdout.write_all(format!("{answer}\n").as_bytes()).await.map_err(|e| e.to_string())?;
        stdout.flush().await.map_err(|e| e.to_string())?;
    }
    fleet.drop_all().await;
    Ok(())
}

// ------------------------------------------------------------------ either

pub enum Fleet {
    Local(LocalFleet),
    Remote(RemoteFleet),
}

impl Fleet {
    /// A local fleet, or worker processes holding at most `per_process` each.
    pub async fn new(config: FleetConfig, specs: Vec<SubSpec>, per_process: usize) -> Result<Self, String> {
        let processes = specs.len().div_ceil(per_process.max(1));
        if processes <= 1 {
            Ok(Fleet::Local(LocalFleet::new(config, specs)?))
        } else {
            eprintln!("chantra-load: {} subscribers over {processes} worker processes", specs.len());
            Ok(Fleet::Remote(RemoteFleet::spawn(&config, specs, processes).await?))
        }
    }

    /// Opens (or reconnects with Last-Event-ID) every subscriber; `concurrency`
    /// connects at a time per process.
    pub async fn open(&mut self, concurrency: usize) -> Result<ConnectReport, String> {
        match self {
            Fleet::Local(fleet) => Ok(fleet.open(concurrency).await),
            Fleet::Remote(fleet) => {
                let mut total = ConnectReport::default();
                for part in fleet.call::<ConnectReport>(&Command::Open { concurrency }).await? {
                    total.merge(&part);
                }
                Ok(total)
            }
        }
    }

    pub async fn progress(&mut self) -> Result<Progress, String> {
        match self {
            Fleet::Local(fleet) => Ok(fleet.progress()),
            Fleet::Remote(fleet) => {
                Ok(fleet.call::<Progress>(&Command::Progress).await?.iter().fold(Progress::default(), |sum, p| {
                    Progress { delivered: sum.delivered + p.delivered, open: sum.open + p.open }
                }))
            }
        }
    }

    pub async fn drop_all(&mut self) -> Result<(), String> {
        match self {
            Fleet::Local(fleet) => fleet.drop_all().await,
            Fleet::Remote(fleet) => {
                fleet.call::<Progress>(&Command::Drop).await?;
            }
        }
        Ok(())
    }

    /// Stops every subscriber (and worker) and returns what they received.
    pub async fn finish(mut self, expected_by_channel: Vec<u64>) -> Result<Outcome, String> {
        match &mut self {
            Fleet::Local(fleet) => Ok(fleet.finish(&expected_by_channel).await),
            Fleet::Remote(fleet) => {
                let parts = fleet.call::<Outcome>(&Command::Finish { expected_by_channel }).await;
                fleet.shutdown().await;
                let mut total = Outcome::default();
                for part in parts? {
                    total.merge(&part);
                }
                Ok(total)
            }
        }
    }

    /// Waits until `expected` distinct deliveries arrived, or `limit` passed.
    pub async fn wait_for(&mut self, expected: u64, limit: Duration) -> Result<Progress, String> {
        let deadline = Instant::now() + limit;
        loop {
            let progress = self.progress().await?;
            if progress.delivered >= expected || Instant::now() >= deadline {
                return Ok(progress);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_duplicates_and_order() {
        let mut state = SubState::default();
        assert!(state.record(0));
        assert!(state.record(2));
        assert!(state.record(1));
        assert!(!state.record(2));
        assert!(state.record(200));
        assert_eq!((state.unique, state.duplicates, state.out_of_order), (4, 1, 1));
    }
}

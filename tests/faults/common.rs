//! What every fault case shares: bounded waits, /proc figures and the few
//! REST calls the cases make. Free ports, the test database, the launcher
//! and /proc readings come from chantra-testkit.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use chantra_testkit::{BASE_URL, free_port, proc_kib};

/// `bytes` random bytes from the kernel, as hex (secrets and key ids of a private garage).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `check` every `every` until it holds; panics naming `what` after `limit`.
/// Returns how long it took.
pub async fn wait_until(what: &str, limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// Samples a process's VmRSS every 100 ms in the background; `peak_kib()` is the largest seen.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            while let Some(rss) = proc_kib(pid, "VmRSS") {
                seen.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { peak, task }
    }

    pub fn peak_kib(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client for API calls: `timeout` per request, and idle pooled
/// connections dropped after a second — before the server's header read
/// timeout (which also closes idle keep-alive connections) can, so that a
/// request never races a connection being closed.
pub fn api_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).pool_idle_timeout(Duration::from_secs(1)).build().unwrap()
}

/// The server's own count of open streams (`chantra_streams_active` at
/// /metrics of a role started with METRICS_ENABLED=true).
pub async fn streams_active(role_url: &str) -> u64 {
    let text = api_client(Duration::from_secs(10))
        .get(format!("{role_url}/metrics"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    let line = text.lines().find(|l| l.starts_with("chantra_streams_active "));
    let value = line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok());
    value.unwrap_or_else(|| panic!("no chantra_streams_active in /metrics:\n{text}")) as u64
}

/// Creates a channel through a rest role at `rest` (`http://addr`).
pub async fn create_channel(client: &reqwest::Client, rest: &str, visibility: &str) -> Value {
    let response = client
        .post(format!("{rest}/v1/channels"))
        .json(&json!({ "visibility": visibility }))
        .send()
        .await
        .expect("create a channel");
    assert_eq!(response.status(), 201, "creating a channel");
    response.json().await.unwrap()
}

/// The stream path of a channel (its URL without the configured base).
pub fn stream_path(channel: &Value) -> String {
    channel["url"].as_str().unwrap().strip_prefix(BASE_URL).expect("the configured base URL").to_owned()
}

/// The `Retry-After` header of a response, as text.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A `Retry-After` that a client can act on: whole seconds, at least 1.
pub fn valid_retry_after(value: Option<&str>) -> bool {
    value.and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|secs| secs >= 1)
}

/// Minimum, median and maximum of some durations, for the printed figures.
pub fn spread(values: &[Duration]) -> (Duration, Duration, Duration) {
    if values.is_empty() {
        return Default::default();
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    (sorted[0], sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

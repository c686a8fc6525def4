//! The publishing side: URL templates, channel creation (Chantra's API) or
//! naming (nchan), and a pool of concurrent publishers that sends numbered,
//! time-stamped payloads at a set rate or as fast as the server takes them.

use std::net::{IpAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::message;
use crate::sse::ensure_loopback;
use crate::stats::{Histogram, HistogramData, Tally};

/// Where channels are created, read and published, as templates with
/// `{channel}` and `{token}`.
pub struct Target {
    pub create_url: Option<String>,
    /// Channel name when none is created; `{run}` becomes a random run id and
    /// several channels get `-<index>` appended.
    pub channel_name: String,
    pub subscribe_url: String,
    /// One template or several separated by spaces (e.g. two rest processes):
    /// each channel's messages alternate over them (see `publish`).
    pub publish_url: String,
    pub publish_headers: Vec<String>,
}

/// One channel: its id (or name) and its publish token, if it has one.
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub token: String,
}

pub fn fill(template: &str, channel: &Channel) -> String {
    template.replace("{channel}", &channel.id).replace("{token}", &channel.token)
}

/// Refuses a URL whose host is not a loopback address.
pub fn check_loopback_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    for addr in (host.trim_matches(['[', ']']), port).to_socket_addrs().map_err(|e| format!("{url}: {e}"))? {
        ensure_loopback(addr.ip(), url)?;
    }
    Ok(())
}

pub fn client(source: Option<IpAddr>, pool: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .local_address(source)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

impl Target {
    /// The publish URL templates (one per rest process).
    pub fn publish_templates(&self) -> Vec<&str> {
        self.publish_url.split_whitespace().collect()
    }

    /// Creates `count` channels through the API (`concurrency` requests at a
    /// time), or names them when there is no create URL.
    pub async fn channels(
        &self,
        client: &reqwest::Client,
        count: usize,
        concurrency: usize,
    ) -> Result<Vec<Channel>, String> {
        let run_id = format!("{:08x}", rand::random::<u32>());
        let base = self.channel_name.replace("{run}", &run_id);
        let Some(create_url) = &self.create_url else {
            return Ok((0..count)
                .map(|i| Channel {
                    id: if count == 1 { base.clone() } else { format!("{base}-{i}") },
                    token: String::new(),
                })
                .collect());
        };
        check_loopback_url(create_url)?;
        let created: Vec<Result<Channel, String>> = futures::stream::iter(0..count)
            .map(|_| async move {
                let response = client.post(create_url).send().await.map_err(|e| format!("create channel: {e}"))?;
                let status = response.status();
                if !status.is_success() {
                    let body = response.text().await.unwrap_or_default();
                    return Err(format!("create channel: {status} {body}"));
                }
                let created: serde_json::Value = response.json().await.map_err(|e| format!("create channel: {e}"))?;
                let field = |name: &str| created[name].as_str().map(str::to_owned);
                Ok(Channel {
                    id: field("channel_id").ok_or("create channel: no channel_id in the answer")?,
                    token: field("publish_token").unwrap_or_default(),
                })
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        created.into_iter().collect()
    }
}

/// How many messages to publish, how fast, and how big.
#[derive(Clone, Debug)]
pub struct Plan {
    /// At most this many messages (the run also stops at `duration`).
    pub total: u64,
    /// Messages per second over all publishers; None = as fast as possible.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    /// Requests in flight at once.
    pub publishers: usize,
    pub payload_bytes: usize,
    /// Sequence number of each channel's first message in this phase.
    pub first_seq: u64,
}

/// What the publishers did.
#[derive(Debug, Default)]
pub struct Published {
    pub attempted: u64,
    pub ok: u64,
    pub ok_by_channel: Vec<u64>,
    /// Answers by status ("201", "503", "io: …").
    pub statuses: Tally,
    /// Request latency, send to last byte of the answer.
    pub latency: HistogramData,
    pub elapsed: Duration,
    /// The next phase's `first_seq`.
    pub next_seq: u64,
}

impl Published {
    pub fn report(&self) -> serde_json::Value {
        let secs = self.elapsed.as_secs_f64();
        serde_json::json!({
            "attempted": self.attempted,
            "ok": self.ok,
            "errors": self.attempted - self.ok,
            "statuses": self.statuses,
            "elapsed_s": (secs * 100.0).round() / 100.0,
            "per_s": if secs > 0.0 { (self.ok as f64 / secs).round() } else { 0.0 },
            "latency_ms": self.latency.summary_ms(),
        })
    }
}

/// One channel's publish URLs (one per template) and headers, filled in.
type Destination = (Vec<String>, Vec<(String, String)>);

/// Which of `urls` publish URLs carries round `round` of `channel`: each
/// channel's messages alternate over every URL, and the channels start at
/// different URLs, so the load is even however many channels there are.
fn url_index(channel: usize, round: u64, urls: usize) -> usize {
    (channel as u64 + round).rem_euclid(urls.max(1) as u64) as usize
}

/// Publishes message `i` of the plan to channel `i % channels` with sequence
/// number `first_seq + i / channels`, so every channel sees its own
/// sequence 0, 1, 2, … round-robin. With several publish URLs, message `i`
/// goes through URL `(channel + round) % urls`: each channel's messages
/// alternate over every rest process, and so does the load, whatever the
/// number of channels.
pub async fn publish(
    client: &reqwest::Client,
    target: &Target,
    channels: &[Channel],
    plan: &Plan,
) -> Result<Published, String> {
    if channels.is_empty() {
        return Err("no channel to publish to".to_owned());
    }
    let templates = target.publish_templates();
    if templates.is_empty() {
        return Err("--publish-url is empty".to_owned());
    }
    for template in &templates {
        check_loopback_url(&fill(template, &channels[0]))?;
    }
    let destinations: Arc<Vec<Destination>> = Arc::new(
        channels
            .iter()
            .map(|channel| {
                let headers = target
                    .publish_headers
                    .iter()
                    .filter_map(|h| h.split_once(':'))
                    .map(|(name, value)| (name.trim().to_owned(), fill(value.trim(), channel)))
                    .collect();
                (templates.iter().map(|t| fill(t, channel)).collect(), headers)
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let ok_by_channel: Arc<Vec<AtomicU64>> = Arc::new(channels.iter().map(|_| AtomicU64::new(0)).collect());
    let latency = Arc::new(Histogram::default());
    let statuses = Arc::new(std::sync::Mutex::new(Tally::new()));
    let started = Instant::now();
    let stop_at = plan.duration.map(|d| started + d);
    let mut workers = Vec::new();
    for _ in 0..plan.publishers.max(1) {
        let (client, plan, destinations) = (client.clone(), plan.clone(), destinations.clone());
        let (next, ok_by_channel, latency, statuses) =
            (next.clone(), ok_by_channel.clone(), latency.clone(), statuses.clone());
        workers.push(tokio::spawn(async move {
            let count = destinations.len() as u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.total || stop_at.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                if let Some(rate) = plan.rate {
                    let due = started + Duration::from_secs_f64(index as f64 / rate.max(0.001));
                    tokio::time::sleep_until(due.into()).await;
                }
                let channel = (index % count) as usize;
                let seq = plan.first_seq + index / count;
                let (urls, headers) = &destinations[channel];
                let url = &urls[url_index(channel, index / count, urls.len())];
                let mut request = client
                    .post(url)
                    .header("content-type", "text/plain")
                    .body(message::encode(seq, plan.payload_bytes));
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let sent = Instant::now();
                let label = match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        if status.is_success() {
                            ok_by_channel[channel].fetch_add(1, Ordering::Relaxed);
                            latency.record(sent.elapsed().as_micros() as u64);
                        }
                        status.as_u16().to_string()
                    }
                    Err(e) if e.is_timeout() => "io: timed out".to_owned(),
                    Err(e) if e.is_connect() => "io: connect failed".to_owned(),
                    Err(_) => "io: request failed".to_owned(),
                };
                *statuses.lock().unwrap_or_else(|p| p.into_inner()).entry(label).or_default() += 1;
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| format!("publisher task: {e}"))?;
    }
    let elapsed = started.elapsed();
    let ok_by_channel: Vec<u64> = ok_by_channel.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let statuses = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let attempted = statuses.values().sum();
    let rounds = next.load(Ordering::Relaxed).min(plan.total).div_ceil(channels.len() as u64);
    Ok(Published {
        attempted,
        ok: ok_by_channel.iter().sum(),
        ok_by_channel,
        statuses,
        latency: latency.data(),
        elapsed,
        next_seq: plan.first_seq + rounds,
    })
}

#[cfg(test)]
mod tests {
    use super::url_index;

    #[test]
    fn each_channel_alternates_over_the_urls_and_the_load_is_even() {
        for channels in [1usize, 2, 4, 1000] {
            let mut per_url = [0u64; 2];
            for round in 0..10u64 {
                for channel in 0..channels {
                    let url = url_index(channel, round, 2);
                    per_url[url] += 1;
                    if round > 0 {
                        assert_ne!(url, url_index(channel, round - 1, 2), "{channels} channels: channel {channel}");
                    }
                }
            }
            assert_eq!(per_url[0], per_url[1], "{channels} channels");
        }
        assert_eq!(url_index(7, 3, 1), 0);
    }
}

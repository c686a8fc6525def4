//! chantra-load: an SSE fan-out load generator.
//!
//! Opens N Server-Sent Events subscribers on one channel, publishes M
//! messages at a set rate, and reports deliveries (which must equal N×M:
//! missing, duplicate and out-of-order ones are counted), publish-to-receive
//! latency percentiles, connect times, and the server's RSS from /proc.
//! URLs are templates (`{channel}`, `{token}`), so the same tool measures a
//! peer SSE server too. See docs/BENCHMARKS.md for the commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, Parser)]
#[command(about = "SSE fan-out load generator (publish → receive latency, deliveries, server RSS)")]
struct Args {
    /// Subscribers to open on the channel.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages to publish.
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Publish rate (messages per second).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Creates the channel first (POST, Chantra API) and fills {channel} and {token} from the answer.
    #[arg(long)]
    create_url: Option<String>,
    /// Channel name when not created (e.g. for nchan).
    #[arg(long, default_value = "load")]
    channel: String,
    /// Subscribe URL template, e.g. http://127.0.0.1:8070/v1/public/{channel}.
    #[arg(long)]
    subscribe_url: String,
    /// Publish URL template, e.g. http://127.0.0.1:8081/v1/channels/{channel}/publish.
    #[arg(long)]
    publish_url: String,
    /// Extra publish header template, e.g. "X-Publish-Token: {token}".
    #[arg(long)]
    publish_header: Vec<String>,
    /// How the payload arrives: base64 inside Chantra's JSON data, or the raw data line (nchan).
    #[arg(long, value_parser = ["chantra", "raw"], default_value = "chantra")]
    format: String,
    /// Server process whose RSS is reported (idle, all streams open, peak).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to wait for the last deliveries after the last publish.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    last_seq: Option<u64>,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn fill(template: &str, channel: &str, token: &str) -> String {
    template.replace("{channel}", channel).replace("{token}", token)
}

/// Extracts (seq, sent_micros) from one SSE data line.
fn parse_data(line: &str, format: &str) -> Option<(u64, u64)> {
    let text = if format == "raw" {
        line.to_owned()
    } else {
        let start = line.find("\"payload\":\"")? + 11;
        let end = start + line[start..].find('"')?;
        String::from_utf8(STANDARD.decode(&line[start..end]).ok()?).ok()?
    };
    let (seq, sent) = text.trim().split_once(':')?;
    Some((seq.parse().ok()?, sent.parse().ok()?))
}

/// Holds one connect slot until the stream answers, then follows it.
async fn subscribe(
    url: reqwest::Url,
    format: Arc<String>,
    seen: Arc<Mutex<Seen>>,
    ready: Arc<AtomicU64>,
    mut slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().ok_or("no port")?;
    let mut stream = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut connected = None;
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return connected.ok_or_else(|| "closed before the stream started".to_owned());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if connected.is_none() {
            if !buffer.starts_with(b"HTTP/1.1 200") {
                return Err(String::from_utf8_lossy(&buffer[..buffer.len().min(80)]).into_owned());
            }
            connected = Some(started.elapsed());
            ready.fetch_add(1, Ordering::Relaxed);
            slot.take();
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.strip_prefix("data:")
                && let Some((seq, sent)) = parse_data(data.trim(), &format)
            {
                let latency = now_micros().saturating_sub(sent);
                let mut seen = seen.lock().await;
                match seen.last_seq {
                    Some(last) if seq == last => seen.duplicates += 1,
                    Some(last) if seq < last => seen.out_of_order += 1,
                    _ => {
                        seen.delivered += 1;
                        seen.latencies_us.push(latency);
                        seen.last_seq = Some(seq);
                    }
                }
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let (channel, token) = match &args.create_url {
        Some(url) => {
            let created: serde_json::Value = client.post(url).send().await?.error_for_status()?.json().await?;
            (
                created["channel_id"].as_str().unwrap_or_default().to_owned(),
                created["publish_token"].as_str().unwrap_or_default().to_owned(),
            )
        }
        None => (args.channel.clone(), String::new()),
    };
    let idle_rss = args.server_pid.and_then(rss_kib);

    // Open every subscriber, a bounded number of connects at a time.
    let url = reqwest::Url::parse(&fill(&args.subscribe_url, &channel, &token))?;
    let format = Arc::new(args.format.clone());
    let ready = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut subscribers = Vec::with_capacity(args.subscribers);
    let connect_started = Instant::now();
    for _ in 0..args.subscribers {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (url, format, ready, gate, record) =
            (url.clone(), format.clone(), ready.clone(), gate.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let permit = gate.acquire_owned().await.ok();
            subscribe(url, format, record, ready, permit).await
        });
        subscribers.push((seen, task));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (ready.load(Ordering::Relaxed) as usize) < args.subscribers && Instant::now() < deadline {
        if subscribers.iter().filter(|(_, t)| t.is_finished()).count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_all = connect_started.elapsed();
    let connected = ready.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open_rss = args.server_pid.and_then(rss_kib);

    // Publish at the set rate, sampling the server's RSS.
    let publish_url = fill(&args.publish_url, &channel, &token);
    let headers: Vec<(String, String)> = args
        .publish_header
        .iter()
        .filter_map(|h| h.split_once(':').map(|(k, v)| (k.trim().to_owned(), fill(v.trim(), &channel, &token))))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let mut ticker = tokio::time::interval(interval);
    let peak = Arc::new(AtomicU64::new(open_rss.unwrap_or(0)));
    let sampler = args.server_pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let mut publish_errors = 0u64;
    for seq in 0..args.messages {
        ticker.tick().await;
        let mut request =
            client.post(&publish_url).header("content-type", "text/plain").body(format!("{seq}:{}", now_micros()));
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            _ => publish_errors += 1,
        }
    }

    // Wait for deliveries to settle.
    let expected = args.messages * connected;
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    loop {
        let mut delivered = 0;
        for (seen, _) in &subscribers {
            delivered += seen.lock().await.delivered;
        }
        if delivered >= expected || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(sampler) = sampler {
        sampler.abort();
    }

    let mut latencies = Vec::new();
    let (mut delivered, mut duplicates, mut out_of_order, mut failed) = (0, 0, 0, 0);
    for (seen, task) in &subscribers {
        let seen = seen.lock().await;
        latencies.extend_from_slice(&seen.latencies_us);
        delivered += seen.delivered;
        duplicates += seen.duplicates;
        out_of_order += seen.out_of_order;
        if task.is_finished() {
            failed += 1;
        }
    }
    latencies.sort_unstable();
    let report = serde_json::json!({
        "subscribers": args.subscribers,
        "connected": connected,
        "failed_streams": failed,
        "messages": args.messages,
        "rate_per_s": args.rate,
        "publish_errors": publish_errors,
        "expected_deliveries": args.messages * args.subscribers as u64,
        "delivered": delivered,
        "missing": (args.messages * args.subscribers as u64).saturating_sub(delivered),
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "latency_ms": { "p50": percentile(&latencies, 0.50), "p99": percentile(&latencies, 0.99), "max": percentile(&latencies, 1.0) },
        "connect_all_ms": connect_all.as_millis(),
        "server_rss_kib": { "idle": idle_rss, "streams_open": open_rss, "peak": args.server_pid.map(|_| peak.load(Ordering::Relaxed)) },
        "rss_per_stream_kib": match (idle_rss, open_rss) {
            (Some(idle), Some(open)) if connected > 0 => Some((open.saturating_sub(idle)) as f64 / connected as f64),
            _ => None,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    for (_, task) in subscribers {
        task.abort();
    }
    Ok(())
}

//! The `wait` scenario: N MCP sessions (streamable HTTP, `--mcp-url`), each
//! looping `wait_for_messages` on one channel with the cursor of its last
//! answer, while messages are published through REST at a modest rate.
//!
//! Every waiter starts after a seed message published first, so none misses
//! a message however late its first call lands. Latency is publish → the
//! answer holding the message (the payload's timestamp), per message and
//! waiter; "all returned" is, per message, the slowest waiter. Memory: the
//! server idle, with N sessions open, and with N calls waiting.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::message::{self, Format};
use crate::publish::{self, Channel};
use crate::stats::{Histogram, HistogramData, Tally, merge_tally};

/// Seconds one `wait_for_messages` call may wait (the server's default cap is 120).
const CALL_TIMEOUT_SECS: u64 = 20;

/// One MCP session over streamable HTTP.
pub struct Session {
    client: reqwest::Client,
    url: String,
    id: String,
}

/// The JSON-RPC answer of a POST, whether sent as JSON or as an event stream.
async fn rpc(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> Result<(Value, Option<String>), String> {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    let response = request.send().await.map_err(|e| label_error(&e))?;
    let status = response.status();
    let session_id = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.map_err(|e| label_error(&e))?;
    if !status.is_success() {
        return Err(status.as_u16().to_string());
    }
    if text.trim().is_empty() {
        return Ok((Value::Null, session_id));
    }
    let found = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .chain(std::iter::once(text.trim()))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some());
    found.map(|v| (v, session_id)).ok_or_else(|| "no JSON-RPC answer".to_owned())
}

fn label_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "io: timed out".into()
    } else if e.is_connect() {
        "io: connect failed".into()
    } else {
        "io: request failed".into()
    }
}

impl Session {
    async fn open(client: reqwest::Client, url: String) -> Result<Self, String> {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "chantra-load", "version": "0.1.0"}}});
        let (answer, id) = rpc(&client, &url, None, init).await?;
        if answer.get("error").is_some() {
            return Err(format!("initialize: {}", answer["error"]));
        }
        let id = id.ok_or("initialize: no Mcp-Session-Id")?;
        rpc(&client, &url, Some(&id), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(Self { client, url, id })
    }

    /// One wait_for_messages call: (messages as (seq, sent µs), next_cursor).
    async fn wait(&self, call: u64, channel: &str, after: &str) -> Result<(Vec<Option<(u64, u64)>>, String), String> {
        let body = json!({"jsonrpc": "2.0", "id": call, "method": "tools/call", "params": {
            "name": "wait_for_messages",
            "arguments": {"channel_id": channel, "after": after, "timeout_seconds": CALL_TIMEOUT_SECS}}});
        let (answer, _) = rpc(&self.client, &self.url, Some(&self.id), body).await?;
        let result = &answer["result"];
        if answer.get("error").is_some() || result["isError"].as_bool() == Some(true) {
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            let code = serde_json::from_str::<Value>(text).ok().and_then(|v| v["error"].as_str().map(str::to_owned));
            return Err(format!("tool error: {}", code.unwrap_or_else(|| answer["error"]["message"].to_string())));
        }
        let content = &result["structuredContent"];
        let cursor = content["next_cursor"].as_str().ok_or("no next_cursor")?.to_owned();
        let messages = content["messages"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|m| {
                        if let Some(text) = m["payload_text"].as_str() {
                            message::decode(text, Format::Raw)
                        } else {
                            // payload_base64: decode() reads it from Chantra's JSON shape.
                            let b64 = m["payload_base64"].as_str().unwrap_or_default();
                            message::decode(&format!("{{\"payload\":\"{b64}\"}}"), Format::Chantra)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((messages, cursor))
    }
}

/// What the waiters share.
pub struct Shared {
    pub latency: Histogram,
    /// Per message (by seq): the slowest waiter's latency in µs.
    pub slowest: Vec<AtomicU64>,
    /// Waiters whose first call has been sent.
    pub waiting: AtomicU64,
    pub done: AtomicU64,
    /// Set when the drain time is over: waiters stop after their current call.
    pub stop: AtomicBool,
}

/// One waiter's tally.
#[derive(Default)]
pub struct WaiterReport {
    pub calls: u64,
    pub with_messages: u64,
    pub empty: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub unparsed: u64,
    pub missing: u64,
    pub errors: Tally,
}

/// Opens `count` sessions, `concurrency` at a time, spread over the source addresses.
pub async fn open_sessions(
    url: &str,
    sources: &[IpAddr],
    count: usize,
    concurrency: usize,
) -> Result<(Vec<Session>, Tally), String> {
    publish::check_loopback_url(url)?;
    let clients = if sources.is_empty() {
        vec![client(None)?]
    } else {
        sources.iter().map(|s| client(Some(*s))).collect::<Result<Vec<_>, _>>()?
    };
    let opened: Vec<Result<Session, String>> = futures::stream::iter(0..count)
        .map(|i| Session::open(clients[i % clients.len()].clone(), url.to_owned()))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut failures = Tally::new();
    let mut sessions = Vec::new();
    for result in opened {
        match result {
            Ok(session) => sessions.push(session),
            Err(e) => *failures.entry(e).or_default() += 1,
        }
    }
    Ok((sessions, failures))
}

fn client(source: Option<IpAddr>) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(CALL_TIMEOUT_SECS + 30))
        .local_address(source)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// One waiter: loops until it holds every message `0..messages` or `stop` is set.
pub async fn waiter(
    session: Session,
    channel: Channel,
    seed: String,
    messages: u64,
    shared: Arc<Shared>,
) -> WaiterReport {
    let mut report = WaiterReport::default();
    let mut seen = vec![false; messages as usize];
    let (mut cursor, mut last_seq, mut distinct) = (seed, None::<u64>, 0u64);
    let mut first = true;
    while distinct < messages && !shared.stop.load(Ordering::Relaxed) {
        if first {
            shared.waiting.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        report.calls += 1;
        match session.wait(report.calls, &channel.id, &cursor).await {
            Ok((found, next)) => {
                let now = message::now_micros();
                cursor = next;
                if found.is_empty() {
                    report.empty += 1;
                } else {
                    report.with_messages += 1;
                }
                for item in found {
                    let Some((seq, sent)) = item else {
                        report.unparsed += 1;
                        continue;
                    };
                    let Some(slot) = seen.get_mut(seq as usize) else {
                        report.unparsed += 1;
                        continue;
                    };
                    if *slot {
                        report.duplicates += 1;
                        continue;
                    }
                    *slot = true;
                    distinct += 1;
                    report.delivered += 1;
                    if last_seq.is_some_and(|l| seq < l) {
                        report.out_of_order += 1;
                    }
                    last_seq = Some(seq);
                    let latency = now.saturating_sub(sent);
                    shared.latency.record(latency);
                    shared.slowest[seq as usize].fetch_max(latency, Ordering::Relaxed);
                }
            }
            Err(e) => {
                *report.errors.entry(e).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    shared.done.fetch_add(1, Ordering::Relaxed);
    report.missing = messages - distinct;
    report
}

impl WaiterReport {
    pub fn merge(&mut self, other: &WaiterReport) {
        self.calls += other.calls;
        self.with_messages += other.with_messages;
        self.empty += other.empty;
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.unparsed += other.unparsed;
        self.missing += other.missing;
        merge_tally(&mut self.errors, &other.errors);
    }
}

/// The slowest waiter's latency per message, as a histogram (None for messages nobody got).
pub fn slowest(shared: &Shared) -> HistogramData {
    let histogram = Histogram::default();
    for slot in &shared.slowest {
        let v = slot.load(Ordering::Relaxed);
        if v > 0 {
            histogram.record(v);
        }
    }
    histogram.data()
}

pub fn elapsed_ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

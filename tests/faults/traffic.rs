//! Clients that behave like real ones while a fault happens, and record
//! everything they saw so the case can check it afterwards:
//!
//! - `Subscriber`: follows a channel's stream; when it ends or cannot be
//!   opened, reconnects with `Last-Event-ID` (the last id it received), as
//!   EventSource does; keeps every delivered message.
//! - `Publisher`: publishes `message <i>` steadily, each with an
//!   Idempotency-Key, retrying a message until it is acknowledged (201); keeps
//!   every attempt with its outcome and latency.
//!
//! Both run as tasks with a hard time limit, so nothing waits forever.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use crate::common::retry_after;
use crate::sse_client::{End, try_connect};

/// One message as a subscriber received it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct SubscriberLog {
    pub received: Vec<Delivery>,
    /// Streams opened (200).
    pub streams: usize,
    /// Connection attempts that failed before any response (refused, reset).
    pub connect_errors: usize,
    /// 429/503 answers: status and Retry-After.
    pub refusals: Vec<(u16, Option<String>)>,
    /// When and how each stream ended.
    pub ends: Vec<(Instant, End)>,
    /// Anything a correct server never sends here (other statuses, gap/deleted events, bad frames).
    pub problems: Vec<String>,
}

impl SubscriberLog {
    pub fn ids(&self) -> Vec<String> {
        self.received.iter().map(|d| d.id.clone()).collect()
    }
}

pub struct Subscriber {
    pub log: Arc<Mutex<SubscriberLog>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Follows `url` until stopped or `limit` passes; `resume_after` is the
    /// Last-Event-ID of the first connection (`None`: from now).
    pub fn spawn(client: reqwest::Client, url: String, resume_after: Option<String>, limit: Duration) -> Self {
        let log = Arc::new(Mutex::new(SubscriberLog::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow(client, url, resume_after, Instant::now() + limit, log.clone(), stopped));
        Self { log, stop, task }
    }

    pub fn received(&self) -> usize {
        self.log.lock().unwrap().received.len()
    }

    pub fn streams(&self) -> usize {
        self.log.lock().unwrap().streams
    }

    /// Stops following and returns what it saw.
    pub async fn stop(self) -> SubscriberLog {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

async fn follow(
    client: reqwest::Client,
    url: String,
    mut last_id: Option<String>,
    deadline: Instant,
    log: Arc<Mutex<SubscriberLog>>,
    stopped: watch::Receiver<bool>,
) {
    let running = || !*stopped.borrow() && Instant::now() < deadline;
    while running() {
        let mut request = client.get(&url);
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let mut stream = match try_connect(request).await {
            Ok(stream) => stream,
            Err(_) => {
                log.lock().unwrap().connect_errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.status {
            200 => log.lock().unwrap().streams += 1,
            429 | 503 => {
                let retry = retry_after(&stream.headers);
                log.lock().unwrap().refusals.push((stream.status, retry.clone()));
                // Honour Retry-After, capped so that the test stays short.
                let secs = retry.and_then(|r| r.parse::<u64>().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs).min(Duration::from_secs(1))).await;
                continue;
            }
            status => {
                let body = stream.error_json().await;
                log.lock().unwrap().problems.push(format!("stream answered {status}: {body}"));
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        }
        while running() {
            let Some(event) = stream.next(Duration::from_millis(250)).await else {
                if stream.ended() {
                    break;
                }
                continue;
            };
            if event.event != "message" {
                log.lock().unwrap().problems.push(format!("unexpected event {event:?}"));
                continue;
            }
            let data = event.json();
            let id = event.id.clone().unwrap_or_default();
            if data["id"].as_str() != Some(id.as_str()) {
                log.lock().unwrap().problems.push(format!("event id {id} carries data of {}", data["id"]));
            }
            let payload = chantra_testkit::sse::payload_bytes(&data);
            last_id = Some(id.clone());
            log.lock().unwrap().received.push(Delivery { id, payload });
        }
        if let Some(end) = stream.end.clone() {
            log.lock().unwrap().ends.push((Instant::now(), end));
        }
    }
}

/// Waits until every subscriber received at least `count` messages.
pub async fn wait_delivered(subscribers: &[Subscriber], count: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let least = subscribers.iter().map(Subscriber::received).min().unwrap_or(count);
        if least >= count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?} a subscriber had received only {least} of {count} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that a subscriber received exactly `expected` (ids and payloads), in order.
pub fn assert_exactly(name: &str, log: &SubscriberLog, expected: &[(String, Vec<u8>)]) {
    assert!(log.problems.is_empty(), "{name}: {:?}", log.problems);
    let got = log.ids();
    let want: Vec<String> = expected.iter().map(|(id, _)| id.clone()).collect();
    if got != want {
        let missing: Vec<&String> = want.iter().filter(|id| !got.contains(id)).collect();
        let mut seen = std::collections::HashSet::new();
        let duplicated: Vec<&String> = got.iter().filter(|id| !seen.insert(*id)).collect();
        panic!(
            "{name}: received {} messages, expected {} (missing {missing:?}, duplicated {duplicated:?}, \
             in order: {})",
            got.len(),
            want.len(),
            got.windows(2).all(|w| w[0] < w[1])
        );
    }
    for (delivery, (id, payload)) in log.received.iter().zip(expected) {
        assert_eq!(&delivery.payload, payload, "{name}: payload of {id}");
    }
}

/// One publish attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub message: usize,
    pub sent_at: Instant,
    pub latency: Duration,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 201 with the message id.
    Created(String),
    /// Any other HTTP answer: status, error code and Retry-After.
    Refused { status: u16, code: String, retry_after: Option<String> },
    /// No HTTP answer (connection refused or reset, or the client timeout).
    Failed(String),
}

#[derive(Debug, Default)]
pub struct PublishLog {
    pub attempts: Vec<Attempt>,
    /// Acknowledged messages in order: id and payload.
    pub acked: Vec<(String, Vec<u8>)>,
}

impl PublishLog {
    /// Attempts whose answer was not a 201.
    pub fn refusals(&self) -> Vec<&Attempt> {
        self.attempts.iter().filter(|a| !matches!(a.outcome, Outcome::Created(_))).collect()
    }
}

/// The payload of message `i`.
pub fn payload(i: usize) -> Vec<u8> {
    format!("message {i}").into_bytes()
}

/// Publishes one payload; the outcome of the attempt.
pub async fn publish_once(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
    idempotency_key: Option<&str>,
) -> Outcome {
    let mut request =
        client.post(url).header("x-publish-token", token).header("content-type", "application/octet-stream").body(body);
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    match request.send().await {
        Ok(response) if response.status() == 201 => match response.json::<Value>().await {
            Ok(body) => Outcome::Created(body["message_id"].as_str().unwrap_or_default().to_owned()),
            Err(err) => Outcome::Failed(format!("201 without a body: {err}")),
        },
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("(no JSON error body)").to_owned();
            Outcome::Refused { status, code, retry_after }
        }
        Err(err) => Outcome::Failed(format!("{err:?}")),
    }
}

pub struct Publisher {
    pub log: Arc<Mutex<PublishLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Publishes messages 0..count to `channel` through the rest role at
    /// `rest`, one every `interval`; a message that is not acknowledged is
    /// retried every 100 ms with the same Idempotency-Key. Gives up after `limit`.
    pub fn steady(rest: &str, channel: &Value, count: usize, interval: Duration, limit: Duration) -> Self {
        // Generous, but finite: a publish that takes this long is a hang.
        let client = crate::common::api_client(Duration::from_secs(15));
        let url = format!("{rest}/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap());
        let token = channel["publish_token"].as_str().unwrap().to_owned();
        let log = Arc::new(Mutex::new(PublishLog::default()));
        let record = log.clone();
        let deadline = Instant::now() + limit;
        let task = tokio::spawn(async move {
            for i in 0..count {
                while Instant::now() < deadline {
                    let sent_at = Instant::now();
                    let outcome = publish_once(&client, &url, &token, payload(i), Some(&format!("m-{i}"))).await;
                    let latency = sent_at.elapsed();
                    let acked = {
                        let mut log = record.lock().unwrap();
                        log.attempts.push(Attempt { message: i, sent_at, latency, outcome: outcome.clone() });
                        if let Outcome::Created(id) = outcome {
                            log.acked.push((id, payload(i)));
                            true
                        } else {
                            false
                        }
                    };
                    if acked {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(interval).await;
            }
        });
        Self { log, task }
    }

    pub fn acked(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// Waits until `count` messages are acknowledged.
    pub async fn wait_acked(&self, count: usize, limit: Duration) {
        crate::common::wait_until(&format!("{count} acknowledged publishes"), limit, Duration::from_millis(20), || {
            self.acked() >= count
        })
        .await;
    }

    /// Waits for the publisher to finish and returns its log.
    pub async fn finish(self, limit: Duration) -> PublishLog {
        tokio::time::timeout(limit, self.task).await.expect("the publisher finishes in time").expect("publisher task");
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

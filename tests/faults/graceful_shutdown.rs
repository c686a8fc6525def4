//! Case 4: SIGTERM under load. A `serve --role rest,channels` process gets
//! `kill -TERM` while eight publishers publish as fast as they can and 20
//! subscribers stream. Every publish in flight either finishes (201) or fails
//! cleanly (503 with Retry-After, or a connection error) — never a 500; the
//! streams end so clients resume elsewhere; the process exits within
//! SHUTDOWN_GRACE_SECS plus a small margin; and a server started afterwards
//! on the same database and store delivers every acknowledged message.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait as _, Database, EntityTrait as _, QueryFilter as _, QueryOrder as _};

use crate::common::{create_channel, stream_path, valid_retry_after, wait_until};
use crate::server::Stack;
use crate::sse_client::End;
use crate::traffic::{Attempt, Outcome, Subscriber, publish_once};

const SUBSCRIBERS: usize = 20;
const WORKERS: usize = 8;
/// Payload size: large enough that a publish takes a while (more of them in flight).
const PAYLOAD_BYTES: usize = 32 * 1024;
const GRACE_SECS: u64 = 3;
const EXIT_MARGIN: Duration = Duration::from_secs(2);
/// Acknowledged publishes before the signal.
const LOAD_BEFORE: usize = 40;
const LIMIT: Duration = Duration::from_secs(120);

/// Every publish attempt with the payload it sent.
type Attempts = Vec<(Attempt, Vec<u8>)>;

fn body(worker: usize, n: usize) -> Vec<u8> {
    let mut body = format!("worker {worker} message {n} ").into_bytes();
    body.resize(PAYLOAD_BYTES, b'.');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_nothing() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let grace = GRACE_SECS.to_string();
    let mut server = stack.start("server", "rest,channels", &[("SHUTDOWN_GRACE_SECS", grace.as_str())]).await;
    let client = crate::common::api_client(Duration::from_secs(15));
    let channel = create_channel(&client, &server.rest_url(""), "public").await;
    let url = server.channels_url(&stream_path(&channel));
    let subscribers: Vec<Subscriber> =
        (0..SUBSCRIBERS).map(|_| Subscriber::spawn(reqwest::Client::new(), url.clone(), None, LIMIT)).collect();
    wait_until("every subscriber's stream", LIMIT, Duration::from_millis(50), || {
        subscribers.iter().all(|s| s.streams() == 1)
    })
    .await;

    // Publishers: each message once, no retry; every attempt recorded with its payload.
    let stop = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Mutex<Attempts>> = Arc::default();
    let publish_url = server.rest_url(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap().to_owned();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (client, url, token, stop, attempts) =
            (client.clone(), publish_url.clone(), token.clone(), stop.clone(), attempts.clone());
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let sent_at = Instant::now();
                let outcome = publish_once(&client, &url, &token, body(worker, n), None).await;
                let attempt = Attempt { message: worker * 1_000_000 + n, sent_at, latency: sent_at.elapsed(), outcome };
                let failed = matches!(attempt.outcome, Outcome::Failed(_));
                attempts.lock().unwrap().push((attempt, body(worker, n)));
                if failed {
                    // The server is going away: do not spin on refused connections.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let acked = || attempts.lock().unwrap().iter().filter(|(a, _)| matches!(a.outcome, Outcome::Created(_))).count();
    wait_until("load before the signal", LIMIT, Duration::from_millis(20), || acked() >= LOAD_BEFORE).await;

    let pid = server.pid();
    let rss_before = server.rss_kib();
    // Taken before the signal: the streams may end before kill(1) returns.
    let signalled = Instant::now();
    server.terminate();
    let limit = Duration::from_secs(GRACE_SECS) + EXIT_MARGIN;
    let status = server.wait_exit(limit + Duration::from_secs(10)).await;
    let exited_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("pid {pid} did not exit within {limit:?} + 10 s of SIGTERM"));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(exited_after <= limit, "exited {exited_after:?} after SIGTERM (limit {limit:?})");
    // Let the publishers see the closed port, then stop them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(20), worker).await.expect("publisher stops").unwrap();
    }

    // The server ended every stream itself: a complete response (a clean
    // end), not one cut off by the process exiting. (The clients notice a
    // little later: they are still parsing what was sent before.)
    let ended = |s: &Subscriber| s.log.lock().unwrap().ends.iter().any(|(at, _)| *at >= signalled);
    wait_until("every stream's end", Duration::from_secs(30), Duration::from_millis(10), || {
        subscribers.iter().all(ended)
    })
    .await;
    let mut stream_ends = Vec::new();
    for (i, subscriber) in subscribers.iter().enumerate() {
        let log = subscriber.log.lock().unwrap();
        let end = log.ends.iter().find(|(at, _)| *at >= signalled).cloned();
        let summary = format!(
            "{} streams, {} received, {} connection errors, ends {:?}",
            log.streams,
            log.received.len(),
            log.connect_errors,
            log.ends.iter().map(|(at, how)| (at.saturating_duration_since(signalled), how)).collect::<Vec<_>>()
        );
        drop(log);
        let (at, how) = end.unwrap_or_else(|| panic!("subscriber {i}: its stream did not end on SIGTERM: {summary}"));
        stream_ends.push((at - signalled, how));
    }
    let clean_ends = stream_ends.iter().filter(|(_, how)| *how == End::Clean).count();
    assert_eq!(clean_ends, SUBSCRIBERS, "streams cut rather than ended: {stream_ends:?}");
    let last_end = stream_ends.iter().map(|(after, _)| *after).max().unwrap();

    // Every attempt: 201, 503 + Retry-After, or no answer at all. Never a 500 or another status.
    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    // Counts by outcome: 201, 503, connection error; of all attempts and of those in flight at the signal.
    let mut counts = [0usize; 3];
    let mut in_flight = [0usize; 3];
    for (attempt, _) in &attempts {
        let kind = match &attempt.outcome {
            Outcome::Created(_) => 0,
            Outcome::Refused { status: 503, retry_after, .. } if valid_retry_after(retry_after.as_deref()) => 1,
            Outcome::Failed(_) => 2,
            other => panic!("publish during shutdown answered {other:?}"),
        };
        counts[kind] += 1;
        if attempt.sent_at < signalled && attempt.sent_at + attempt.latency > signalled {
            in_flight[kind] += 1;
        }
    }
    assert!(in_flight.iter().sum::<usize>() > 0, "no publish was in flight at the signal: the test tested nothing");
    let acked: Vec<(String, Vec<u8>)> = attempts
        .iter()
        .filter_map(|(a, body)| match &a.outcome {
            Outcome::Created(id) => Some((id.clone(), body.clone())),
            _ => None,
        })
        .collect();

    // A server started afterwards delivers every acknowledged message: to the
    // subscribers resuming with Last-Event-ID, and to a new reader from the start.
    server.restart().await;
    let restarted = Instant::now();
    let from_start = Subscriber::spawn(reqwest::Client::new(), format!("{url}?since=0"), None, LIMIT);
    let ack_ids: HashSet<&String> = acked.iter().map(|(id, _)| id).collect();
    let has_all = |s: &Subscriber| {
        let log = s.log.lock().unwrap();
        let got: HashSet<&String> = log.received.iter().map(|d| &d.id).collect();
        ack_ids.is_subset(&got)
    };
    wait_until("every acknowledged message at every reader", LIMIT, Duration::from_millis(100), || {
        subscribers.iter().chain([&from_start]).all(has_all)
    })
    .await;
    let resumed_after = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let database = Database::connect(&stack.database_url).await.expect("database");
    let channel_id: uuid::Uuid = channel["channel_id"].as_str().unwrap().parse().unwrap();
    let rows: Vec<String> = chantra_core::db::entity::message::Entity::find()
        .filter(chantra_core::db::entity::message::Column::ChannelId.eq(channel_id))
        .order_by_asc(chantra_core::db::entity::message::Column::Id)
        .all(&database)
        .await
        .expect("message rows")
        .iter()
        .map(|row| row.id.to_string())
        .collect();
    let bodies: std::collections::HashMap<&String, &Vec<u8>> = acked.iter().map(|(id, body)| (id, body)).collect();
    let mut readers = Vec::new();
    for subscriber in subscribers.into_iter().chain([from_start]) {
        readers.push(subscriber.stop().await);
    }
    for (i, reader) in readers.iter().enumerate() {
        assert!(reader.problems.is_empty(), "reader {i}: {:?}", reader.problems);
        let ids = reader.ids();
        assert_eq!(ids, rows, "reader {i} received every stored message once, in order");
        for delivery in &reader.received {
            if let Some(body) = bodies.get(&delivery.id) {
                assert_eq!(&&delivery.payload, body, "reader {i}: payload of {}", delivery.id);
            }
        }
    }
    let unacknowledged = rows.len() - acked.len();
    eprintln!(
        "[case 4] SIGTERM to pid {pid} (RSS {rss_before} KiB) under {WORKERS} publishers x {PAYLOAD_BYTES} B \
         and {SUBSCRIBERS} subscribers: exited with {status} after {exited_after:?} \
         (SHUTDOWN_GRACE_SECS={GRACE_SECS}); {} publish attempts: {} x 201, {} x 503, \
         {} x connection error, 0 others; in flight at the signal: {} finished 201, {} 503, {} \
         connection error; all {SUBSCRIBERS} streams ended cleanly by the server (the clients, still parsing what came before, \
         noticed within {last_end:?}); \
         restarted server: {} stored = {} acknowledged + {unacknowledged} committed without an answer, \
         delivered once in order to the {SUBSCRIBERS} resuming subscribers and a reader from the start \
         within {resumed_after:?}; test took {:?}",
        attempts.len(),
        counts[0],
        counts[1],
        counts[2],
        in_flight[0],
        in_flight[1],
        in_flight[2],
        rows.len(),
        acked.len(),
        started.elapsed()
    );
}

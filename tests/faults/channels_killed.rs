//! Case 1: the channels process dies (`kill -9`) while 100 subscribers
//! stream and a separate rest process keeps publishing; a new channels
//! process on the same port takes over. Every subscriber reconnects with
//! Last-Event-ID and ends with every acknowledged message exactly once, in
//! order — including those published while no channels process was running.
//! PostgreSQL (a fresh database on the shared server) + a private garage.

use std::time::{Duration, Instant};

use crate::common::{create_channel, spread, stream_path};
use crate::server::Stack;
use crate::traffic::{Outcome, Publisher, Subscriber, assert_exactly, wait_delivered};

const SUBSCRIBERS: usize = 100;
const MESSAGES: usize = 150;
/// Acknowledged messages before the kill, and before the restart.
const KILL_AT: usize = 50;
const RESTART_AT: usize = 80;
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_killed_subscribers_resume_exactly_once() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let rest = stack.start("rest", "rest", &[]).await;
    let mut channels = stack.start("channels", "channels", &[]).await;
    let client = reqwest::Client::new();
    let channel = create_channel(&client, &rest.rest_url(""), "public").await;
    let url = channels.channels_url(&stream_path(&channel));

    let subscribers: Vec<Subscriber> =
        (0..SUBSCRIBERS).map(|_| Subscriber::spawn(client.clone(), url.clone(), None, LIMIT)).collect();
    crate::common::wait_until("every subscriber's stream", LIMIT, Duration::from_millis(50), || {
        subscribers.iter().all(|s| s.streams() == 1)
    })
    .await;

    let publisher = Publisher::steady(&rest.rest_url(""), &channel, MESSAGES, Duration::from_millis(10), LIMIT);
    publisher.wait_acked(KILL_AT, LIMIT).await;
    let pid = channels.pid();
    channels.kill();
    let killed = Instant::now();
    let acked_at_kill = publisher.acked();
    publisher.wait_acked(RESTART_AT, LIMIT).await;
    channels.restart().await;
    let down_for = killed.elapsed();
    let acked_at_restart = publisher.acked();
    let log = publisher.finish(LIMIT).await;
    let caught_up = wait_delivered(&subscribers, MESSAGES, LIMIT).await;

    // Nothing more arrives after the last message (no duplicate behind it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logs = Vec::new();
    for subscriber in subscribers {
        logs.push(subscriber.stop().await);
    }
    assert_eq!(log.acked.len(), MESSAGES);
    let refused = log.refusals();
    assert!(refused.is_empty(), "the rest process is not affected by the channels crash: {refused:?}");
    assert!(log.attempts.iter().all(|a| matches!(a.outcome, Outcome::Created(_))));
    for (i, sub) in logs.iter().enumerate() {
        assert_exactly(&format!("subscriber {i}"), sub, &log.acked);
        assert!(sub.streams >= 2, "subscriber {i} reconnected after the kill ({} streams)", sub.streams);
    }

    let reconnects: Vec<usize> = logs.iter().map(|s| s.streams - 1).collect();
    let refused_connects: usize = logs.iter().map(|s| s.connect_errors).sum();
    let (p_min, p_med, p_max) = spread(&log.attempts.iter().map(|a| a.latency).collect::<Vec<_>>());
    eprintln!(
        "[case 1] channels killed (pid {pid}) after {acked_at_kill} of {MESSAGES} acknowledged publishes, \
         restarted on the same port after {down_for:?} ({} acknowledged meanwhile); \
         {SUBSCRIBERS} subscribers each received {MESSAGES}/{MESSAGES} exactly once, in order; \
         reconnects per subscriber {}..{}, connection attempts refused while down {refused_connects}; \
         all caught up {caught_up:?} after the last publish; publish latency min/median/max \
         {p_min:?}/{p_med:?}/{p_max:?}; new channels process RSS {} KiB; test took {:?}",
        acked_at_restart - acked_at_kill,
        reconnects.iter().min().unwrap(),
        reconnects.iter().max().unwrap(),
        channels.rss_kib(),
        started.elapsed()
    );
}

//! Case 2: PostgreSQL restarts while a publisher publishes steadily. A
//! private cluster (never the shared server on :5432) is stopped with
//! `pg_ctl stop -m fast` and started again. During the outage every publish
//! gets a prompt 503 with Retry-After (DB_ACQUIRE_TIMEOUT_SECS=1), never a
//! hang or a 500; afterwards publishing and live delivery resume without
//! restarting chantra, and no subscriber misses an acknowledged message.

use std::time::{Duration, Instant};

use crate::common::{create_channel, spread, stream_path, valid_retry_after, wait_until};
use crate::pg_cluster::PgCluster;
use crate::server::Stack;
use crate::traffic::{Outcome, Publisher, Subscriber, assert_exactly, wait_delivered};

const SUBSCRIBERS: usize = 20;
const MESSAGES: usize = 60;
const OUTAGE_AT: usize = 20;
/// The outage lasts at least this long, and until this many publishes were refused.
const OUTAGE: Duration = Duration::from_secs(4);
const REFUSED_DURING_OUTAGE: usize = 5;
const ACQUIRE_TIMEOUT_SECS: u64 = 1;
/// A 503 must come within the acquire timeout plus this (connect + the
/// query that finds the connection dead + slack for a busy 2-core machine).
const PROMPT_MARGIN: Duration = Duration::from_secs(3);
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_publishes_503_then_recovers() {
    let started = Instant::now();
    // Declared first, dropped last: the processes stop before the cluster.
    let cluster = PgCluster::start().await;
    let stack = Stack::on_database(cluster.url()).await;
    let timeout = ACQUIRE_TIMEOUT_SECS.to_string();
    let settings = [("DB_ACQUIRE_TIMEOUT_SECS", timeout.as_str())];
    let mut rest = stack.start("rest", "rest", &settings).await;
    let mut channels = stack.start("channels", "channels", &settings).await;
    let (rest_pid, channels_pid) = (rest.pid(), channels.pid());
    let client = crate::common::api_client(Duration::from_secs(15));
    let channel = create_channel(&client, &rest.rest_url(""), "public").await;
    let url = channels.channels_url(&stream_path(&channel));
    let subscribers: Vec<Subscriber> =
        (0..SUBSCRIBERS).map(|_| Subscriber::spawn(reqwest::Client::new(), url.clone(), None, LIMIT)).collect();
    wait_until("every subscriber's stream", LIMIT, Duration::from_millis(50), || {
        subscribers.iter().all(|s| s.streams() == 1)
    })
    .await;

    let publisher = Publisher::steady(&rest.rest_url(""), &channel, MESSAGES, Duration::from_millis(50), LIMIT);
    publisher.wait_acked(OUTAGE_AT, LIMIT).await;
    cluster.stop_server().await;
    let stopped = Instant::now();
    let acked_before = publisher.acked();
    // The readiness probe names the database while it is down.
    let ready: serde_json::Value = client.get(rest.rest_url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "unavailable", "{ready}");
    let refused_since = |log: &crate::traffic::PublishLog| {
        log.attempts.iter().filter(|a| a.sent_at >= stopped && !matches!(a.outcome, Outcome::Created(_))).count()
    };
    wait_until("publishes refused during the outage", LIMIT, Duration::from_millis(50), || {
        stopped.elapsed() >= OUTAGE && refused_since(&publisher.log.lock().unwrap()) >= REFUSED_DURING_OUTAGE
    })
    .await;
    let acked_during = publisher.acked() - acked_before;
    cluster.start_server().await;
    let restarted = Instant::now();
    let outage = stopped.elapsed();

    let log = publisher.finish(LIMIT).await;
    let delivered_after = wait_delivered(&subscribers, MESSAGES, LIMIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logs = Vec::new();
    for subscriber in subscribers {
        logs.push(subscriber.stop().await);
    }

    // During the outage: 503 with Retry-After, promptly; never another status, never a hang.
    let during: Vec<_> = log.attempts.iter().filter(|a| a.sent_at >= stopped && a.sent_at < restarted).collect();
    let mut latencies = Vec::new();
    for attempt in &during {
        match &attempt.outcome {
            Outcome::Refused { status: 503, retry_after, code } => {
                assert!(valid_retry_after(retry_after.as_deref()), "503 without Retry-After: {attempt:?}");
                assert_eq!(code, "database_unavailable", "{attempt:?}");
                latencies.push(attempt.latency);
            }
            // A publish that got its connection before the stop may still have committed.
            Outcome::Created(_) => {}
            other => panic!("publish {} during the outage: {other:?} (expected 503)", attempt.message),
        }
    }
    let prompt = Duration::from_secs(ACQUIRE_TIMEOUT_SECS) + PROMPT_MARGIN;
    let (l_min, l_med, l_max) = spread(&latencies);
    assert!(l_max <= prompt, "a 503 took {l_max:?} (limit {prompt:?})");
    for attempt in log.attempts.iter().filter(|a| a.sent_at < stopped || a.sent_at >= restarted) {
        match &attempt.outcome {
            Outcome::Created(_) | Outcome::Refused { status: 503, .. } => {}
            other => panic!("publish {} outside the outage: {other:?}", attempt.message),
        }
    }
    // Recovery: the first acknowledged publish after the restart, and the processes never restarted.
    let recovered = log
        .attempts
        .iter()
        .filter(|a| a.sent_at >= restarted && matches!(a.outcome, Outcome::Created(_)))
        .map(|a| a.sent_at + a.latency - restarted)
        .min()
        .expect("publishing resumed after the restart");
    let refused_after =
        log.attempts.iter().filter(|a| a.sent_at >= restarted && !matches!(a.outcome, Outcome::Created(_))).count();
    assert!(rest.is_running() && channels.is_running(), "chantra kept running");
    assert_eq!((rest.pid(), channels.pid()), (rest_pid, channels_pid));
    assert_eq!(log.acked.len(), MESSAGES);
    for (i, sub) in logs.iter().enumerate() {
        assert_exactly(&format!("subscriber {i}"), sub, &log.acked);
    }
    let reconnects: usize = logs.iter().map(|s| s.streams - 1).sum();
    let listener_lost = channels.log_count("notification listener lost its connection")
        + channels.log_count("notification listener failed");
    let listener_back = channels.log_count("notification listener reconnected");
    eprintln!(
        "[case 2] PostgreSQL (private cluster, port {}) down for {outage:?} after {acked_before} acknowledged \
         publishes ({acked_during} acknowledged in the outage); {} publish attempts during the outage, {} \
         answered 503 database_unavailable with Retry-After in min/median/max {l_min:?}/{l_med:?}/{l_max:?} \
         (DB_ACQUIRE_TIMEOUT_SECS={ACQUIRE_TIMEOUT_SECS}), 0 other errors; first 201 {recovered:?} after \
         pg_ctl start returned ({refused_after} more 503s meanwhile); {MESSAGES}/{MESSAGES} acknowledged \
         messages delivered exactly once in order to each of {SUBSCRIBERS} subscribers ({reconnects} \
         reconnects in all; last delivery {delivered_after:?} after the last publish; the channels process's \
         listener lost its connection {listener_lost} time(s) and reconnected {listener_back}); no chantra restart; \
         test took {:?}",
        cluster.port,
        during.len(),
        latencies.len(),
        started.elapsed()
    );
}

//! Case 3: the S3 store fails while a publisher publishes steadily — first
//! it hangs (SIGSTOP: S3_TIMEOUT_SECS bounds each request), then it dies
//! (SIGKILL) and is started again on the same data and ports. Publishes get
//! 503 storage_unavailable with Retry-After and leave no message row without
//! its object; a reader resuming during the outage, whose payload fetches
//! fail, waits and then delivers in order instead of skipping; afterwards
//! everything recovers without restarting chantra.

use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait as _, Database, EntityTrait as _, QueryFilter as _};

use crate::common::{create_channel, spread, stream_path, valid_retry_after, wait_until};
use crate::server::Stack;
use crate::traffic::{Attempt, Outcome, PublishLog, Publisher, Subscriber, assert_exactly, wait_delivered};

const SUBSCRIBERS: usize = 10;
const MESSAGES: usize = 60;
const FREEZE_AT: usize = 15;
const KILL_AT: usize = 30;
/// The late reader resumes after this acknowledged message.
const RESUME_AFTER: usize = 5;
const S3_TIMEOUT_SECS: u64 = 2;
/// A 503 of a hanging store must come within S3_TIMEOUT_SECS plus this.
const PROMPT_MARGIN: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(4);
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_publishes_503_readers_wait_then_recover() {
    let started = Instant::now();
    let mut stack = Stack::shared_postgres().await;
    let timeout = S3_TIMEOUT_SECS.to_string();
    let settings = [("S3_TIMEOUT_SECS", timeout.as_str())];
    let mut rest = stack.start("rest", "rest", &settings).await;
    let mut channels = stack.start("channels", "channels", &settings).await;
    // The late reader's own channels process: nobody follows the channel
    // there, so its payload cache is cold and its replay must really fetch
    // from the (dead) store. (On `channels`, the live subscribers' deliveries
    // put every payload in that process's cache.)
    let mut late_channels = stack.start("channels-late", "channels", &settings).await;
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
    let publisher = Publisher::steady(&rest.rest_url(""), &channel, MESSAGES, Duration::from_millis(30), LIMIT);
    let refused_since = |since: Instant| {
        let log = publisher.log.lock().unwrap();
        log.attempts.iter().filter(|a| a.sent_at >= since && !matches!(a.outcome, Outcome::Created(_))).count()
    };

    // Phase 1: the store hangs.
    publisher.wait_acked(FREEZE_AT, LIMIT).await;
    stack.garage.freeze();
    let frozen = Instant::now();
    wait_until("two publishes refused while the store hangs", LIMIT, Duration::from_millis(50), || {
        refused_since(frozen) >= 2
    })
    .await;
    stack.garage.thaw();
    let thawed = Instant::now();

    // Phase 2: the store dies; a reader resumes from an old cursor meanwhile.
    publisher.wait_acked(KILL_AT, LIMIT).await;
    stack.garage.kill();
    let killed = Instant::now();
    let acked_at_kill = publisher.acked();
    let resume_id = publisher.log.lock().unwrap().acked[RESUME_AFTER - 1].0.clone();
    let late_url = late_channels.channels_url(&stream_path(&channel));
    let late = Subscriber::spawn(reqwest::Client::new(), late_url, Some(resume_id), LIMIT);
    wait_until("publishes refused while the store is down", LIMIT, Duration::from_millis(50), || {
        killed.elapsed() >= OUTAGE && refused_since(killed) >= 5 && late.streams() == 1
    })
    .await;
    let ready: serde_json::Value = client.get(rest.rest_url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["payload_store"], "unavailable", "{ready}");
    assert_eq!(late.received(), 0, "the late reader got messages whose payloads the dead store holds");
    let database = Database::connect(&stack.database_url).await.expect("database");
    let channel_id: uuid::Uuid = channel["channel_id"].as_str().unwrap().parse().unwrap();
    let rows = || async {
        chantra_core::db::entity::message::Entity::find()
            .filter(chantra_core::db::entity::message::Column::ChannelId.eq(channel_id))
            .all(&database)
            .await
            .expect("message rows")
    };
    let rows_in_outage = rows().await.len();
    let acked_in_outage = publisher.acked();
    stack.garage.restart().await;
    let restarted = Instant::now();
    let outage = killed.elapsed();

    let log = publisher.finish(LIMIT).await;
    let delivered_after = wait_delivered(&subscribers, MESSAGES, LIMIT).await;
    wait_delivered(std::slice::from_ref(&late), MESSAGES - RESUME_AFTER, LIMIT).await;
    let late_waited = late.log.lock().unwrap().ends.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logs = Vec::new();
    for subscriber in subscribers {
        logs.push(subscriber.stop().await);
    }
    let late = late.stop().await;

    // Every refusal: 503 storage_unavailable with Retry-After; nothing else, ever.
    for attempt in log.refusals() {
        match &attempt.outcome {
            Outcome::Refused { status: 503, code, retry_after } if code == "storage_unavailable" => {
                assert!(valid_retry_after(retry_after.as_deref()), "503 without Retry-After: {attempt:?}");
            }
            other => panic!("publish {}: {other:?} (expected 201 or 503 storage_unavailable)", attempt.message),
        }
    }
    let refused_in = |from: Instant, to: Instant| -> Vec<Duration> {
        refused(&log).filter(|a| a.sent_at >= from && a.sent_at < to).map(|a| a.latency).collect()
    };
    let frozen_latency = refused_in(frozen, thawed);
    let killed_latency = refused_in(killed, restarted);
    let (f_min, f_med, f_max) = spread(&frozen_latency);
    let (k_min, k_med, k_max) = spread(&killed_latency);
    let prompt = Duration::from_secs(S3_TIMEOUT_SECS) + PROMPT_MARGIN;
    assert!(f_max <= prompt, "a publish to the hanging store took {f_max:?} (limit {prompt:?})");
    assert!(k_max <= prompt, "a publish to the dead store took {k_max:?} (limit {prompt:?})");

    // No row without its object: exactly one row per acknowledged message, each object present.
    assert_eq!(log.acked.len(), MESSAGES);
    let rows = rows().await;
    assert_eq!(rows.len(), MESSAGES, "one row per acknowledged message, none from a refused publish");
    assert_eq!(rows_in_outage, acked_in_outage, "rows during the outage = acknowledged publishes");
    let bucket = stack.garage.bucket();
    for row in &rows {
        let (_, status) = bucket
            .head_object(&row.payload_object_key)
            .await
            .unwrap_or_else(|e| panic!("message {} has no object {}: {e}", row.id, row.payload_object_key));
        assert_eq!(status, 200, "object of message {}", row.id);
    }

    for (i, sub) in logs.iter().enumerate() {
        assert_exactly(&format!("subscriber {i}"), sub, &log.acked);
    }
    assert_exactly("late reader", &late, &log.acked[RESUME_AFTER..]);
    assert!(rest.is_running() && channels.is_running() && late_channels.is_running(), "chantra kept running");
    assert_eq!((rest.pid(), channels.pid()), (rest_pid, channels_pid));
    eprintln!(
        "[case 3] store hung (SIGSTOP) for {:?}: {} publishes answered 503 storage_unavailable in \
         min/median/max {f_min:?}/{f_med:?}/{f_max:?} (S3_TIMEOUT_SECS={S3_TIMEOUT_SECS}); store killed \
         after {acked_at_kill} acknowledged publishes and restarted after {outage:?}: {} publishes answered \
         503 in {k_min:?}/{k_med:?}/{k_max:?}; {} refusals in all, 0 other errors; {} rows = {MESSAGES} \
         acknowledged, every object present; a reader resuming after message {RESUME_AFTER} during the \
         outage received 0 until the store was back, then {}/{} in order ({late_waited} stream ends); \
         {MESSAGES}/{MESSAGES} delivered exactly once in order to each of {SUBSCRIBERS} live subscribers \
         (last {delivered_after:?} after the last publish); no chantra restart; test took {:?}",
        thawed - frozen,
        frozen_latency.len(),
        killed_latency.len(),
        log.refusals().len(),
        rows.len(),
        late.received.len(),
        MESSAGES - RESUME_AFTER,
        started.elapsed()
    );
}

fn refused(log: &PublishLog) -> impl Iterator<Item = &Attempt> {
    log.attempts.iter().filter(|a| !matches!(a.outcome, Outcome::Created(_)))
}

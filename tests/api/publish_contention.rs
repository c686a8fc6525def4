//! Two rest processes publishing to the same channels at once (PostgreSQL +
//! S3). Each process commits publishes in batches (group commit) and a batch
//! locks the row of every channel it writes to; two batches that lock shared
//! channels in different orders deadlock, and PostgreSQL breaks a deadlock
//! only after `deadlock_timeout` (1 s) by failing one of them. Every batch
//! locks its channels in one order (ascending id), so however the publishes
//! interleave the database counts no deadlock — and every publish is stored.

use std::time::Duration;

use chantra_testkit::{Launcher, bin};
use rand::seq::IndexedRandom as _;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::Value;

use crate::helpers::{TestDatabase, admin_database_url, s3_env};
use crate::processes::create_channel;

const CHANNELS: usize = 6;
/// Concurrent publishers per rest process.
const PUBLISHERS: usize = 24;
/// Publishes per publisher, each to a channel picked at random.
const PUBLISHES: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rest_processes_publishing_to_shared_channels_never_deadlock() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut processes = Vec::new();
    // The first applies the migrations; the second starts after it.
    for name in ["rest-1", "rest-2"] {
        let launcher = Launcher::new(bin!(), dir.path()).name(name).roles("rest");
        processes.push(launcher.database(&database.url).s3(&s3_env()).start().await);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut channels = Vec::new();
    for _ in 0..CHANNELS {
        channels.push(create_channel(&client, &processes[0], "public").await);
    }

    let mut publishers = tokio::task::JoinSet::new();
    for publisher in 0..PUBLISHERS * processes.len() {
        let rest = processes[publisher % processes.len()].rest_url("");
        let (client, channels) = (client.clone(), channels.clone());
        publishers.spawn(async move { publish_at_random(&client, &rest, &channels).await });
    }
    let mut stored = 0;
    while let Some(result) = publishers.join_next().await {
        stored += result.expect("publisher task");
    }
    assert_eq!(stored, PUBLISHERS * processes.len() * PUBLISHES);

    // A backend reports its statistics when it exits at the latest: stop the
    // processes (their connections close), then read the database's counter.
    drop(processes);
    let admin = Database::connect(admin_database_url()).await.expect("admin connection");
    let sql = "SELECT deadlocks FROM pg_stat_database WHERE datname = $1";
    let mut deadlocks = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, [database.name.clone().into()]);
        let row = admin.query_one_raw(statement).await.expect("pg_stat_database").expect("the test database's row");
        deadlocks = row.try_get::<i64>("", "deadlocks").expect("deadlocks");
        if deadlocks > 0 {
            break;
        }
    }
    assert_eq!(deadlocks, 0, "publishes in two processes deadlocked in PostgreSQL");
}

/// Publishes PUBLISHES messages, each to a random one of `channels`, through
/// the rest process at `rest`; returns how many were stored (every one must be).
async fn publish_at_random(client: &reqwest::Client, rest: &str, channels: &[Value]) -> usize {
    let mut stored = 0;
    for i in 0..PUBLISHES {
        let channel = channels.choose(&mut rand::rng()).expect("channels");
        let id = channel["channel_id"].as_str().unwrap();
        let response = client
            .post(format!("{rest}/v1/channels/{id}/publish"))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .body(format!("message {i}"))
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
        stored += 1;
    }
    stored
}

//! The lifecycle sweeper with a moved clock (no sleeping): expiry, idle
//! channel deletion, orphan reconciliation, concurrent sweepers, and the
//! bucket lifecycle rule.

use std::time::Duration;

use bytes::Bytes;
use chantra::cli::Role;
use chantra_core::payload::StoreError;
use chantra_core::service::{SweepReport, SweepSettings};
use sea_orm::{EntityTrait as _, PaginatorTrait as _};
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, TestDatabase, own_bucket_args, s3_env, spawn_app_with};
use crate::on_both_backends;
use crate::sse_client;

on_both_backends!(expiry_purges_rows_and_objects, idle_channels_are_deleted, orphans_are_reconciled_after_grace);

fn settings() -> SweepSettings {
    SweepSettings { interval: Duration::from_secs(60), batch: 2, orphan_grace: chrono::Duration::hours(1) }
}

async fn app(backend: Backend) -> TestApp {
    // Its sweeps move the clock past the orphan grace: a bucket of its own.
    // Every payload an object in the store, whatever its size (small ones
    // kept in the database: inline_payloads.rs).
    let mut extra_args = own_bucket_args(backend);
    extra_args.extend(["--payload-inline-max-bytes".into(), "0".into()]);
    let options = Options { roles: Some(vec![Role::Rest, Role::Channels]), extra_args, ..Default::default() };
    spawn_app_with(backend, options).await
}

async fn message_rows(app: &TestApp) -> u64 {
    chantra_core::db::entity::message::Entity::find().count(app.service.db()).await.unwrap()
}

async fn expiry_purges_rows_and_objects(backend: Backend) {
    let app = app(backend).await;
    let channel = app.create_channel("public").await;
    let url = app.rest(&format!("/v1/channels/{}/publish?ttl=60", channel["channel_id"].as_str().unwrap()));
    let mut short = Vec::new();
    for i in 0..5 {
        let response = app
            .client
            .post(&url)
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .body(format!("short {i}"))
            .send()
            .await
            .unwrap();
        short.push(response.json::<Value>().await.unwrap());
    }
    let kept: Value = app.publish_text(&channel, "kept").await.json().await.unwrap();
    let short_keys =
        futures::future::join_all(short.iter().map(|m| app.object_key(m["message_id"].as_str().unwrap()))).await;

    let before = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!(before.expired_messages, 0, "nothing expired yet");
    app.clock.advance(chrono::Duration::seconds(61));
    // Invisible at once, before any sweep: metadata counts only live messages.
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 1);

    let report = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!(report.expired_messages, 5, "in batches of 2: {report:?}");
    assert_eq!(message_rows(&app).await, 1);
    for key in short_keys {
        assert!(matches!(app.service.store().get(&key).await, Err(StoreError::NotFound)), "{key} is gone");
    }
    assert_eq!(app.stored_payload(&kept).await, b"kept");
    // A second pass finds nothing more: every step is idempotent.
    let again = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!(again, SweepReport { ran: true, ..Default::default() });
}

async fn idle_channels_are_deleted(backend: Backend) {
    let app = app(backend).await;
    let quiet = app.create_channel("private").await;
    let active = app.create_channel("public").await;
    let message: Value = app.publish_text(&quiet, "long ago").await.json().await.unwrap();
    let key = app.object_key(message["message_id"].as_str().unwrap()).await;
    let stream_url = app.url(Role::Channels, &format!("/v1/private/{}", quiet["channel_id"].as_str().unwrap()));
    let mut stream =
        sse_client::connect(app.client.get(stream_url).header("x-read-token", quiet["read_token"].as_str().unwrap()))
            .await;
    assert_eq!(stream.status, 200);

    app.clock.advance(chrono::Duration::days(29));
    assert_eq!(app.publish_text(&active, "still here").await.status(), 201);
    assert_eq!(app.service.sweep_once(&settings()).await.unwrap().idle_channels, 0, "29 days is not idle yet");
    app.clock.advance(chrono::Duration::days(2));
    let report = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!(report.idle_channels, 1, "{report:?}");

    assert_eq!(app.get_channel(&quiet).await.status(), 404);
    assert_eq!(app.get_channel(&active).await.status(), 200);
    assert!(matches!(app.service.store().get(&key).await, Err(StoreError::NotFound)));
    let grants = chantra_core::db::entity::read_grant::Entity::find().count(app.service.db()).await.unwrap();
    assert_eq!(grants, 0, "the grant went with its channel");
    let last = stream.next(Duration::from_secs(5)).await.expect("the live stream is told");
    assert_eq!(last.event, "deleted");
    assert!(stream.ends_within(Duration::from_secs(2)).await);
}

async fn orphans_are_reconciled_after_grace(backend: Backend) {
    let app = app(backend).await;
    let channel = app.create_channel("public").await;
    let channel_id = channel["channel_id"].as_str().unwrap();
    let real: Value = app.publish_text(&channel, "real").await.json().await.unwrap();
    let lost: Value = app.publish_text(&channel, "lost object").await.json().await.unwrap();
    // A crash between the object write and the row insert leaves this:
    let orphan = format!("channels/{channel_id}/{}", uuid::Uuid::now_v7());
    app.service.store().put(&orphan, Bytes::from_static(b"orphan"), "text/plain").await.unwrap();
    // And an object lost behind a row's back:
    app.service.store().delete(&app.object_key(lost["message_id"].as_str().unwrap()).await).await.unwrap();

    let early = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!((early.orphan_objects, early.rows_without_object), (0, 0), "within the grace period nothing is touched");
    assert!(app.service.store().get(&orphan).await.is_ok());

    app.clock.advance(chrono::Duration::minutes(61));
    let report = app.service.sweep_once(&settings()).await.unwrap();
    assert_eq!((report.orphan_objects, report.rows_without_object), (1, 1), "{report:?}");
    assert!(matches!(app.service.store().get(&orphan).await, Err(StoreError::NotFound)));
    assert_eq!(app.stored_payload(&real).await, b"real", "objects with rows stay");
    assert_eq!(message_rows(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_on_postgres_do_the_work_once() {
    let database = TestDatabase::create().await;
    // One database and one bucket of their own for both processes.
    let bucket = own_bucket_args(Backend::Postgres);
    let shared = || Options {
        roles: Some(vec![Role::Rest]),
        extra_args: [vec!["--database-url".into(), database.url.clone()], bucket.clone()].concat(),
        ..Default::default()
    };
    let a = spawn_app_with(Backend::Postgres, shared()).await;
    let b = spawn_app_with(Backend::Postgres, shared()).await;
    let channel = a.create_channel("public").await;
    let url = a.rest(&format!("/v1/channels/{}/publish?ttl=60", channel["channel_id"].as_str().unwrap()));
    for i in 0..40 {
        let response = a
            .client
            .post(&url)
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .body(format!("{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    a.clock.advance(chrono::Duration::seconds(61));
    b.clock.advance(chrono::Duration::seconds(61));
    let settings = SweepSettings { batch: 5, ..settings() };
    let mut total = 0;
    let mut ran = 0;
    for _ in 0..5 {
        let (left, right) = tokio::join!(a.service.sweep_once(&settings), b.service.sweep_once(&settings));
        for report in [left.expect("no error"), right.expect("no error")] {
            total += report.expired_messages;
            ran += u64::from(report.ran);
        }
    }
    assert_eq!(total, 40, "every expired message purged exactly once");
    assert!(ran >= 5, "each round at least one sweeper ran");
    assert_eq!(message_rows(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_gets_a_lifecycle_rule_at_startup() {
    let bucket_name = format!("chantra-rule-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let _app = spawn_app_with(
        Backend::Postgres,
        Options { extra_args: vec!["--s3-bucket".into(), bucket_name.clone()], ..Default::default() },
    )
    .await;
    let env = s3_env();
    let region = s3::Region::Custom { region: "us-east-1".into(), endpoint: env.endpoint };
    let credentials =
        s3::creds::Credentials::new(Some(&env.access_key), Some(&env.secret_key), None, None, None).unwrap();
    let bucket = s3::Bucket::new(&bucket_name, region, credentials).unwrap().with_path_style();
    let lifecycle = bucket.get_bucket_lifecycle().await.expect("the bucket has a lifecycle configuration");
    let rule = lifecycle.rules.iter().find(|r| r.id.as_deref() == Some("chantra-expire-orphans")).expect("our rule");
    assert_eq!(rule.status, "Enabled");
    assert_eq!(rule.expiration.as_ref().and_then(|e| e.days), Some(2));
}

//! Small payloads kept in the database (PAYLOAD_INLINE_MAX_BYTES): written
//! with their message, never an object in the store, read back from the
//! database once the cache has forgotten them, gone with their message, and
//! never taken for a row whose object is missing.

use std::time::Duration;

use chantra::cli::Role;
use chantra_core::db::entity::{message, message_payload};
use chantra_core::domain::MessageId;
use chantra_core::payload::StoreError;
use chantra_core::service::SweepSettings;
use sea_orm::{EntityTrait as _, PaginatorTrait as _};
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, own_bucket_args, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(small_payloads_live_in_the_database);

/// Payloads up to 16 bytes are kept in the database, on both backends.
async fn app(backend: Backend) -> TestApp {
    let mut extra_args = own_bucket_args(backend);
    extra_args.extend(["--payload-inline-max-bytes".into(), "16".into()]);
    spawn_app_with(backend, Options { roles: Some(vec![Role::Rest, Role::Channels]), extra_args, ..Default::default() })
        .await
}

async fn row(app: &TestApp, message: &Value) -> message::Model {
    let id: MessageId = message["message_id"].as_str().unwrap().parse().unwrap();
    message::Entity::find_by_id(id).one(app.service.db()).await.unwrap().expect("its row")
}

async fn publish(app: &TestApp, channel: &Value, query: &str, key: Option<&str>, body: &str) -> reqwest::Response {
    let id = channel["channel_id"].as_str().unwrap();
    let mut request = app
        .client
        .post(app.rest(&format!("/v1/channels/{id}/publish{query}")))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .header("content-type", "text/plain");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(body.to_owned()).send().await.unwrap()
}

/// The payloads a poll of the whole channel returns, oldest first.
async fn polled(app: &TestApp, channel: &Value) -> Vec<String> {
    let response = app.client.get(format!("{}?poll=1", app.channel_url(channel))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let messages: Value = response.json().await.unwrap();
    messages["messages"].as_array().unwrap().iter().map(|m| m["payload"].as_str().unwrap().to_owned()).collect()
}

async fn small_payloads_live_in_the_database(backend: Backend) {
    let app = app(backend).await;
    let channel = app.create_channel("public").await;
    let small: Value = publish(&app, &channel, "", None, "sixteen bytes!!!").await.json().await.unwrap();
    let large: Value = publish(&app, &channel, "", None, "seventeen bytes!!").await.json().await.unwrap();
    let short: Value = publish(&app, &channel, "?ttl=60", None, "short-lived").await.json().await.unwrap();

    let (small_row, large_row, short_row) = (row(&app, &small).await, row(&app, &large).await, row(&app, &short).await);
    assert!(small_row.payload_inline && short_row.payload_inline && !large_row.payload_inline);
    let store = app.service.store();
    // What the cache in front of the store forgot is asked of the store itself.
    store.forget(&small_row.payload_object_key);
    assert!(matches!(store.get(&small_row.payload_object_key).await, Err(StoreError::NotFound)), "no object");
    assert_eq!(store.get(&large_row.payload_object_key).await.unwrap().as_ref(), b"seventeen bytes!!");
    assert_eq!(app.stored_payload(&small).await, b"sixteen bytes!!!");

    // Read from the database now that the cache forgot it.
    assert_eq!(polled(&app, &channel).await, ["sixteen bytes!!!", "seventeen bytes!!", "short-lived"]);

    // A retry with the same Idempotency-Key compares with the payload in the database.
    let first = publish(&app, &channel, "", Some("k-1"), "once").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    store.forget(&row(&app, &first).await.payload_object_key);
    let retry = publish(&app, &channel, "", Some("k-1"), "once").await;
    assert_eq!((retry.status().as_u16(), retry.headers()["idempotent-replayed"].to_str().unwrap()), (201, "true"));
    assert_eq!(publish(&app, &channel, "", Some("k-1"), "twice").await.status(), 409);

    // Past the orphan grace and the short TTL: the expired message goes with
    // its payload row; the others are not rows "without an object".
    app.clock.advance(chrono::Duration::minutes(61));
    let settings =
        SweepSettings { interval: Duration::from_secs(60), batch: 2, orphan_grace: chrono::Duration::hours(1) };
    let report = app.service.sweep_once(&settings).await.unwrap();
    assert_eq!((report.expired_messages, report.rows_without_object, report.orphan_objects), (1, 0, 0), "{report:?}");
    let payload_rows = message_payload::Entity::find().count(app.service.db()).await.unwrap();
    assert_eq!(payload_rows, 2, "the small message's and the idempotent one's");
    assert_eq!(polled(&app, &channel).await, ["sixteen bytes!!!", "seventeen bytes!!", "once"]);

    // Deleting the channel takes the payload rows with it.
    let deleted = app.delete_channel(&channel).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(message_payload::Entity::find().count(app.service.db()).await.unwrap(), 0);
}

//! Creating, reading and deleting channels.

use serde_json::{Value, json};

use crate::helpers::{Backend, redact, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    create_public_and_private,
    create_with_empty_body_is_public,
    create_rejects_bad_bodies,
    get_channel_metadata,
    channel_auth_errors,
    delete_removes_everything,
);

async fn create_public_and_private(backend: Backend) {
    let app = spawn_app(backend).await;
    let public = app.create_channel("public").await;
    let private = app.create_channel("private").await;
    insta::assert_json_snapshot!("create_public", redact(&public));
    insta::assert_json_snapshot!("create_private", redact(&private));
    let id = public["channel_id"].as_str().unwrap();
    assert_eq!(public["url"], format!("http://channels.test/channel/v1/public/{id}"));
    assert_ne!(public["publish_token"], private["publish_token"]);
}

async fn create_with_empty_body_is_public(backend: Backend) {
    let app = spawn_app(backend).await;
    let null_body = app
        .client
        .post(app.rest("/v1/channels"))
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(null_body.status(), 201, "a JSON null body is an absent body");
    let response = app.client.post(app.rest("/v1/channels")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["visibility"], "public");
    assert!(body.get("read_token").is_none());
}

async fn create_rejects_bad_bodies(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: [(&str, &str, u16, &str); 6] = [
        ("application/json", "{not json", 400, "invalid_json"),
        ("application/json", r#"["private"]"#, 400, "invalid_json"),
        ("application/json", r#"{"visibility":"secret"}"#, 400, "invalid_json"),
        ("application/json", r#"{"visiblity":"private"}"#, 400, "invalid_json"),
        ("application/json", "[1,2]", 400, "invalid_json"),
        ("text/plain", r#"{"visibility":"private"}"#, 415, "unsupported_media_type"),
    ];
    let mut bodies = Vec::new();
    for (content_type, body, status, code) in cases {
        let response = app
            .client
            .post(app.rest("/v1/channels"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
        bodies.push(error);
    }
    let oversized = app
        .client
        .post(app.rest("/v1/channels"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"visibility":"public","x":"{}"}}"#, "a".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    insta::assert_json_snapshot!("create_errors", bodies);
}

async fn get_channel_metadata(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("private").await;
    let fresh: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(fresh["last_published_at"], Value::Null);
    assert_eq!(fresh["live_messages"], 0);
    assert_eq!(fresh["read_grants"].as_array().unwrap().len(), 1);
    assert_eq!(fresh["read_grants"][0]["label"], "initial");
    assert_eq!(fresh["read_grants"][0]["state"], "active");
    // Idle deletion is 30 days after creation while nothing was published.
    let created = chrono::DateTime::parse_from_rfc3339(fresh["created_at"].as_str().unwrap()).unwrap();
    let idle = chrono::DateTime::parse_from_rfc3339(fresh["idle_deletion_at"].as_str().unwrap()).unwrap();
    assert_eq!(idle - created, chrono::Duration::days(30));

    assert_eq!(app.publish_text(&channel, "one").await.status(), 201);
    let published: Value = app.publish_text(&channel, "two").await.json().await.unwrap();
    let after = app.get_channel(&channel).await;
    assert_eq!(after.status(), 200);
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["live_messages"], 2);
    assert_eq!(after["last_published_at"], published["created_at"]);
    let last = chrono::DateTime::parse_from_rfc3339(after["last_published_at"].as_str().unwrap()).unwrap();
    let idle = chrono::DateTime::parse_from_rfc3339(after["idle_deletion_at"].as_str().unwrap()).unwrap();
    assert_eq!(idle - last, chrono::Duration::days(30));
    assert!(after.to_string().find("chr_").is_none(), "metadata must never contain tokens");
    insta::assert_json_snapshot!("get_channel", redact(&after));
}

async fn channel_auth_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("private").await;
    let other = app.create_channel("public").await;
    let id = channel["channel_id"].as_str().unwrap();
    let path = format!("/v1/channels/{id}");

    let missing = app.client.get(app.rest(&path)).send().await.unwrap();
    let malformed = app.client.get(app.rest(&path)).header("x-publish-token", "chp_nope").send().await.unwrap();
    let others = app
        .client
        .get(app.rest(&path))
        .header("x-publish-token", other["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let read_token = app
        .client
        .get(app.rest(&path))
        .header("x-publish-token", channel["read_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let bearer =
        app.client.get(app.rest(&path)).bearer_auth(channel["publish_token"].as_str().unwrap()).send().await.unwrap();
    let unknown = app
        .client
        .get(app.rest(&format!("/v1/channels/{}", uuid::Uuid::now_v7())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let bad_id = app
        .client
        .get(app.rest("/v1/channels/not-a-uuid"))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();

    assert_eq!(bearer.status(), 200, "Authorization: Bearer works too");
    let mut errors = Vec::new();
    for (name, response, status) in [
        ("missing", missing, 401),
        ("malformed", malformed, 401),
        ("other_channels_token", others, 401),
        ("read_token_as_publish_token", read_token, 401),
        ("unknown_channel", unknown, 404),
        ("malformed_id", bad_id, 400),
    ] {
        assert_eq!(response.status(), status, "{name}");
        let body: Value = response.json().await.unwrap();
        errors.push(json!({ "case": name, "body": body }));
    }
    insta::assert_json_snapshot!("channel_auth_errors", errors);
}

async fn delete_removes_everything(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("private").await;
    let id = channel["channel_id"].as_str().unwrap();
    let message: Value = app.publish_text(&channel, "bye").await.json().await.unwrap();
    assert_eq!(app.stored_payload(&message).await, b"bye");
    let key = app.object_key(message["message_id"].as_str().unwrap()).await;

    let wrong = app
        .client
        .delete(app.rest(&format!("/v1/channels/{id}")))
        .header("x-publish-token", app.create_channel("public").await["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let deleted = app.delete_channel(&channel).await;
    assert_eq!(deleted.status(), 204);
    assert!(deleted.bytes().await.unwrap().is_empty());

    assert_eq!(app.get_channel(&channel).await.status(), 404);
    assert_eq!(app.publish_text(&channel, "again").await.status(), 404);
    assert!(
        matches!(app.service.store().get(&key).await, Err(chantra_core::payload::StoreError::NotFound)),
        "the payload object is gone"
    );
    use sea_orm::{EntityTrait as _, PaginatorTrait as _};
    let grants = chantra_core::db::entity::read_grant::Entity::find().count(app.service.db()).await.unwrap();
    let messages = chantra_core::db::entity::message::Entity::find().count(app.service.db()).await.unwrap();
    assert_eq!((grants, messages), (0, 0), "grants and messages went with the channel");
}

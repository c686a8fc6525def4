//! Read grants: create, list (in channel metadata), expire and revoke.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, redact, spawn_app};
use crate::on_both_backends;

on_both_backends!(grant_lifecycle, grant_errors);

fn grants_url(app: &TestApp, channel: &Value) -> String {
    app.rest(&format!("/v1/channels/{}/read-grants", channel["channel_id"].as_str().unwrap()))
}

async fn create_grant(app: &TestApp, channel: &Value, body: Value) -> reqwest::Response {
    app.client
        .post(grants_url(app, channel))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn revoke(app: &TestApp, channel: &Value, grant_id: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/{grant_id}/revoke", grants_url(app, channel)))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
}

async fn grant_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("private").await;

    let dashboard = create_grant(&app, &channel, json!({ "label": "dashboard" })).await;
    assert_eq!(dashboard.status(), 201);
    let dashboard: Value = dashboard.json().await.unwrap();
    assert!(dashboard["read_token"].as_str().unwrap().starts_with("chr_"));
    assert_ne!(dashboard["read_token"], channel["read_token"]);
    insta::assert_json_snapshot!("grant_created", redact(&dashboard));

    let short: Value =
        create_grant(&app, &channel, json!({ "label": "short", "expires_in_seconds": 60 })).await.json().await.unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(short["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(short["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::seconds(60));

    // A grant without a body: no label, no expiry.
    let bare = app
        .client
        .post(grants_url(&app, &channel))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 201);
    let bare: Value = bare.json().await.unwrap();
    assert_eq!(bare["label"], Value::Null);
    assert_eq!(bare["expires_at"], Value::Null);

    let revoked = revoke(&app, &channel, dashboard["grant_id"].as_str().unwrap()).await;
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert_eq!(revoked["state"], "revoked");
    assert!(revoked.get("read_token").is_none());
    // Revoking again changes nothing.
    let again: Value = revoke(&app, &channel, dashboard["grant_id"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(again, revoked);
    insta::assert_json_snapshot!("grant_revoked", redact(&revoked));

    app.clock.advance(chrono::Duration::seconds(61));
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    let states: Vec<(&str, &str)> = metadata["read_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["label"].as_str().unwrap_or("-"), g["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("initial", "active"), ("dashboard", "revoked"), ("short", "expired"), ("-", "active")]);
    assert!(!metadata.to_string().contains("chr_"));
}

async fn grant_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let private = app.create_channel("private").await;
    let public = app.create_channel("public").await;
    let other_private = app.create_channel("private").await;
    let foreign: Value = create_grant(&app, &other_private, json!({})).await.json().await.unwrap();

    let mut errors = Vec::new();
    let on_public = create_grant(&app, &public, json!({})).await;
    errors.push(("public_channel", 409, on_public));
    errors.push(("label_too_long", 400, create_grant(&app, &private, json!({ "label": "x".repeat(201) })).await));
    errors.push(("expiry_zero", 400, create_grant(&app, &private, json!({ "expires_in_seconds": 0 })).await));
    errors.push((
        "expiry_too_long",
        400,
        create_grant(&app, &private, json!({ "expires_in_seconds": 400 * 86_400 })).await,
    ));
    errors.push(("unknown_grant", 404, revoke(&app, &private, &uuid::Uuid::now_v7().to_string()).await));
    errors.push(("grant_of_other_channel", 404, revoke(&app, &private, foreign["grant_id"].as_str().unwrap()).await));
    errors.push(("malformed_grant_id", 400, revoke(&app, &private, "grant-1").await));
    let wrong_token = app
        .client
        .post(grants_url(&app, &private))
        .header("x-publish-token", other_private["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    errors.push(("wrong_token", 401, wrong_token));

    let mut bodies = Vec::new();
    for (name, status, response) in errors {
        assert_eq!(response.status(), status, "{name}");
        let body: Value = response.json().await.unwrap();
        bodies.push(json!({ "case": name, "body": body }));
    }
    // The other channel's grant is untouched.
    let other: Value = app.get_channel(&other_private).await.json().await.unwrap();
    assert!(other["read_grants"].as_array().unwrap().iter().all(|g| g["state"] == "active"));
    insta::assert_json_snapshot!("grant_errors", bodies);
}

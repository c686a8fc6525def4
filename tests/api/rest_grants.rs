//! Read grants: create, list (in channel metadata), expire and revoke.

use serde_json::{Value, json};

use chantra::cli::Role;
use chantra_core::domain::{ChannelId, ReadToken};

use crate::helpers::{Backend, Options, TestApp, own_bucket_args, redact, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    grant_lifecycle,
    grant_errors,
    grants_per_channel_are_capped,
    ended_grants_are_purged_after_the_grace,
    channel_view_caps_grants_and_the_list_pages_through_all
);

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

fn sweep_settings() -> chantra_core::service::SweepSettings {
    chantra_core::service::SweepSettings {
        interval: std::time::Duration::from_secs(60),
        batch: 2,
        orphan_grace: chrono::Duration::hours(1),
    }
}

async fn list_grants(app: &TestApp, channel: &Value, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{query}", grants_url(app, channel)))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
}

async fn grants_per_channel_are_capped(backend: Backend) {
    // Its sweep moves the clock a day on: a bucket of its own (helpers::own_bucket_args).
    let extra_args = [vec!["--max-grants-per-channel".into(), "3".into()], own_bucket_args(backend)].concat();
    let options = Options { extra_args, ..Default::default() };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("private").await; // its initial grant is the first
    let second: Value = create_grant(&app, &channel, json!({})).await.json().await.unwrap();
    assert_eq!(create_grant(&app, &channel, json!({})).await.status(), 201);

    let refused = create_grant(&app, &channel, json!({ "label": "fourth" })).await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_grants", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains('3'), "{body}");

    // A revoked grant still counts until it is purged: the bound is on rows.
    assert_eq!(revoke(&app, &channel, second["grant_id"].as_str().unwrap()).await.status(), 200);
    assert_eq!(create_grant(&app, &channel, json!({})).await.status(), 409);
    app.clock.advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
    let report = app.service.sweep_once(&sweep_settings()).await.unwrap();
    assert_eq!(report.purged_grants, 1);
    assert_eq!(create_grant(&app, &channel, json!({})).await.status(), 201);
    assert_eq!(create_grant(&app, &channel, json!({})).await.status(), 409);

    // Concurrent creations cannot overshoot the cap.
    let other = app.create_channel("private").await;
    let racing = futures::future::join_all((0..8).map(|_| create_grant(&app, &other, json!({})))).await;
    let created = racing.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 2, "{:?}", racing.iter().map(|r| r.status()).collect::<Vec<_>>());
    let listed: Value = list_grants(&app, &other, "").await.json().await.unwrap();
    assert_eq!(listed["read_grants"].as_array().unwrap().len(), 3);
}

async fn ended_grants_are_purged_after_the_grace(backend: Backend) {
    let options = Options {
        roles: Some(vec![Role::Rest, Role::Channels]),
        // Its sweeps move the clock a day on: a bucket of its own (helpers::own_bucket_args).
        extra_args: [vec!["--grant-purge-grace-secs".into(), "3600".into()], own_bucket_args(backend)].concat(),
        ..Default::default()
    };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("private").await;
    let id = ChannelId::parse(channel["channel_id"].as_str().unwrap()).unwrap();
    let revoked: Value = create_grant(&app, &channel, json!({ "label": "revoked" })).await.json().await.unwrap();
    let expiring: Value = create_grant(&app, &channel, json!({ "label": "expiring", "expires_in_seconds": 600 }))
        .await
        .json()
        .await
        .unwrap();
    let kept: Value = create_grant(&app, &channel, json!({ "label": "kept" })).await.json().await.unwrap();
    revoke(&app, &channel, revoked["grant_id"].as_str().unwrap()).await;
    let read = |grant: &Value| {
        let token = ReadToken::parse(grant["read_token"].as_str().unwrap()).unwrap();
        let service = app.service.clone();
        async move { service.authorize_reader(id, None, Some(&token)).await.map(|_| ()).map_err(|e| e.code()) }
    };

    // Within the grace the ended grants are still known, and say why they end.
    app.clock.advance(chrono::Duration::minutes(59));
    assert_eq!(app.service.sweep_once(&sweep_settings()).await.unwrap().purged_grants, 0);
    assert_eq!(read(&revoked).await, Err("grant_revoked"));
    assert_eq!(read(&expiring).await, Err("grant_expired"));
    let states: Vec<String> = app.get_channel(&channel).await.json::<Value>().await.unwrap()["read_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["active", "revoked", "expired", "active"]);

    // Past it they are gone: their tokens are simply unknown now.
    app.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(app.service.sweep_once(&sweep_settings()).await.unwrap().purged_grants, 1);
    assert_eq!(read(&revoked).await, Err("invalid_token"));
    assert_eq!(read(&expiring).await, Err("grant_expired"), "it ended 10 min later, so is still in its grace");
    app.clock.advance(chrono::Duration::minutes(10));
    assert_eq!(app.service.sweep_once(&sweep_settings()).await.unwrap().purged_grants, 1);
    assert_eq!(read(&expiring).await, Err("invalid_token"));
    assert_eq!(read(&kept).await, Ok(()));
    let labels: Vec<Value> = app.get_channel(&channel).await.json::<Value>().await.unwrap()["read_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["label"].clone())
        .collect();
    assert_eq!(labels, [json!("initial"), json!("kept")]);
}

async fn channel_view_caps_grants_and_the_list_pages_through_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("private").await;
    let mut created = vec![];
    for _ in 0..104 {
        let grant: Value = create_grant(&app, &channel, json!({})).await.json().await.unwrap();
        created.push(grant["grant_id"].as_str().unwrap().to_owned());
    }
    // 105 grants: the view shows the first 100, oldest first, and says there are more.
    let view: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(view["read_grants"].as_array().unwrap().len(), 100);
    assert_eq!(view["read_grants_total"], 105);
    assert_eq!(view["read_grants_truncated"], true);
    assert_eq!(view["read_grants"][1]["grant_id"], created[0]);

    // The list pages through every grant once, in the same order.
    let mut seen: Vec<String> = vec![];
    let mut query = "?limit=40".to_owned();
    let mut pages = 0;
    loop {
        let page = list_grants(&app, &channel, &query).await;
        assert_eq!(page.status(), 200);
        let page: Value = page.json().await.unwrap();
        pages += 1;
        seen.extend(page["read_grants"].as_array().unwrap().iter().map(|g| g["grant_id"].as_str().unwrap().to_owned()));
        assert!(!page.to_string().contains("chr_"), "no tokens in the list");
        if page["has_more"] == false {
            break;
        }
        query = format!("?limit=40&after={}", page["next_cursor"].as_str().unwrap());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 105);
    assert_eq!(seen[1..], created[..]);
    let default: Value = list_grants(&app, &channel, "").await.json().await.unwrap();
    assert_eq!(default["read_grants"].as_array().unwrap().len(), 100);

    for (query, code) in [
        ("?limit=0", "invalid_limit"),
        ("?limit=501", "invalid_limit"),
        ("?limit=ten", "invalid_limit"),
        ("?after=nope", "invalid_cursor"),
    ] {
        let response = list_grants(&app, &channel, query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], code, "{query}");
    }
    let wrong = app
        .client
        .get(grants_url(&app, &channel))
        .header("x-publish-token", app.create_channel("private").await["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

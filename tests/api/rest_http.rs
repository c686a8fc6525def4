//! Cross-cutting HTTP behaviour: health on every role, JSON 404/405, rate
//! limiting with trusted proxies, and the OpenAPI document.

use chantra::cli::Role;
use serde_json::Value;

use crate::helpers::{Backend, Options, sample, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    every_role_answers_health,
    unknown_routes_are_json,
    rate_limit_per_client,
    metrics_on_every_role,
    long_uris_are_refused
);

async fn every_role_answers_health(backend: Backend) {
    let app = spawn_app_with(backend, Options { roles: Some(Role::EACH.to_vec()), ..Default::default() }).await;
    assert_eq!(app.addrs.len(), 4);
    for role in Role::EACH {
        for path in ["/healthz", "/readyz"] {
            let response = app.client.get(app.url(role, path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{} {path}", role.name());
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["status"], "ok");
        }
    }
    let ready: Value = app.client.get(app.rest("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["payload_store"], "ok");
}

async fn unknown_routes_are_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.client.get(app.rest("/v2/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let wrong_method = app.client.put(app.rest("/v1/channels")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

async fn rate_limit_per_client(backend: Backend) {
    let limited = |trusted: &str| Options {
        extra_args: ["--rate-limit-per-second", "1", "--rate-limit-burst", "3", "--trusted-proxies", trusted]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    // 127.0.0.1 is not a trusted proxy here: X-Forwarded-For is ignored.
    let app = spawn_app_with(backend, limited("10.0.0.0/8")).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = app
            .client
            .get(app.rest("/healthz"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    // Behind a trusted proxy, each forwarded client has its own budget.
    let app = spawn_app_with(backend, limited("127.0.0.1/32")).await;
    for i in 0..5 {
        let response = app
            .client
            .get(app.rest("/healthz"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "client {i}");
    }
    let statuses: Vec<u16> = futures::future::join_all(
        (0..4).map(|_| app.client.get(app.rest("/healthz")).header("x-forwarded-for", "203.0.113.50").send()),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
}

#[tokio::test]
async fn openapi_document_is_stable() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.client.get(app.rest("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 5, "{paths:?}");
    let mut document = document;
    document["info"]["version"] = Value::String("[version]".into());
    insta::assert_json_snapshot!("openapi", document);
}

#[tokio::test]
async fn browsers_pass_cors_preflights() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options { roles: Some(vec![Role::Rest, Role::Channels]), ..Default::default() },
    )
    .await;
    let channel = app.create_channel("private").await;
    let id = channel["channel_id"].as_str().unwrap();
    let preflights = [
        (app.rest("/v1/channels"), "POST", "content-type"),
        (app.rest(&format!("/v1/channels/{id}/publish")), "POST", "content-type,x-publish-token,idempotency-key"),
        (app.url(Role::Channels, &format!("/channel/v1/private/{id}")), "GET", "authorization,last-event-id"),
    ];
    for (url, method, headers) in preflights {
        let response = app
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", "http://localhost:8080")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{url}");
        let allowed = response.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        for header in headers.split(',') {
            assert!(allowed.contains(header), "{url}: {header} not in {allowed}");
        }
    }
    // Actual responses carry the header too, errors included.
    let response =
        app.client.get(app.rest("/v1/channels/x")).header("origin", "http://localhost:8080").send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn channels_cors_can_be_restricted() {
    let options = Options {
        roles: Some(vec![Role::Channels]),
        extra_args: vec!["--cors-allowed-origins".into(), "https://app.example.test".into()],
        ..Default::default()
    };
    let app = spawn_app_with(Backend::Sqlite, options).await;
    let url = app.url(Role::Channels, &format!("/v1/public/{}", uuid::Uuid::now_v7()));
    let allowed = app.client.get(&url).header("origin", "https://app.example.test").send().await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.test");
    let other = app.client.get(&url).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

async fn metrics_on_every_role(backend: Backend) {
    let options = Options {
        roles: Some(Role::EACH.to_vec()),
        // The payload goes to the store, small as it is: its call is counted below.
        extra_args: vec!["--metrics-enabled".into(), "true".into(), "--payload-inline-max-bytes".into(), "0".into()],
        ..Default::default()
    };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("public").await;
    let mut stream = crate::sse_client::connect(app.client.get(app.channel_url(&channel))).await;
    assert_eq!(app.publish_text(&channel, "counted").await.status(), 201);
    assert_eq!(stream.messages(1, std::time::Duration::from_secs(5)).await.len(), 1);

    for role in Role::EACH {
        let response = app.client.get(app.url(role, "/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", role.name());
        let text = response.text().await.unwrap();
        // The recorder is process-wide and nextest runs each test in a
        // process of its own: these are exactly this test's one publish,
        // one delivery and one open stream.
        assert_eq!(sample(&text, "chantra_publishes_total"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "chantra_deliveries_total"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "chantra_streams_active"), Some(1.0), "{text}");
        assert!(text.contains("chantra_http_request_duration_seconds_bucket{role=\"rest\",status=\"201\""), "{text}");
        assert!(text.contains("chantra_db_query_duration_seconds_count{outcome=\"ok\"}"), "{text}");
        assert!(text.contains("chantra_store_call_duration_seconds_count{op=\"put\",outcome=\"ok\"}"), "{text}");
    }

    // Off by default.
    let plain = spawn_app(backend).await;
    assert_eq!(plain.client.get(plain.rest("/metrics")).send().await.unwrap().status(), 404);
}

async fn long_uris_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = format!("/v1/channels/{}", "a".repeat(chantra::http::MAX_URI_BYTES));
    let response = app.client.get(app.rest(&long)).send().await.unwrap();
    assert_eq!(response.status(), 414);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "uri_too_long");
    // Just under the limit is an ordinary request (here: not a channel id).
    let fits = format!("/v1/channels/{}", "a".repeat(chantra::http::MAX_URI_BYTES - 100));
    assert_eq!(app.client.get(app.rest(&fits)).send().await.unwrap().status(), 400);
}

/// A query parameter the route does not know is refused with 400 naming it,
/// on every REST route, as unknown JSON fields are: a misspelt option must
/// not silently fall back to a default (a public channel, a 48 h TTL).
#[tokio::test]
async fn unknown_query_parameters_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let channel = app.create_channel("private").await;
    let id = channel["channel_id"].as_str().unwrap();
    let token = channel["publish_token"].as_str().unwrap();
    let grant = uuid::Uuid::now_v7();
    let client = &app.client;
    let cases = [
        ("create_channel", client.post(app.rest("/v1/channels?visibility=private")), "visibility", "none"),
        ("get_channel", client.get(app.rest(&format!("/v1/channels/{id}?verbose=1"))), "verbose", "none"),
        ("delete_channel", client.delete(app.rest(&format!("/v1/channels/{id}?force=true"))), "force", "none"),
        (
            "publish",
            client.post(app.rest(&format!("/v1/channels/{id}/publish?ttl_seconds=5"))).body("m"),
            "ttl_seconds",
            "ttl",
        ),
        (
            "create_grant",
            client.post(app.rest(&format!("/v1/channels/{id}/read-grants?expires_in_seconds=5"))),
            "expires_in_seconds",
            "none",
        ),
        (
            "list_grants",
            client.get(app.rest(&format!("/v1/channels/{id}/read-grants?limit=5&offset=10"))),
            "offset",
            "after, limit",
        ),
        (
            "revoke_grant",
            client.post(app.rest(&format!("/v1/channels/{id}/read-grants/{grant}/revoke?now=1"))),
            "now",
            "none",
        ),
        ("openapi", client.get(app.rest("/openapi.json?format=yaml")), "format", "none"),
    ];
    for (route, request, name, accepted) in cases {
        let response = request.header("x-publish-token", token).send().await.unwrap();
        assert_eq!(response.status(), 400, "{route}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unknown_query_parameter", "{route}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{name}`")), "{route}: {message}");
        assert!(message.contains(accepted), "{route}: {message}");
    }
    // Nothing was done: the channel is still there with no message, and the
    // known parameters still work.
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 0);
    assert_eq!(metadata["read_grants"].as_array().unwrap().len(), 1);
    let published = client
        .post(app.rest(&format!("/v1/channels/{id}/publish?ttl=60")))
        .header("x-publish-token", token)
        .body("m")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let listed =
        client.get(app.rest(&format!("/v1/channels/{id}/read-grants?limit=5"))).header("x-publish-token", token);
    assert_eq!(listed.send().await.unwrap().status(), 200);
}

//! Publishing: both body forms, validation, limits, idempotency and what
//! happens when the payload store is down.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chantra::cli::Role;
use chantra_core::payload::StoreError;
use serde_json::{Value, json};

use crate::helpers::{Backend, FaultProxy, Options, redact, s3_env, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    publish_raw_and_json,
    publish_rejects_bad_input,
    payload_limit_is_enforced,
    publish_token_of_another_channel,
    idempotency_key_prevents_duplicates,
    store_unavailable_writes_nothing,
    concurrent_publishes_keep_order_per_channel,
    idempotency_key_with_another_request_conflicts,
    timed_out_publish_tells_the_truth,
);

fn publish_url(app: &crate::helpers::TestApp, channel: &Value) -> String {
    app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()))
}

/// The media type of the base64 envelope (application/json is a JSON payload).
pub const ENVELOPE: &str = "application/vnd.chantra.envelope+json";

fn token(channel: &Value) -> &str {
    channel["publish_token"].as_str().unwrap()
}

async fn stored(app: &crate::helpers::TestApp, message: &Value) -> Vec<u8> {
    app.stored_payload(message).await
}

async fn live_messages(app: &crate::helpers::TestApp, channel: &Value) -> u64 {
    let body: Value = app.get_channel(channel).await.json().await.unwrap();
    body["live_messages"].as_u64().unwrap()
}

async fn publish_raw_and_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("public").await;

    // Raw binary body with a TTL from the query string.
    let binary: Vec<u8> = (0..=255u8).collect();
    let raw = app
        .client
        .post(format!("{}?ttl=60", publish_url(&app, &channel)))
        .header("x-publish-token", token(&channel))
        .header("content-type", "application/octet-stream")
        .body(binary.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 201);
    let raw: Value = raw.json().await.unwrap();
    assert_eq!(stored(&app, &raw).await, binary);
    assert_eq!(raw["payload_size"], 256);
    let created = chrono::DateTime::parse_from_rfc3339(raw["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(raw["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::seconds(60));

    // The envelope (its own media type) with base64, TTL and content type; default TTL is 48 h.
    let json_body = json!({ "payload": STANDARD.encode("héllo\nworld"), "ttl_seconds": 120, "content_type": "text/plain; charset=utf-8" });
    let enveloped = app
        .client
        .post(publish_url(&app, &channel))
        .header("x-publish-token", token(&channel))
        .header("content-type", ENVELOPE)
        .body(json_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(enveloped.status(), 201);
    let enveloped: Value = enveloped.json().await.unwrap();
    assert_eq!(stored(&app, &enveloped).await, "héllo\nworld".as_bytes());
    assert_eq!(enveloped["content_type"], "text/plain; charset=utf-8");

    // curl -d 'text' sends a form content type: stored as text.
    let form = app
        .client
        .post(publish_url(&app, &channel))
        .header("x-publish-token", token(&channel))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("plain words")
        .send()
        .await
        .unwrap();
    let form: Value = form.json().await.unwrap();
    assert_eq!(form["content_type"], "text/plain; charset=utf-8");
    let created = chrono::DateTime::parse_from_rfc3339(form["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(form["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::hours(48));

    // Ids are UUIDv7 and increase: they are the resume cursor.
    let ids: Vec<uuid::Uuid> =
        [&raw, &enveloped, &form].iter().map(|m| m["message_id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.iter().all(|id| id.get_version_num() == 7));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(live_messages(&app, &channel).await, 3);
    insta::assert_json_snapshot!("publish_json", redact(&enveloped));
}

async fn publish_rejects_bad_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("public").await;
    let url = publish_url(&app, &channel);
    let json_cases = [
        ("bad_base64", json!({ "payload": "%%%not base64%%%" }), "invalid_payload"),
        ("ttl_zero", json!({ "payload": "aGk=", "ttl_seconds": 0 }), "invalid_ttl"),
        ("ttl_over_48h", json!({ "payload": "aGk=", "ttl_seconds": 172_801 }), "invalid_ttl"),
        ("unknown_field", json!({ "payload": "aGk=", "tll_seconds": 5 }), "invalid_json"),
        ("array_body", json!(["aGk=", 60, "text/plain"]), "invalid_json"),
        ("missing_payload", json!({ "ttl_seconds": 5 }), "invalid_json"),
        ("empty_payload", json!({ "payload": "" }), "empty_payload"),
        ("bad_content_type", json!({ "payload": "aGk=", "content_type": "nonsense" }), "invalid_content_type"),
    ];
    let mut errors = Vec::new();
    for (name, body, code) in json_cases {
        let response = app
            .client
            .post(&url)
            .header("x-publish-token", token(&channel))
            .header("content-type", ENVELOPE)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}");
        errors.push(json!({ "case": name, "body": body }));
    }
    let raw_cases = [
        ("invalid_json_text", url.clone(), "application/json", "{oops", "invalid_json"),
        ("invalid_json_suffix", url.clone(), "application/ld+json; charset=utf-8", "[1,", "invalid_json"),
        ("query_ttl_zero", format!("{url}?ttl=0"), "text/plain", "hi", "invalid_ttl"),
        ("query_ttl_word", format!("{url}?ttl=forever"), "text/plain", "hi", "invalid_ttl"),
        ("empty_raw", url.clone(), "text/plain", "", "empty_payload"),
    ];
    for (name, target, content_type, body, code) in raw_cases {
        let response = app
            .client
            .post(target)
            .header("x-publish-token", token(&channel))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{name}");
        errors.push(json!({ "case": name, "body": body }));
    }
    let bad_key = app
        .client
        .post(&url)
        .header("x-publish-token", token(&channel))
        .header("idempotency-key", "has spaces in it")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 400);
    let missing_token = app.client.post(&url).body("x").send().await.unwrap();
    assert_eq!(missing_token.status(), 401);
    let bad_channel = app
        .client
        .post(app.rest("/v1/channels/1234/publish"))
        .header("x-publish-token", token(&channel))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_channel.status(), 400);
    assert_eq!(live_messages(&app, &channel).await, 0, "no rejected publish left a message");
    insta::assert_json_snapshot!("publish_errors", errors);
}

async fn payload_limit_is_enforced(backend: Backend) {
    let options = Options { extra_args: vec!["--max-payload-bytes".into(), "1024".into()], ..Default::default() };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("public").await;
    let url = publish_url(&app, &channel);
    let send_raw = |body: Vec<u8>| app.client.post(&url).header("x-publish-token", token(&channel)).body(body).send();

    assert_eq!(send_raw(vec![b'a'; 1024]).await.unwrap().status(), 201, "exactly the limit is fine");
    let over = send_raw(vec![b'a'; 1025]).await.unwrap();
    assert_eq!(over.status(), 413);
    let over: Value = over.json().await.unwrap();
    assert_eq!(over["error"]["code"], "payload_too_large");
    assert!(over["error"]["message"].as_str().unwrap().contains("1024"));

    // A chunked body (no Content-Length) is cut off while streaming: the
    // server answers 413 before the client has finished sending.
    let response = send_chunked_until_refused(&url, token(&channel), 64, 512).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");

    // The limit applies to the decoded payload of an envelope too.
    let json_over = app
        .client
        .post(&url)
        .header("x-publish-token", token(&channel))
        .header("content-type", ENVELOPE)
        .body(json!({ "payload": STANDARD.encode(vec![7u8; 1025]) }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(json_over.status(), 413);
    assert_eq!(live_messages(&app, &channel).await, 1);
}

async fn publish_token_of_another_channel(backend: Backend) {
    let app = spawn_app(backend).await;
    let target = app.create_channel("public").await;
    let intruder = app.create_channel("public").await;
    let response = app
        .client
        .post(publish_url(&app, &target))
        .header("x-publish-token", token(&intruder))
        .body("spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    assert_eq!(live_messages(&app, &target).await, 0);

    // Once the process has checked the right token (and remembers its
    // fingerprint), every other token is still refused, the right one still accepted.
    let publish = |token: &str| app.client.post(publish_url(&app, &target)).header("x-publish-token", token).body("m");
    assert_eq!(publish(token(&target)).send().await.unwrap().status(), 201);
    let forged = format!("chp_{}", "A".repeat(43));
    for wrong in [token(&intruder), &forged] {
        assert_eq!(publish(wrong).send().await.unwrap().status(), 401);
    }
    assert_eq!(publish(token(&target)).send().await.unwrap().status(), 201);
    assert_eq!(live_messages(&app, &target).await, 2);
}

async fn idempotency_key_prevents_duplicates(backend: Backend) {
    let app = spawn_app(backend).await;
    let channel = app.create_channel("public").await;
    let send = |key: &'static str, body: &'static str| {
        app.client
            .post(publish_url(&app, &channel))
            .header("x-publish-token", token(&channel))
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let first = send("order-42", "once").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retry = send("order-42", "once").await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first, retry);
    let other: Value = send("order-43", "twice").await.unwrap().json().await.unwrap();
    assert_ne!(other["message_id"], first["message_id"]);
    assert_eq!(live_messages(&app, &channel).await, 2);

    // Concurrent retries with one key still create a single message.
    let racing = futures::future::join_all((0..8).map(|_| send("order-44", "race"))).await;
    let ids: std::collections::BTreeSet<String> = futures::future::join_all(racing.into_iter().map(|r| async {
        let r = r.unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_owned()
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    assert_eq!(live_messages(&app, &channel).await, 3);

    // After the message expires the key may be used again.
    app.clock.advance(chrono::Duration::hours(49));
    let reused: Value = send("order-42", "again").await.unwrap().json().await.unwrap();
    assert_ne!(reused["message_id"], first["message_id"]);
}

async fn store_unavailable_writes_nothing(backend: Backend) {
    // Each backend gets its store taken away for real: the payload directory
    // replaced by a file, or the S3 server behind a proxy that stops answering.
    let proxy = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let target: std::net::SocketAddr =
                s3_env().endpoint.trim_start_matches("http://").parse().expect("S3 endpoint is host:port");
            Some(FaultProxy::start(target).await)
        }
    };
    // Small payloads go to the store too (none kept in the database).
    let options = Options {
        s3_endpoint: proxy.as_ref().map(|p| format!("http://{}", p.addr)),
        extra_args: vec!["--payload-inline-max-bytes".into(), "0".into()],
        ..Default::default()
    };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("public").await;
    assert_eq!(app.publish_text(&channel, "before").await.status(), 201);

    let payloads = app.data_dir.path().join("payloads");
    match &proxy {
        Some(proxy) => proxy.set_up(false).await,
        None => {
            std::fs::rename(&payloads, app.data_dir.path().join("payloads.away")).unwrap();
            std::fs::write(&payloads, b"not a directory").unwrap();
        }
    }
    let response = app.publish_text(&channel, "during").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_unavailable");
    assert!(!body.to_string().contains("payloads"), "no internals leak: {body}");
    let ready = app.client.get(app.rest("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["payload_store"], "unavailable");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(live_messages(&app, &channel).await, 1, "no row without its object");

    match &proxy {
        Some(proxy) => proxy.set_up(true).await,
        None => {
            std::fs::remove_file(&payloads).unwrap();
            std::fs::rename(app.data_dir.path().join("payloads.away"), &payloads).unwrap();
        }
    }
    let after: Value = app.publish_text(&channel, "after").await.json().await.unwrap();
    assert_eq!(stored(&app, &after).await, b"after");
    assert_eq!(live_messages(&app, &channel).await, 2);
    assert!(!matches!(app.service.store().check().await, Err(StoreError::Unavailable(_))));
}

/// Sends `chunks` chunks of `size` bytes with chunked transfer encoding over
/// a raw socket, stopping at the first write the server refuses, and
/// returns whatever the server answered.
async fn send_chunked_until_refused(url: &str, token: &str, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let url = reqwest::Url::parse(url).unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: test\r\nX-Publish-Token: {token}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        url.path()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", "z".repeat(size));
    for _ in 0..chunks {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Concurrent publishes are written in shared transactions (group commit):
/// each still gets its own id, ids grow in the order readers receive them,
/// and a channel deleted mid-batch fails only its own messages.
async fn concurrent_publishes_keep_order_per_channel(backend: Backend) {
    let app =
        spawn_app_with(backend, Options { roles: Some(vec![Role::Rest, Role::Channels]), ..Default::default() }).await;
    let (a, b, doomed) =
        (app.create_channel("public").await, app.create_channel("public").await, app.create_channel("public").await);
    let follow = |channel: &Value| crate::sse_client::connect(app.client.get(app.channel_url(channel)));
    let (mut stream_a, mut stream_b) = (follow(&a).await, follow(&b).await);

    let publish = |channel: &Value, text: String| {
        app.client.post(publish_url(&app, channel)).header("x-publish-token", token(channel)).body(text).send()
    };
    let sends = (0..30).map(|i| {
        let channel = [&a, &b, &doomed][i % 3];
        publish(channel, format!("m{i}"))
    });
    let delete = app
        .client
        .delete(app.rest(&format!("/v1/channels/{}", doomed["channel_id"].as_str().unwrap())))
        .header("x-publish-token", token(&doomed))
        .send();
    let (responses, deleted) = futures::future::join(futures::future::join_all(sends), delete).await;
    assert_eq!(deleted.unwrap().status(), 204);

    let mut acknowledged = [Vec::new(), Vec::new()];
    for (i, response) in responses.into_iter().enumerate() {
        let response = response.unwrap();
        if i % 3 == 2 {
            assert!([201, 404].contains(&response.status().as_u16()), "doomed channel: {}", response.status());
            continue;
        }
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        acknowledged[i % 3].push(body["message_id"].as_str().unwrap().to_owned());
    }
    for (stream, acknowledged) in [(&mut stream_a, &acknowledged[0]), (&mut stream_b, &acknowledged[1])] {
        let received: Vec<String> = stream
            .messages(10, std::time::Duration::from_secs(10))
            .await
            .into_iter()
            .map(|e| e.id.expect("messages carry ids"))
            .collect();
        let mut sorted = received.clone();
        sorted.sort();
        assert_eq!(received, sorted, "delivered in id order");
        let mut expected = acknowledged.clone();
        expected.sort();
        assert_eq!(sorted, expected, "every acknowledged message, once");
    }
}

async fn idempotency_key_with_another_request_conflicts(backend: Backend) {
    // All roles: the same rule holds for MCP's publish_message.
    let app = spawn_app_with(backend, Options { roles: Some(Role::EACH.to_vec()), ..Default::default() }).await;
    let channel = app.create_channel("public").await;
    let send = |query: &'static str, content_type: &'static str, body: &'static str| {
        app.client
            .post(format!("{}{query}", publish_url(&app, &channel)))
            .header("x-publish-token", token(&channel))
            .header("idempotency-key", "order-42")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let first = send("?ttl=600", "text/plain", "first").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    // Another payload of the same size, another type, another TTL: each is refused.
    for (case, query, content_type, body) in [
        ("payload", "?ttl=600", "text/plain", "other"),
        ("size", "?ttl=600", "text/plain", "first, longer"),
        ("content_type", "?ttl=600", "text/csv", "first"),
        ("ttl", "?ttl=601", "text/plain", "first"),
        ("default_ttl", "", "text/plain", "first"),
    ] {
        let response = send(query, content_type, body).await.unwrap();
        assert_eq!(response.status(), 409, "{case}");
        assert!(response.headers().get("idempotent-replayed").is_none(), "{case}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "idempotency_conflict", "{case}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{case}: {error}");
    }
    // The same request again is a replay of the first message.
    let replay = send("?ttl=600", "text/plain", "first").await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first);
    assert_eq!(stored(&app, &first).await, b"first");
    assert_eq!(live_messages(&app, &channel).await, 1);

    // MCP's publish_message calls the same rule.
    let mut mcp = crate::mcp::McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let id = channel["channel_id"].as_str().unwrap();
    let call = |payload: &'static str| json!({ "channel_id": id, "publish_token": token(&channel), "payload": payload, "idempotency_key": "agent-1" });
    let (error, published) = mcp.call("publish_message", call("from an agent")).await;
    assert!(!error, "{published}");
    let (error, conflict) = mcp.call("publish_message", call("something else")).await;
    assert!(error, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    let (error, replayed) = mcp.call("publish_message", call("from an agent")).await;
    assert!(!error, "{replayed}");
    assert_eq!(replayed["message_id"], published["message_id"]);
    assert_eq!(live_messages(&app, &channel).await, 2);
}

/// Holds the channel's row locked (PostgreSQL) or the database's write lock
/// (SQLite) from another connection for `hold`, like a slow transaction would.
async fn lock_channel_for(app: &crate::helpers::TestApp, channel: &Value, hold: std::time::Duration) {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let txn = app.service.db().begin().await.unwrap();
    let id = channel["channel_id"].as_str().unwrap();
    let sql = match backend_of(app) {
        sea_orm::DbBackend::Postgres => format!("UPDATE channels SET visibility = visibility WHERE id = '{id}'"),
        // SQLite stores the UUID as bytes; any write takes the one write lock.
        _ => "UPDATE channels SET visibility = visibility".to_owned(),
    };
    txn.execute_unprepared(&sql).await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        txn.rollback().await.unwrap();
    });
}

fn backend_of(app: &crate::helpers::TestApp) -> sea_orm::DbBackend {
    app.service.db().get_database_backend()
}

async fn timed_out_publish_tells_the_truth(backend: Backend) {
    use std::time::{Duration, Instant};
    let options = Options { extra_args: vec!["--request-timeout-secs".into(), "2".into()], ..Default::default() };
    let app = spawn_app_with(backend, options).await;
    let channel = app.create_channel("public").await;
    assert_eq!(app.publish_text(&channel, "warm-up").await.status(), 201);

    // The writer waits 4 s for the lock, past the 2 s request timeout: once
    // the message is in the writer's hands the request waits for its outcome.
    lock_channel_for(&app, &channel, Duration::from_secs(4)).await;
    let started = Instant::now();
    let response = app.publish_text(&channel, "slow").await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(4_500).saturating_sub(started.elapsed())).await;
    let stored = live_messages(&app, &channel).await;
    assert!(status != 503 || stored == 1, "a 503 ({body}) but the message was stored");
    assert_eq!(status, 201, "{body}");
    assert_eq!(stored, 2);
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited for the lock");

    // SQLite gives up on a lock after its 5 s busy timeout: a truthful 503.
    if backend == Backend::Sqlite {
        lock_channel_for(&app, &channel, Duration::from_secs(7)).await;
        let response = app.publish_text(&channel, "refused").await;
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(live_messages(&app, &channel).await, 2, "a 503 ({body}) stores nothing");
    }
}

/// A client that sends its whole body before reading (Python's http.client,
/// most simple clients) reads the early 413, every time: the server reads
/// the rest of the body (bounded) before answering, rather than closing on
/// unread data, which resets the connection and loses the answer.
#[tokio::test]
async fn early_413_reaches_a_client_that_sends_everything() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app(Backend::Sqlite).await;
    let channel = app.create_channel("public").await;
    let addr = app.rest("").trim_start_matches("http://").to_owned();
    let path = format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap());
    let body = vec![b'x'; 2 * 1024 * 1024];
    for attempt in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Publish-Token: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            token(&channel),
            body.len()
        );
        let sent = async {
            socket.write_all(head.as_bytes()).await?;
            // In pieces, as a real client's buffered writes go: an answer
            // followed by a close while the body is still coming resets
            // the connection under the client's next write.
            for piece in body.chunks(64 * 1024) {
                socket.write_all(piece).await?;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let mut answer = Vec::new();
            // The server may close after answering: read until then (or until the JSON ends).
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await?;
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || answer.ends_with(b"}}") {
                    return Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned());
                }
            }
        };
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), sent)
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no answer within 10 s"))
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 413"), "attempt {attempt}: {answer}");
        assert!(answer.contains("payload_too_large"), "attempt {attempt}: {answer}");
    }
    assert_eq!(live_messages(&app, &channel).await, 0);
}

/// A raw Content-Type must be printable ASCII, as in the JSON envelope.
#[tokio::test]
async fn raw_content_type_with_non_ascii_bytes_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let channel = app.create_channel("public").await;
    let response = app
        .client
        .post(publish_url(&app, &channel))
        .header("x-publish-token", token(&channel))
        .header("content-type", reqwest::header::HeaderValue::from_bytes(b"text/pl\xe4in").unwrap())
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_content_type", "{body}");
    assert_eq!(live_messages(&app, &channel).await, 0);
}

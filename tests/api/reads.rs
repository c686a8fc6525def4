//! Reads people can use (issue 16): plain JSON publish delivered as that
//! document, text as text, binary as base64 — over SSE, a poll and NDJSON —
//! and the poll's and NDJSON's cursor, limits, gaps and endings.

use std::time::Duration;

use chantra::cli::Role;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::spawn_rest_channels as app_with;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::sse_client;

const WAIT: Duration = Duration::from_secs(10);
const ENVELOPE: &str = "application/vnd.chantra.envelope+json";

on_both_backends!(
    plain_json_is_delivered_as_that_document,
    poll_pages_through_the_channel,
    poll_access_and_endings,
    poll_reports_gaps_and_bounds,
    ndjson_resumes_and_ends,
);

/// The channel's read URL on the channels role (under /channel, as returned).
fn read_url(app: &TestApp, channel: &Value) -> String {
    app.channel_url(channel)
}

async fn publish(
    app: &TestApp,
    channel: &Value,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn published_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["message_id"].as_str().unwrap().to_owned()
}

async fn poll(app: &TestApp, url: &str, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(format!("{url}?poll=1{query}"));
    if let Some(token) = token {
        request = request.header("x-read-token", token);
    }
    request.send().await.unwrap()
}

async fn poll_ok(app: &TestApp, url: &str, query: &str) -> Value {
    let response = poll(app, url, query, None).await;
    assert_eq!(response.status(), 200, "{query}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

fn ids(messages: &Value) -> Vec<String> {
    messages.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// An NDJSON reader: one JSON value per line, read as the lines arrive.
struct Lines {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Lines {
    async fn open(request: reqwest::RequestBuilder) -> Lines {
        let response = request.send().await.unwrap();
        Lines {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        }
    }

    /// The next line, or `None` when the body ends or nothing comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let text = std::str::from_utf8(&line[..end]).expect("lines are UTF-8");
                return Some(serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// The next line that is not a keep-alive.
    async fn event(&mut self) -> Value {
        loop {
            let line = self.next(WAIT).await.expect("a line within the wait");
            if line["event"] != "keepalive" {
                return line;
            }
        }
    }
}

async fn plain_json_is_delivered_as_that_document(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let url = read_url(&app, &channel);
    let mut sse = sse_client::connect(app.client.get(&url)).await;
    assert_eq!(sse.status, 200);

    // A pretty-printed document, with numbers a float would not keep.
    let document = "{\n  \"temp\": 21.50,\n  \"big\": 12345678901234567890,\n  \"note\": \"a \\\"quote\\\"\\n\"\n}\n";
    let json_id = published_id(publish(&app, &channel, "application/json", document).await).await;
    let text_id = published_id(publish(&app, &channel, "text/plain; charset=utf-8", "héllo\nworld").await).await;
    let binary: Vec<u8> = vec![0, 159, 146, 150, 255];
    let binary_id = published_id(publish(&app, &channel, "application/octet-stream", binary.clone()).await).await;
    // The envelope still works under its own media type; a JSON content type in it is delivered as JSON.
    let envelope = json!({ "payload": "eyJlbnZlbG9wZWQiOnRydWV9", "content_type": "application/json" }).to_string();
    let enveloped_id = published_id(publish(&app, &channel, ENVELOPE, envelope).await).await;

    // Invalid JSON under a JSON type is refused, and stores nothing.
    for (content_type, body) in [("application/json", "{\"temp\":"), ("application/problem+json", "")] {
        let refused = publish(&app, &channel, content_type, body).await;
        assert_eq!(refused.status(), 400, "{content_type}");
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_json", "{content_type}: {error}");
    }
    // application/json is a payload now, never the envelope: an envelope-shaped body is that document.
    let shaped = published_id(publish(&app, &channel, "application/json", r#"{"payload":"aGk="}"#).await).await;

    let expected_ids = [json_id.clone(), text_id, binary_id, enveloped_id, shaped];
    let check = |messages: &[Value], how: &str| {
        let got: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(got, expected_ids.iter().map(String::as_str).collect::<Vec<_>>(), "{how}");
        assert_eq!(messages[0]["encoding"], "json", "{how}");
        assert_eq!(messages[0]["content_type"], "application/json", "{how}");
        assert_eq!(messages[0]["payload"]["temp"], json!(21.5), "{how}");
        assert_eq!(messages[0]["payload"]["note"], "a \"quote\"\n", "{how}");
        assert_eq!(messages[1]["encoding"], "text", "{how}");
        assert_eq!(messages[1]["payload"], "héllo\nworld", "{how}");
        assert_eq!(messages[2]["encoding"], "base64", "{how}");
        assert_eq!(messages[2]["payload"], "AJ+Slv8=", "{how}");
        assert_eq!(sse_client::payload_bytes(&messages[2]), binary, "{how}");
        assert_eq!(messages[3]["payload"], json!({"enveloped": true}), "{how}");
        assert_eq!(messages[4]["payload"], json!({"payload": "aGk="}), "{how}");
        for message in messages {
            assert_eq!(message["channel_id"], channel["channel_id"], "{how}");
            let keys: Vec<&String> = message.as_object().unwrap().keys().collect();
            assert!(keys.len() == 7 || (keys.len() == 8 && message["event"] == "message"), "{how}: {keys:?}");
        }
    };

    // SSE (live).
    let events = sse.messages(5, WAIT).await;
    let live: Vec<Value> = events.iter().map(|e| e.json()).collect();
    check(&live, "sse");
    // Numbers exactly as sent, the frame on one line.
    assert!(
        events[0].data.contains(r#""payload":{"temp":21.50,"big":12345678901234567890,"note":"a \"quote\"\n"}"#),
        "{}",
        events[0].data
    );

    // Poll, from the oldest (no cursor).
    let page = poll_ok(&app, &url, "").await;
    check(page["messages"].as_array().unwrap(), "poll");
    assert_eq!(page["has_more"], false);
    assert_eq!(page["gap"], Value::Null);

    // NDJSON from a cursor before the first message (the /json path, without the /channel prefix).
    let lines_url = format!("{}/json", url.replace("/channel/v1/", "/v1/"));
    let mut lines = Lines::open(app.client.get(format!("{lines_url}?since=0"))).await;
    assert_eq!(lines.status, 200);
    assert_eq!(lines.headers["content-type"], "application/x-ndjson");
    let mut replayed = Vec::new();
    for _ in 0..5 {
        let line = lines.event().await;
        assert_eq!(line["event"], "message");
        replayed.push(line);
    }
    check(&replayed, "ndjson");
}

async fn poll_pages_through_the_channel(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let url = read_url(&app, &channel);

    // Nothing yet: an empty page with no cursor to give back.
    let empty = poll_ok(&app, &url, "").await;
    assert_eq!(empty, json!({"messages": [], "next_cursor": null, "has_more": false, "gap": null}));

    let mut published = Vec::new();
    for i in 0..5 {
        published.push(published_id(publish(&app, &channel, "text/plain", format!("m{i}")).await).await);
    }
    // Accept: application/json is a poll too; no cursor starts at the oldest.
    let first: Value = app
        .client
        .get(format!("{url}?limit=2"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&first["messages"]), published[..2]);
    assert_eq!(first["messages"][0]["payload"], "m0");
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_cursor"], published[1]);

    // The cursor as Last-Event-ID, then as ?last_event_id=, on the unprefixed path.
    let second: Value = app
        .client
        .get(format!("{url}?poll=1&limit=2"))
        .header("last-event-id", &published[1])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&second["messages"]), published[2..4]);
    assert_eq!(second["has_more"], true);
    let unprefixed = url.replace("/channel/v1/", "/v1/");
    let third = poll_ok(&app, &unprefixed, &format!("&limit=2&last_event_id={}", published[3])).await;
    assert_eq!(ids(&third["messages"]), published[4..]);
    // Exactly the limit left: has_more is false, not a guess from a full page.
    assert_eq!(third["has_more"], false);
    assert_eq!(third["next_cursor"], published[4]);

    // At the end: nothing, and the cursor stays where it was.
    let done = poll_ok(&app, &url, &format!("&last_event_id={}", published[4])).await;
    assert_eq!(done, json!({"messages": [], "next_cursor": published[4], "has_more": false, "gap": null}));

    // An exact page: limit = what is left, has_more false.
    let exact = poll_ok(&app, &url, &format!("&limit=3&last_event_id={}", published[1])).await;
    assert_eq!(ids(&exact["messages"]), published[2..]);
    assert_eq!(exact["has_more"], false);

    // Bad input is a clear 400.
    for (query, code) in [
        ("&limit=0", "invalid_limit"),
        ("&limit=1001", "invalid_limit"),
        ("&limit=many", "invalid_limit"),
        ("&last_event_id=nope", "invalid_cursor"),
        ("&since=-5", "invalid_cursor"),
    ] {
        let response = poll(&app, &url, query, None).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{query}");
    }
}

async fn poll_access_and_endings(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("private").await;
    let url = read_url(&app, &channel);
    let token = channel["read_token"].as_str().unwrap();
    published_id(publish(&app, &channel, "text/plain", "secret").await).await;

    assert_eq!(poll(&app, &url, "", None).await.status(), 401);
    let page: Value = poll(&app, &url, "", Some(token)).await.json().await.unwrap();
    assert_eq!(page["messages"][0]["payload"], "secret");
    // The token in the query works too (clients that cannot send headers).
    assert_eq!(poll(&app, &url, &format!("&token={token}"), None).await.status(), 200);
    // The wrong visibility in the path is 404.
    assert_eq!(poll(&app, &url.replace("/private/", "/public/"), "", None).await.status(), 404);

    // The create response names the first grant: revoke it by that id.
    let grant = channel["read_grant_id"].as_str().expect("read_grant_id in the create response");
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["read_grants"][0]["grant_id"], grant);
    let revoked = app
        .client
        .post(app.rest(&format!("/v1/channels/{}/read-grants/{grant}/revoke", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let refused = poll(&app, &url, "", Some(token)).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "grant_revoked");

    // A deleted (or unknown) channel is 404.
    let public = app.create_channel("public").await;
    assert!(public.get("read_grant_id").is_none(), "public channels have no grant: {public}");
    let public_url = read_url(&app, &public);
    let deleted = app.delete_channel(&public).await;
    assert_eq!(deleted.status(), 204);
    let gone = poll(&app, &public_url, "", None).await;
    assert_eq!(gone.status(), 404);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "channel_not_found");
}

async fn poll_reports_gaps_and_bounds(backend: Backend) {
    let app = app_with(backend, &["--page-max-bytes", "2500", "--sse-replay-max", "3"]).await;
    let channel = app.create_channel("public").await;
    let url = read_url(&app, &channel);
    let short = |body: &'static str| {
        app.client
            .post(app.rest(&format!("/v1/channels/{}/publish?ttl=60", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .body(body)
            .send()
    };
    let seen = published_id(short("seen").await.unwrap()).await;
    published_id(short("lost").await.unwrap()).await;
    let kept = published_id(publish(&app, &channel, "text/plain", "kept").await).await;
    app.clock.advance(chrono::Duration::seconds(61));

    // The reader saw "seen"; "lost" expired since: the page says so.
    let page = poll_ok(&app, &url, &format!("&last_event_id={seen}")).await;
    assert_eq!(page["gap"], json!({"oldest_available_id": kept, "requested_after": seen}));
    assert_eq!(ids(&page["messages"]), std::slice::from_ref(&kept));
    // With no cursor there is no gap to tell: the page starts at the oldest kept.
    let oldest = poll_ok(&app, &url, "").await;
    assert_eq!(oldest["gap"], Value::Null);
    assert_eq!(ids(&oldest["messages"]), std::slice::from_ref(&kept));

    // Pages carry at most PAGE_MAX_BYTES of payloads (at least one message).
    let mut big = Vec::new();
    for i in 0..3u8 {
        big.push(published_id(publish(&app, &channel, "application/octet-stream", vec![i; 1000]).await).await);
    }
    let page = poll_ok(&app, &url, &format!("&last_event_id={kept}")).await;
    assert_eq!(ids(&page["messages"]), big[..2]);
    assert_eq!(page["has_more"], true);
    assert_eq!(sse_client::payload_bytes(&page["messages"][1]), vec![1u8; 1000]);
    // The limit is at most SSE_REPLAY_MAX.
    let response = poll(&app, &url, "&limit=4", None).await;
    assert_eq!(response.status(), 400);
    // More than SSE_REPLAY_MAX after the cursor: a gap, then the newest 3 (as SSE).
    let capped = poll_ok(&app, &url, &format!("&last_event_id={seen}&limit=3")).await;
    assert_eq!(capped["gap"]["oldest_available_id"], big[0]);
}

async fn ndjson_resumes_and_ends(backend: Backend) {
    let app = app_with(backend, &["--sse-keepalive-secs", "1"]).await;
    let channel = app.create_channel("public").await;
    let url = read_url(&app, &channel);
    let short = |body: &'static str| {
        app.client
            .post(app.rest(&format!("/v1/channels/{}/publish?ttl=60", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .body(body)
            .send()
    };
    // The reader saw "seen"; "lost" expires before it comes back.
    let cursor = published_id(short("seen").await.unwrap()).await;
    published_id(short("lost").await.unwrap()).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let kept = published_id(publish(&app, &channel, "application/json", r#"{"n": 1}"#).await).await;

    // Accept: application/x-ndjson on the channel URL, resuming with Last-Event-ID.
    let mut lines =
        Lines::open(app.client.get(&url).header("accept", "application/x-ndjson").header("last-event-id", &cursor))
            .await;
    assert_eq!(lines.status, 200);
    assert_eq!(lines.headers["content-type"], "application/x-ndjson");
    assert_eq!(lines.headers["cache-control"], "no-cache");
    assert_eq!(lines.event().await, json!({"event": "gap", "oldest_available_id": kept, "requested_after": cursor}));
    let replayed = lines.event().await;
    assert_eq!((replayed["event"].as_str(), replayed["id"].as_str()), (Some("message"), Some(kept.as_str())));
    assert_eq!(replayed["payload"], json!({"n": 1}));

    // Live, after the replay: no duplicate of the replayed one.
    let live = published_id(publish(&app, &channel, "text/plain", "live").await).await;
    let line = lines.event().await;
    assert_eq!((line["id"].as_str(), line["payload"].as_str()), (Some(live.as_str()), Some("live")));

    // Keep-alive lines at the keep-alive interval.
    let keepalive = lines.next(Duration::from_millis(2500)).await.expect("a keep-alive within 2.5 s");
    assert_eq!(keepalive, json!({"event": "keepalive"}));

    // Deleted: the last line, then the body ends.
    let deleted = app.delete_channel(&channel).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(lines.event().await, json!({"event": "deleted", "channel_id": channel["channel_id"]}));
    assert!(lines.next(WAIT).await.is_none(), "the stream ends after deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_revoked_and_the_channels_document() {
    let app = app_with(Backend::Sqlite, &[]).await;
    let channel = app.create_channel("private").await;
    let url = format!("{}/json", read_url(&app, &channel));
    let token = channel["read_token"].as_str().unwrap();
    let mut lines = Lines::open(app.client.get(&url).header("authorization", format!("Bearer {token}"))).await;
    assert_eq!(lines.status, 200);
    let grant = channel["read_grant_id"].as_str().unwrap();
    let revoked = app
        .client
        .post(app.rest(&format!("/v1/channels/{}/read-grants/{grant}/revoke", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(lines.event().await, json!({"event": "revoked", "reason": "revoked"}));
    assert!(lines.next(WAIT).await.is_none());

    // The channels role documents its read routes.
    for path in ["/openapi.json", "/channel/openapi.json"] {
        let document: Value = app.client.get(app.url(Role::Channels, path)).send().await.unwrap().json().await.unwrap();
        let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
        assert_eq!(
            paths,
            [
                "/v1/private/{channel_id}",
                "/v1/private/{channel_id}/json",
                "/v1/public/{channel_id}",
                "/v1/public/{channel_id}/json"
            ],
            "{path}"
        );
        let content = &document["paths"]["/v1/public/{channel_id}"]["get"]["responses"]["200"]["content"];
        for media in ["text/event-stream", "application/x-ndjson", "application/json"] {
            assert!(content.get(media).is_some(), "{media}: {content}");
        }
    }
}

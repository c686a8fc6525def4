//! Reading channels as Server-Sent Events (the channels role), in one
//! process: live delivery, resume, gaps, private access, endings, slow
//! readers, keep-alives, limits, and the internal read API.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chantra::cli::Role;
use sea_orm::EntityTrait as _;
use serde_json::{Value, json};

use crate::helpers::spawn_rest_channels as app_with;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::sse_client::{self, SseStream};

const WAIT: Duration = Duration::from_secs(10);

on_both_backends!(
    publish_then_receive,
    resume_with_last_event_id,
    resume_from_query_cursors,
    expired_messages_are_never_delivered,
    gap_is_announced,
    replay_is_capped_with_a_gap,
    private_channel_access,
    revoked_grant_ends_the_stream,
    deleted_channel_ends_the_stream,
    slow_reader_loses_nothing,
    keepalive_comments,
    streams_per_client_are_limited,
    internal_read_api,
    shutdown_ends_streams,
    replay_pages_past_a_missing_payload,
    future_cursors_and_stray_tokens_do_not_block_live_messages,
    since_honours_the_replay_cap,
    gap_when_a_middle_message_expired,
    no_gap_for_a_cursor_older_than_the_channel,
    torn_payloads_are_skipped,
    pages_are_cut_at_the_byte_budget,
    a_resume_costs_two_queries_and_its_page,
);

/// The stream URL of a channel (what its URL points at, on the channels role).
fn stream_url(app: &TestApp, channel: &Value) -> String {
    app.channel_url(channel)
}

async fn subscribe(app: &TestApp, channel: &Value) -> SseStream {
    let stream = sse_client::connect(app.client.get(stream_url(app, channel))).await;
    assert_eq!(stream.status, 200);
    stream
}

async fn publish(app: &TestApp, channel: &Value, text: &str) -> String {
    let response = app.publish_text(channel, text).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["message_id"].as_str().unwrap().to_owned()
}

fn ids(events: &[sse_client::Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone().unwrap()).collect()
}

fn text_of(event: &sse_client::Event) -> String {
    event.text()
}

async fn publish_then_receive(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");

    let first = publish(&app, &channel, "line one\nline two\r\nend").await;
    let second = publish(&app, &channel, "second").await;
    let events = stream.messages(2, WAIT).await;
    assert_eq!(ids(&events), [first.clone(), second]);
    assert_eq!(stream.retry, Some(3000));
    let data = events[0].json();
    assert_eq!(data["id"], first);
    assert_eq!(data["channel_id"], channel["channel_id"]);
    assert_eq!(data["content_type"], "text/plain");
    assert_eq!(text_of(&events[0]), "line one\nline two\r\nend");
    for field in ["created_at", "expires_at"] {
        chrono::DateTime::parse_from_rfc3339(data[field].as_str().unwrap()).unwrap();
    }

    // The same URL under /channel (as behind the edge proxy) and without it both work.
    let unprefixed = stream_url(&app, &channel).replace("/channel/v1/", "/v1/");
    let mut plain = sse_client::connect(app.client.get(unprefixed)).await;
    assert_eq!(plain.status, 200);
    let third = publish(&app, &channel, "third").await;
    assert_eq!(ids(&plain.messages(1, WAIT).await), [third.as_str()]);
    assert_eq!(ids(&stream.messages(1, WAIT).await), [third]);
}

async fn resume_with_last_event_id(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    let first = publish(&app, &channel, "seen").await;
    assert_eq!(ids(&stream.messages(1, WAIT).await), [first.as_str()]);
    drop(stream);

    let missed =
        [publish(&app, &channel, "a").await, publish(&app, &channel, "b").await, publish(&app, &channel, "c").await];
    let mut resumed =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &first)).await;
    assert_eq!(resumed.status, 200);
    let replayed = resumed.messages(3, WAIT).await;
    assert_eq!(ids(&replayed), missed);
    assert_eq!(replayed.iter().map(text_of).collect::<Vec<_>>(), ["a", "b", "c"]);
    // Then live, without a duplicate at the boundary.
    let live = publish(&app, &channel, "d").await;
    let next = resumed.messages(1, WAIT).await;
    assert_eq!(ids(&next), [live]);
    assert!(resumed.next(Duration::from_millis(300)).await.is_none(), "nothing else arrives");

    // A malformed cursor is a client error, before any stream starts.
    let bad = sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", "42")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_json().await["error"]["code"], "invalid_cursor");
}

/// Database statements this process has run (its /metrics; nextest runs
/// each test in a process of its own, and nothing runs in the background
/// here: no sweeper, no other reader).
async fn queries_so_far(app: &TestApp) -> f64 {
    let text = app.client.get(app.url(Role::Channels, "/metrics")).send().await.unwrap().text().await.unwrap();
    crate::helpers::sample(&text, "chantra_db_query_duration_seconds_count{outcome=\"ok\"}").expect("query count")
}

/// A resume storm is thousands of these at once (issue 18): letting the
/// reader in is one query, planning the replay (purge mark, newest id, past
/// the replay cap, expired after the cursor) one more, then the replay's
/// page. It took five before the page.
async fn a_resume_costs_two_queries_and_its_page(backend: Backend) {
    let app = app_with(backend, &["--metrics-enabled", "true"]).await;
    let channel = app.create_channel("public").await;
    let first = publish(&app, &channel, "seen").await;
    let missed = [publish(&app, &channel, "a").await, publish(&app, &channel, "b").await];

    let before = queries_so_far(&app).await;
    let mut resumed =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &first)).await;
    assert_eq!(ids(&resumed.messages(2, WAIT).await), missed);
    assert_eq!(queries_so_far(&app).await - before, 3.0);
}

async fn resume_from_query_cursors(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let before = chrono::Utc::now().timestamp() - 1;
    let published =
        [publish(&app, &channel, "1").await, publish(&app, &channel, "2").await, publish(&app, &channel, "3").await];

    let url = stream_url(&app, &channel);
    let mut after_first = sse_client::connect(app.client.get(format!("{url}?last_event_id={}", published[0]))).await;
    assert_eq!(ids(&after_first.messages(2, WAIT).await), published[1..]);

    let mut since = sse_client::connect(app.client.get(format!("{url}?since={before}"))).await;
    assert_eq!(ids(&since.messages(3, WAIT).await), published);

    // An unknown but well-formed id resumes from its time.
    let earlier = uuid::Uuid::from_u128(uuid::Uuid::parse_str(&published[1]).unwrap().as_u128() - 1);
    let mut unknown = sse_client::connect(app.client.get(format!("{url}?last_event_id={earlier}"))).await;
    let events = unknown.messages(2, WAIT).await;
    assert_eq!(ids(&events), published[1..]);

    for bad in ["since=yesterday", "since=-5", "last_event_id=abc"] {
        let response = sse_client::connect(app.client.get(format!("{url}?{bad}"))).await;
        assert_eq!(response.status, 400, "{bad}");
    }
}

async fn expired_messages_are_never_delivered(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let url = app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let cursor = chantra_core::domain::MessageId::new().to_string();
    let short =
        app.client.post(format!("{url}?ttl=60")).header("x-publish-token", token).body("short").send().await.unwrap();
    assert_eq!(short.status(), 201);
    let long = publish(&app, &channel, "long").await;
    app.clock.advance(chrono::Duration::seconds(61));

    let mut stream =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &cursor)).await;
    let mut seen = Vec::new();
    while let Some(event) = stream.next(Duration::from_millis(700)).await {
        if event.event == "message" {
            seen.push(event.id.unwrap());
        }
    }
    assert_eq!(seen, [long], "the expired message is not replayed");

    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 1, "metadata no longer counts it either");
}

async fn gap_is_announced(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let url = app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let short = |body: &'static str| {
        app.client.post(format!("{url}?ttl=60")).header("x-publish-token", token).body(body).send()
    };
    let first: Value = short("first").await.unwrap().json().await.unwrap();
    let first = first["message_id"].as_str().unwrap().to_owned();
    assert_eq!(short("second").await.unwrap().status(), 201);
    let kept = publish(&app, &channel, "kept").await;
    // The reader last saw "first"; it and "second" expire meanwhile.
    app.clock.advance(chrono::Duration::seconds(61));

    let mut stream =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &first)).await;
    let gap = stream.next(WAIT).await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.id, None, "a gap does not move the reader's cursor");
    assert_eq!(gap.json()["requested_after"], first);
    assert_eq!(gap.json()["oldest_available_id"], kept);
    assert_eq!(ids(&stream.messages(1, WAIT).await), [kept.as_str()]);

    // A reader whose cursor is still kept gets no gap, and nothing to replay.
    let mut current =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &kept)).await;
    assert!(current.next(Duration::from_millis(500)).await.is_none());
}

async fn replay_is_capped_with_a_gap(backend: Backend) {
    let app = app_with(backend, &["--sse-replay-max", "2"]).await;
    let channel = app.create_channel("public").await;
    let cursor = publish(&app, &channel, "0").await;
    let mut published = Vec::new();
    for i in 1..=5 {
        published.push(publish(&app, &channel, &i.to_string()).await);
    }
    let mut stream =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &cursor)).await;
    let gap = stream.next(WAIT).await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.json()["oldest_available_id"], published[3]);
    assert_eq!(ids(&stream.messages(2, WAIT).await), published[3..]);
}

async fn private_channel_access(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("private").await;
    let other = app.create_channel("private").await;
    let url = stream_url(&app, &channel);
    let token = channel["read_token"].as_str().unwrap();

    let header = sse_client::connect(app.client.get(&url).header("x-read-token", token)).await;
    let bearer = sse_client::connect(app.client.get(&url).bearer_auth(token)).await;
    let query = sse_client::connect(app.client.get(format!("{url}?token={token}"))).await;
    let mut streams = [header, bearer, query];
    assert!(streams.iter().all(|s| s.status == 200));
    let id = publish(&app, &channel, "secret").await;
    for stream in &mut streams {
        assert_eq!(ids(&stream.messages(1, WAIT).await), [id.as_str()]);
    }

    let cases = [
        ("missing", app.client.get(&url), 401, "missing_token"),
        (
            "other_channels_token",
            app.client.get(&url).header("x-read-token", other["read_token"].as_str().unwrap()),
            401,
            "invalid_token",
        ),
        (
            "publish_token",
            app.client.get(&url).header("x-read-token", channel["publish_token"].as_str().unwrap()),
            401,
            "invalid_token",
        ),
        ("malformed", app.client.get(format!("{url}?token=chr_short")), 401, "invalid_token"),
        (
            "public_path",
            app.client.get(url.replace("/private/", "/public/")).header("x-read-token", token),
            404,
            "channel_not_found",
        ),
        (
            "unknown_channel",
            app.client
                .get(app.url(Role::Channels, &format!("/v1/private/{}", uuid::Uuid::now_v7())))
                .header("x-read-token", token),
            404,
            "channel_not_found",
        ),
        ("malformed_id", app.client.get(app.url(Role::Channels, "/v1/private/xyz")), 400, "invalid_id"),
    ];
    for (name, request, status, code) in cases {
        let response = sse_client::connect(request).await;
        assert_eq!(response.status, status, "{name}");
        assert_eq!(response.error_json().await["error"]["code"], code, "{name}");
    }

    // A public channel read through the private path is 404 too.
    let public = app.create_channel("public").await;
    let wrong_path = stream_url(&app, &public).replace("/public/", "/private/");
    assert_eq!(sse_client::connect(app.client.get(wrong_path).header("x-read-token", token)).await.status, 404);

    // An expired grant is refused, and a stream opened with it ends when it expires.
    let grant: Value = app
        .client
        .post(app.rest(&format!("/v1/channels/{}/read-grants", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .json(&json!({ "expires_in_seconds": 2 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut expiring =
        sse_client::connect(app.client.get(&url).header("x-read-token", grant["read_token"].as_str().unwrap())).await;
    assert_eq!(expiring.status, 200);
    let ended = expiring.next(Duration::from_secs(5)).await.expect("a final event");
    assert_eq!((ended.event.as_str(), ended.json()["reason"].as_str()), ("revoked", Some("expired")));
    assert!(expiring.ends_within(Duration::from_secs(1)).await);
    app.clock.advance(chrono::Duration::seconds(3));
    let refused =
        sse_client::connect(app.client.get(&url).header("x-read-token", grant["read_token"].as_str().unwrap())).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_json().await["error"]["code"], "grant_expired");
}

async fn revoked_grant_ends_the_stream(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("private").await;
    let url = stream_url(&app, &channel);
    let token = channel["read_token"].as_str().unwrap();
    let mut stream = sse_client::connect(app.client.get(&url).header("x-read-token", token)).await;
    assert_eq!(stream.status, 200);
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    let grant = metadata["read_grants"][0]["grant_id"].as_str().unwrap();

    let started = Instant::now();
    let revoked = app
        .client
        .post(app.rest(&format!("/v1/channels/{}/read-grants/{grant}/revoke", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let last = stream.next(Duration::from_secs(1)).await.expect("revocation reaches the stream within 1 s");
    assert_eq!(last.event, "revoked");
    assert!(stream.ends_within(Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    let again = sse_client::connect(app.client.get(&url).header("x-read-token", token)).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.error_json().await["error"]["code"], "grant_revoked");
}

async fn deleted_channel_ends_the_stream(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    let id = publish(&app, &channel, "last words").await;
    assert_eq!(ids(&stream.messages(1, WAIT).await), [id]);
    let deleted = app.delete_channel(&channel).await;
    assert_eq!(deleted.status(), 204);
    let last = stream.next(WAIT).await.expect("a final event");
    assert_eq!(last.event, "deleted");
    assert_eq!(last.json()["channel_id"], channel["channel_id"]);
    assert!(stream.ends_within(Duration::from_secs(2)).await);
    assert_eq!(sse_client::connect(app.client.get(stream_url(&app, &channel))).await.status, 404);
}

async fn slow_reader_loses_nothing(backend: Backend) {
    // A tiny live buffer and payloads large enough to fill the socket
    // buffers: the reader that does not read falls behind and must catch up
    // from the database.
    let app = app_with(backend, &["--sse-buffer", "4", "--max-payload-bytes", "300000"]).await;
    let channel = app.create_channel("public").await;
    let mut slow = subscribe(&app, &channel).await;
    let mut published = Vec::new();
    let big = "x".repeat(200_000);
    for i in 0..40 {
        published.push(publish(&app, &channel, &format!("{i}:{big}")).await);
    }
    let received = slow.messages(published.len(), WAIT).await;
    assert_eq!(ids(&received), published);
    let caught_up = crate::helpers::sample(&chantra::metrics::render(), "chantra_lag_catch_ups_total");
    assert!(caught_up.is_some_and(|n| n > 0.0), "the reader really fell behind the live buffer");
    for (i, event) in received.iter().enumerate() {
        assert!(text_of(event).starts_with(&format!("{i}:")));
    }
}

async fn keepalive_comments(backend: Backend) {
    let app = app_with(backend, &["--sse-keepalive-secs", "1"]).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    assert!(stream.next(Duration::from_millis(2500)).await.is_none());
    assert!(stream.comments >= 2, "saw {} keep-alives in 2.5 s", stream.comments);
}

async fn streams_per_client_are_limited(backend: Backend) {
    let app = app_with(backend, &["--max-streams-per-ip", "2"]).await;
    let channel = app.create_channel("public").await;
    let first = subscribe(&app, &channel).await;
    let _second = subscribe(&app, &channel).await;
    let third = sse_client::connect(app.client.get(stream_url(&app, &channel))).await;
    assert_eq!(third.status, 429);
    assert!(third.headers.contains_key("retry-after"));
    assert_eq!(third.error_json().await["error"]["code"], "too_many_streams");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sse_client::connect(app.client.get(stream_url(&app, &channel))).await.status, 200);
}

async fn internal_read_api(backend: Backend) {
    let closed = app_with(backend, &[]).await;
    let channel = closed.create_channel("public").await;
    let path = format!("/internal/v1/channels/{}/messages", channel["channel_id"].as_str().unwrap());
    let off = closed
        .client
        .get(closed.url(Role::Channels, &path))
        .header("x-internal-token", "whatever-it-is-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404, "no INTERNAL_API_TOKEN: the API does not exist");

    let secret = "internal-secret-0123456789";
    let app = app_with(backend, &["--internal-api-token", secret]).await;
    let public = app.create_channel("public").await;
    let private = app.create_channel("private").await;
    let mut sorted = Vec::new();
    for i in 0..3 {
        sorted.push(publish(&app, &public, &format!("m{i}")).await);
    }
    let private_id = publish(&app, &private, "hidden").await;
    let get = |channel: &Value, query: &str| {
        app.client.get(app.url(
            Role::Channels,
            &format!("/internal/v1/channels/{}/messages{query}", channel["channel_id"].as_str().unwrap()),
        ))
    };

    assert_eq!(get(&public, "").send().await.unwrap().status(), 401);
    assert_eq!(
        get(&public, "").header("x-internal-token", "wrong-secret-0123456789").send().await.unwrap().status(),
        401
    );
    let page: Value =
        get(&public, "?limit=2").header("x-internal-token", secret).send().await.unwrap().json().await.unwrap();
    let page_ids: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(page_ids, sorted[..2]);
    assert_eq!(page["has_more"], true);
    assert_eq!(STANDARD.decode(page["messages"][0]["payload"].as_str().unwrap()).unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap();
    let rest: Value = get(&public, &format!("?after={next}&limit=2"))
        .header("x-internal-token", secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(rest["messages"][0]["id"], sorted[2]);
    assert_eq!(rest["has_more"], false);

    let no_token = get(&private, "").header("x-internal-token", secret).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let with_token: Value = get(&private, "")
        .header("x-internal-token", secret)
        .header("x-read-token", private["read_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(with_token["messages"][0]["id"], private_id);
    for bad in ["?limit=0", "?limit=501", "?limit=x", "?after=nope"] {
        let response = get(&public, bad).header("x-internal-token", secret).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

async fn shutdown_ends_streams(backend: Backend) {
    let mut app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let mut stream = subscribe(&app, &channel).await;
    let started = Instant::now();
    app.shutdown();
    assert!(stream.ends_within(Duration::from_secs(5)).await, "the stream ends on shutdown");
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn replay_pages_past_a_missing_payload(backend: Backend) {
    // More messages than one replay page, and a hole in the first page (an
    // object purged between the query and the fetch; on SQLite the payload
    // is kept in the database, and its row goes): the replay must go on.
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let cursor = publish(&app, &channel, "cursor").await;
    let mut published = Vec::new();
    for i in 0..40 {
        published.push(publish(&app, &channel, &format!("m{i}")).await);
    }
    let lost = published.remove(4);
    let key = app.object_key(&lost).await;
    let id: chantra_core::domain::MessageId = lost.parse().unwrap();
    let row = chantra_core::db::entity::message::Entity::find_by_id(id).one(app.service.db()).await.unwrap().unwrap();
    assert_eq!(row.payload_inline, backend == Backend::Sqlite, "small payloads are kept in the database with SQLite");
    if row.payload_inline {
        chantra_core::db::entity::message_payload::Entity::delete_by_id(id).exec(app.service.db()).await.unwrap();
        app.service.store().forget(&key);
    } else {
        app.service.store().delete(&key).await.unwrap();
    }
    let mut stream =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &cursor)).await;
    assert_eq!(ids(&stream.messages(published.len(), WAIT).await), published);
}

async fn future_cursors_and_stray_tokens_do_not_block_live_messages(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let in_an_hour = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap() + 3_600_000;
    let future =
        uuid::Uuid::from_u128(chantra_core::domain::MessageId::floor_at(in_an_hour).as_uuid().as_u128() | (0x7 << 76));
    let mut ahead = sse_client::connect(
        app.client
            .get(stream_url(&app, &channel))
            .header("last-event-id", future.to_string())
            .header("x-read-token", "junk"),
    )
    .await;
    assert_eq!(ahead.status, 200, "a public channel ignores a stray token");
    let since = chrono::Utc::now().timestamp() + 3600;
    let mut later = sse_client::connect(app.client.get(format!("{}?since={since}", stream_url(&app, &channel)))).await;
    let live = publish(&app, &channel, "now").await;
    assert_eq!(ids(&ahead.messages(1, WAIT).await), [live.as_str()]);
    assert_eq!(ids(&later.messages(1, WAIT).await), [live.as_str()]);
}

/// Events of a stream until `count` messages arrived, gaps included.
async fn events_until(stream: &mut SseStream, count: usize) -> Vec<sse_client::Event> {
    let mut events = Vec::new();
    while events.iter().filter(|e: &&sse_client::Event| e.event == "message").count() < count {
        match stream.next(WAIT).await {
            Some(event) if event.event == "message" || event.event == "gap" => events.push(event),
            Some(_) => {}
            None => break,
        }
    }
    events
}

async fn publish_with_ttl(app: &TestApp, channel: &Value, text: &str, ttl: u64) -> String {
    let url = app.rest(&format!("/v1/channels/{}/publish?ttl={ttl}", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let response = app.client.post(url).header("x-publish-token", token).body(text.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_owned()
}

async fn since_honours_the_replay_cap(backend: Backend) {
    // ?since= goes through the same replay planner as Last-Event-ID.
    let app = app_with(backend, &["--sse-replay-max", "2"]).await;
    let channel = app.create_channel("public").await;
    let before = chrono::Utc::now().timestamp() - 1;
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(publish(&app, &channel, &i.to_string()).await);
    }
    let url = stream_url(&app, &channel);
    let mut since = sse_client::connect(app.client.get(format!("{url}?since={before}"))).await;
    let events = events_until(&mut since, 2).await;
    assert_eq!(events[0].event, "gap", "{events:?}");
    assert_eq!(events[0].json()["oldest_available_id"], published[3]);
    assert_eq!(ids(&events[1..]), published[3..]);
    assert!(since.next(Duration::from_millis(300)).await.is_none(), "nothing older follows");
}

async fn gap_when_a_middle_message_expired(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let m1 = publish(&app, &channel, "m1").await;
    let m2 = publish_with_ttl(&app, &channel, "m2", 60).await;
    app.clock.advance(chrono::Duration::seconds(61));
    let m3 = publish(&app, &channel, "m3").await;
    let url = stream_url(&app, &channel);

    // m2 expired but is not purged yet, then purged by the sweeper: a gap either way.
    for state in ["expired", "purged"] {
        let mut resumed = sse_client::connect(app.client.get(&url).header("last-event-id", &m1)).await;
        let events = events_until(&mut resumed, 1).await;
        assert_eq!(events.len(), 2, "{state}: a gap, then m3: {events:?}");
        assert_eq!(events[0].event, "gap", "{state}");
        assert_eq!(events[0].json()["requested_after"], m1.as_str());
        assert_eq!(events[0].json()["oldest_available_id"], m3.as_str());
        assert_eq!(ids(&events[1..]), [m3.as_str()]);
        let settings = chantra_core::service::SweepSettings {
            interval: Duration::from_secs(60),
            batch: 10,
            orphan_grace: chrono::Duration::hours(1),
        };
        app.service.sweep_once(&settings).await.unwrap();
    }
    // Resuming after m2 itself, or after m3: nothing after the cursor is lost.
    for (cursor, expected) in [(&m2, vec![m3.clone()]), (&m3, vec![])] {
        let mut resumed = sse_client::connect(app.client.get(&url).header("last-event-id", cursor)).await;
        let mut seen = Vec::new();
        while let Some(event) = resumed.next(Duration::from_millis(500)).await {
            assert_eq!(event.event, "message", "after {cursor}: {event:?}");
            seen.push(event.id.unwrap());
        }
        assert_eq!(seen, expected);
    }
}

async fn no_gap_for_a_cursor_older_than_the_channel(backend: Backend) {
    let app = app_with(backend, &[]).await;
    let channel = app.create_channel("public").await;
    let published = [publish(&app, &channel, "a").await, publish(&app, &channel, "b").await];
    let url = stream_url(&app, &channel);
    let origin = "00000000-0000-0000-0000-000000000000";
    for request in [app.client.get(&url).header("last-event-id", origin), app.client.get(format!("{url}?since=0"))] {
        let mut stream = sse_client::connect(request).await;
        let events = events_until(&mut stream, 2).await;
        assert!(events.iter().all(|e| e.event == "message"), "no gap: {events:?}");
        assert_eq!(ids(&events), published);
    }
    // A normal resume, nothing lost: no gap either.
    let mut resumed = sse_client::connect(app.client.get(&url).header("last-event-id", &published[0])).await;
    let events = events_until(&mut resumed, 1).await;
    assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["message"]);
}

async fn torn_payloads_are_skipped(backend: Backend) {
    // A payload whose stored length is not the row's payload_size is never
    // delivered as data: not in a replay, not in a page.
    let secret = "internal-secret-0123456789";
    let app = app_with(backend, &["--internal-api-token", secret]).await;
    let channel = app.create_channel("public").await;
    let cursor = publish(&app, &channel, "cursor").await;
    // Larger than the payload cache keeps, so reads go to the store.
    let big = "x".repeat(300 * 1024);
    let torn = publish(&app, &channel, &big).await;
    let kept = publish(&app, &channel, "kept").await;
    let key = app.object_key(&torn).await;
    match backend {
        Backend::Sqlite => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(app.data_dir.path().join("payloads").join(&key))
                .expect("the payload file");
            file.set_len(1000).unwrap();
        }
        Backend::Postgres => {
            let short = bytes::Bytes::from(big[..1000].to_owned());
            app.service.store().put(&key, short, "text/plain").await.unwrap();
        }
    }
    let mut resumed =
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("last-event-id", &cursor)).await;
    assert_eq!(ids(&resumed.messages(1, WAIT).await), [kept.as_str()], "the torn message is skipped");

    let page: Value = app
        .client
        .get(app.url(
            Role::Channels,
            &format!("/internal/v1/channels/{}/messages?after={cursor}", channel["channel_id"].as_str().unwrap()),
        ))
        .header("x-internal-token", secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page_ids: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(page_ids, [kept.as_str()]);
}

async fn pages_are_cut_at_the_byte_budget(backend: Backend) {
    let secret = "internal-secret-0123456789";
    let app = app_with(backend, &["--internal-api-token", secret, "--page-max-bytes", "2500"]).await;
    let channel = app.create_channel("public").await;
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(publish(&app, &channel, &format!("{i}").repeat(1000)).await);
    }
    // One message larger than the whole budget still makes a page of its own.
    published.push(publish(&app, &channel, &"L".repeat(3000)).await);
    published.push(publish(&app, &channel, "last").await);
    let page = |after: Option<String>| {
        let query = after.map(|a| format!("&after={a}")).unwrap_or_default();
        app.client
            .get(app.url(
                Role::Channels,
                &format!("/internal/v1/channels/{}/messages?limit=50{query}", channel["channel_id"].as_str().unwrap()),
            ))
            .header("x-internal-token", secret)
            .send()
    };
    let mut seen = Vec::new();
    let mut shapes = Vec::new();
    let mut after = None;
    loop {
        let body: Value = page(after.clone()).await.unwrap().json().await.unwrap();
        let messages = body["messages"].as_array().unwrap();
        let bytes: usize =
            messages.iter().map(|m| STANDARD.decode(m["payload"].as_str().unwrap()).unwrap().len()).sum();
        shapes.push((messages.len(), body["truncated"].as_bool().unwrap(), body["has_more"].as_bool().unwrap()));
        assert!(bytes <= 2500 || messages.len() == 1, "a page of {bytes} payload bytes: {body}");
        seen.extend(messages.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        if messages.last().is_some() {
            assert_eq!(body["next_cursor"], *messages.last().unwrap().get("id").unwrap());
        }
        if !body["has_more"].as_bool().unwrap() {
            break;
        }
        after = Some(body["next_cursor"].as_str().unwrap().to_owned());
        assert!(shapes.len() < 10, "paging does not end: {shapes:?}");
    }
    assert_eq!(seen, published, "every message exactly once, in order");
    assert_eq!(shapes, [(2, true, true), (2, true, true), (1, true, true), (1, true, true), (1, false, false)]);
}

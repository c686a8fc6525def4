//! Hostile sizes and slow clients, over raw sockets where a well-behaved
//! client library would refuse to send the request at all: bodies over their
//! limit on every route that reads one (also when only Content-Length says
//! so), request heads over 16 KiB or with more than 100 headers (431, hyper's
//! own bare answer), URIs over 8 KiB (414 `uri_too_long`), a head trickled
//! slower than HEADER_READ_TIMEOUT_SECS (closed), a handler slower than
//! REQUEST_TIMEOUT_SECS (503 `timeout`), and the stream caps per process
//! (503) and per client (429) — keyed on the real client, not on a header
//! anyone can send; with LEAN_STREAMS=false, streams served by hyper. After
//! each, the server still answers.
//!
//! Transport behaviour does not depend on the backend pair: SQLite only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chantra::cli::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Backend, Options, TestApp, spawn_app_with};
use crate::sse_client;

const ROLES: [Role; 4] = [Role::Rest, Role::Channels, Role::Mcp, Role::Landing];

async fn app(extra: &[&str]) -> TestApp {
    let options = Options {
        roles: Some(Role::EACH.to_vec()),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    spawn_app_with(Backend::Sqlite, options).await
}

fn addr(app: &TestApp, role: Role) -> SocketAddr {
    app.addrs.iter().find(|(r, _)| *r == role).map(|(_, a)| *a).expect("role running")
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Option<Raw> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
        let head = head.to_ascii_lowercase();
        let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
        Some(Raw { status, head, body })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {self:?}")).to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Sends `head` (the blank line included) and then `body` in 64 KiB pieces,
/// stopping at the first write the server refuses, and reads the answer
/// until the server closes or 10 s pass.
async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if stream.write_all(head.as_bytes()).await.is_ok() {
        for piece in body.chunks(64 * 1024) {
            if stream.write_all(piece).await.is_err() {
                break;
            }
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    answer
}

async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Raw {
    let answer = exchange(addr, head, body).await;
    Raw::parse(&answer).unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)))
}

/// Every role still answers after whatever a test threw at it.
async fn all_roles_healthy(app: &TestApp) {
    for role in ROLES {
        let response = app.client.get(app.url(role, "/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{role:?} is still up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_their_limit_are_refused_on_every_route() {
    let app = app(&["--max-payload-bytes", "1024"]).await;
    let private = app.create_channel("private").await;
    let id = private["channel_id"].as_str().unwrap();
    let token = private["publish_token"].as_str().unwrap();
    let rest = addr(&app, Role::Rest);
    let json_16k_plus = format!(r#"{{"visibility":"public","x":"{}"}}"#, "a".repeat(16 * 1024));
    let grant_16k_plus = format!(r#"{{"label":"{}"}}"#, "a".repeat(16 * 1024));
    let envelope_over = json!({ "payload": "QUFB".repeat(20_000) }).to_string();
    let json_over = json!({ "text": "a".repeat(1025) }).to_string();
    // (what, path, content type, body actually sent)
    let cases: Vec<(&str, String, &str, Vec<u8>)> = vec![
        ("create channel", "/v1/channels".into(), "application/json", json_16k_plus.into_bytes()),
        ("publish raw", format!("/v1/channels/{id}/publish"), "application/octet-stream", vec![b'x'; 1025]),
        (
            "publish envelope",
            format!("/v1/channels/{id}/publish"),
            "application/vnd.chantra.envelope+json",
            envelope_over.into_bytes(),
        ),
        ("publish JSON", format!("/v1/channels/{id}/publish"), "application/json", json_over.into_bytes()),
        ("create grant", format!("/v1/channels/{id}/read-grants"), "application/json", grant_16k_plus.into_bytes()),
    ];
    for (what, path, content_type, body) in &cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nX-Publish-Token: {token}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = request(rest, &head, body).await;
        assert_eq!(answer.status, 413, "{what}: {answer:?}");
        assert_eq!(answer.error_code(), "payload_too_large", "{what}");
        assert!(answer.head.contains("content-type: application/json"), "{what}: {}", answer.head);

        // A Content-Length over the limit is refused at once, before any of the body is sent.
        let huge = head.replace(&format!("Content-Length: {}", body.len()), "Content-Length: 1073741824");
        let started = Instant::now();
        let answer = request(rest, &huge, b"").await;
        assert_eq!(answer.status, 413, "{what} (declared 1 GiB): {answer:?}");
        assert_eq!(answer.error_code(), "payload_too_large", "{what}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: refused without waiting for the body");
    }
    // Nothing refused was stored.
    let metadata: Value = app.get_channel(&private).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 0);
    assert_eq!(metadata["read_grants"].as_array().unwrap().len(), 1, "only the first grant");
    all_roles_healthy(&app).await;
}

/// MCP requests: a body over the limit (a max-size payload in base64 plus
/// its envelope, ~1.4 MiB by default) is 413 (rmcp answers it, as plain
/// text); a normal request on the same server still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_requests_over_the_limit_are_refused() {
    let app = app(&[]).await;
    let mcp = addr(&app, Role::Mcp);
    let call = |size: usize| {
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": { "name": "limits", "version": "1", "pad": "p".repeat(size) }
            }
        })
        .to_string()
    };
    let limit = chantra::mcp::max_request_bytes(chantra_core::domain::DEFAULT_MAX_PAYLOAD_BYTES);
    for size in [limit + 1, 8 * 1024 * 1024] {
        let body = call(size);
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            mcp.port(),
            body.len()
        );
        let answer = request(mcp, &head, body.as_bytes()).await;
        assert_eq!(answer.status, 413, "{} bytes: {answer:?}", body.len());
    }
    let client = crate::mcp::McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    assert!(client.session.is_some(), "a normal session still starts");
    all_roles_healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_16_kib_or_100_headers_get_431() {
    let app = app(&[]).await;
    for role in ROLES {
        let at = addr(&app, role);
        let get = |headers: &str| format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");

        // Just under 16 KiB, and exactly 100 headers: served.
        let near = request(at, &get(&format!("X-Pad: {}\r\n", "a".repeat(15 * 1024))), b"").await;
        assert_eq!(near.status, 200, "{role:?}: a 15 KiB head is fine");
        let hundred: String = (0..98).map(|i| format!("X-H{i}: v\r\n")).collect();
        assert_eq!(request(at, &get(&hundred), b"").await.status, 200, "{role:?}: 100 headers are fine");

        // Over: 431 and the connection closes.
        let big = request(at, &get(&format!("X-Pad: {}\r\n", "a".repeat(17 * 1024))), b"").await;
        assert_eq!(big.status, 431, "{role:?}: {big:?}");
        let many: String = (0..99).map(|i| format!("X-H{i}: v\r\n")).collect();
        let many = request(at, &get(&many), b"").await;
        assert_eq!(many.status, 431, "{role:?}: 101 headers: {many:?}");
        let spread: String = (0..40).map(|i| format!("X-H{i}: {}\r\n", "b".repeat(450))).collect();
        assert_eq!(request(at, &get(&spread), b"").await.status, 431, "{role:?}: many mid-sized headers add up");
    }
    all_roles_healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uris_over_8_kib_get_414() {
    let app = app(&[]).await;
    for role in ROLES {
        let at = addr(&app, role);
        let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        // 8 KiB of path and query exactly: served (health ignores the query).
        let limit = format!("/healthz?q={}", "a".repeat(8 * 1024 - "/healthz?q=".len()));
        assert_eq!(request(at, &get(&limit), b"").await.status, 200, "{role:?}: 8 KiB is fine");

        for target in [format!("{limit}a"), format!("/v1/channels/{}", "x".repeat(9000))] {
            let answer = request(at, &get(&target), b"").await;
            assert_eq!(answer.status, 414, "{role:?}: {answer:?}");
            assert_eq!(answer.error_code(), "uri_too_long", "{role:?}");
            assert!(answer.json()["error"]["message"].as_str().unwrap().contains("8192"), "{answer:?}");
        }
        // Beyond the head limit, the head limit answers first.
        assert_eq!(request(at, &get(&format!("/healthz?q={}", "a".repeat(20_000))), b"").await.status, 431);
    }
    all_roles_healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    let app = app(&["--header-read-timeout-secs", "1"]).await;
    let rest = addr(&app, Role::Rest);

    // A head that never completes (slowloris), and a connection that never says anything.
    for opening in ["GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ", ""] {
        let mut stream = TcpStream::connect(rest).await.unwrap();
        stream.write_all(opening.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
        let waited = started.elapsed();
        assert!(read.is_ok(), "{opening:?}: the server closed the connection (waited {waited:?})");
        assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(5), "{opening:?}: {waited:?}");
        assert!(!String::from_utf8_lossy(&answer).contains(" 200 "), "{opening:?}: never served");
    }

    // A client that is merely a little slow is served.
    let mut stream = TcpStream::connect(rest).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"Connection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert_eq!(Raw::parse(&answer).map(|r| r.status), Some(200), "{}", String::from_utf8_lossy(&answer));

    // An idle keep-alive connection is closed too.
    let mut stream = TcpStream::connect(rest).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the idle keep-alive connection was closed");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(Raw::parse(&answer).map(|r| r.status), Some(200), "the request itself was answered");
    all_roles_healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_slower_than_the_request_timeout_get_503() {
    let app = app(&["--request-timeout-secs", "1"]).await;
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].as_str().unwrap();
    let token = channel["publish_token"].as_str().unwrap();
    // The body is promised but only a part of it ever arrives: the handler waits for it.
    let head = format!(
        "POST /v1/channels/{id}/publish HTTP/1.1\r\nHost: t\r\nX-Publish-Token: {token}\r\n\
         Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: close\r\n\r\npartial"
    );
    let mut stream = TcpStream::connect(addr(&app, Role::Rest)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
    let answer = Raw::parse(&answer).unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&answer)));
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.error_code(), "timeout");
    assert!(answer.head.contains("retry-after:"), "{}", answer.head);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let metadata: Value = app.get_channel(&channel).await.json().await.unwrap();
    assert_eq!(metadata["live_messages"], 0, "nothing half-written");
    all_roles_healthy(&app).await;
}

fn stream_url(app: &TestApp, channel: &Value) -> String {
    app.url(Role::Channels, &format!("/v1/public/{}", channel["channel_id"].as_str().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_process_are_capped() {
    let app = app(&["--max-streams", "2", "--max-streams-per-ip", "10"]).await;
    let channel = app.create_channel("public").await;
    let first = sse_client::connect(app.client.get(stream_url(&app, &channel))).await;
    let second = sse_client::connect(app.client.get(stream_url(&app, &channel))).await;
    assert_eq!((first.status, second.status), (200, 200));
    let third = sse_client::connect(app.client.get(stream_url(&app, &channel))).await;
    assert_eq!(third.status, 503);
    assert_eq!(third.headers["retry-after"], "5");
    assert_eq!(third.error_json().await["error"]["code"], "server_busy");
    // Other requests are not streams and are not refused.
    assert_eq!(app.client.get(app.url(Role::Channels, "/readyz")).send().await.unwrap().status(), 200);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = sse_client::connect(app.client.get(stream_url(&app, &channel))).await;
    assert_eq!(again.status, 200, "a closed stream frees its slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_caps_key_on_the_real_client() {
    let open = |app: &TestApp, channel: &Value, forwarded: &str| {
        sse_client::connect(app.client.get(stream_url(app, channel)).header("x-forwarded-for", forwarded.to_owned()))
    };
    // Without trusted proxies, X-Forwarded-For is the caller's own claim: ignored.
    let direct = app(&["--max-streams-per-ip", "1"]).await;
    let channel = direct.create_channel("public").await;
    let held = open(&direct, &channel, "203.0.113.1").await;
    assert_eq!(held.status, 200);
    let spoofed = open(&direct, &channel, "203.0.113.2").await;
    assert_eq!(spoofed.status, 429, "a made-up X-Forwarded-For does not buy another slot");
    assert_eq!(spoofed.error_json().await["error"]["code"], "too_many_streams");

    // Behind a trusted proxy, each forwarded client has its own cap.
    let proxied = app(&["--max-streams-per-ip", "1", "--trusted-proxies", "127.0.0.1"]).await;
    let channel = proxied.create_channel("public").await;
    let a = open(&proxied, &channel, "203.0.113.1").await;
    let b = open(&proxied, &channel, "203.0.113.2").await;
    assert_eq!((a.status, b.status), (200, 200));
    let a_again = open(&proxied, &channel, "198.51.100.9, 203.0.113.1").await;
    assert_eq!(a_again.status, 429, "the hop nearest the proxy is the client");
}

/// `GET /healthz` on the rest role as the client a trusted proxy names; the status.
async fn healthz_as(app: &TestApp, client: &str) -> u16 {
    let response = app.client.get(app.rest("/healthz")).header("x-forwarded-for", client.to_owned()).send().await;
    response.unwrap().status().as_u16()
}

/// One host is usually given a whole IPv6 /64 (or more), so per-address
/// buckets would give it 2^64 rate budgets: IPv6 clients are keyed by their
/// /64, IPv4 clients by their address, and an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) as the IPv4 address it maps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_key_ipv6_clients_by_64() {
    let app = app(&["--rate-limit-per-second", "1", "--rate-limit-burst", "3", "--trusted-proxies", "127.0.0.1"]).await;

    // Sixteen addresses of one /64 share one budget of 3 (plus 1 a second).
    let started = Instant::now();
    let mut statuses = Vec::new();
    for host in 1..=16 {
        statuses.push(healthz_as(&app, &format!("2001:db8:a:b::{host:x}")).await);
    }
    statuses.push(healthz_as(&app, "2001:db8:a:b:ffff:ffff:ffff:ffff").await);
    let served = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 429].contains(s)), "{statuses:?}");
    assert!(served <= 3 + started.elapsed().as_secs(), "one /64 got {served} requests through: {statuses:?}");

    // Other /64s, however near, have their own budgets.
    for other in ["2001:db8:a:c::1", "2001:db8:a:a:ffff:ffff:ffff:ffff", "2001:db8:b:b::1"] {
        assert_eq!(healthz_as(&app, other).await, 200, "{other}");
    }

    // IPv4 clients are keyed by their whole address, as before.
    for host in 1..=5 {
        assert_eq!(healthz_as(&app, &format!("198.51.100.{host}")).await, 200, "198.51.100.{host}");
    }
    // The IPv4-mapped forms of an address share its budget.
    for form in ["198.51.100.7", "::ffff:198.51.100.7", "::ffff:c633:6407"] {
        assert_eq!(healthz_as(&app, form).await, 200, "{form}");
    }
    assert_eq!(healthz_as(&app, "198.51.100.7").await, 429, "the mapped forms were the same client");
}

/// The per-client stream cap counts an IPv6 /64 as one client too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_caps_key_ipv6_clients_by_64() {
    let app = app(&["--max-streams-per-ip", "3", "--trusted-proxies", "127.0.0.1"]).await;
    let channel = app.create_channel("public").await;
    let open = |forwarded: &str| {
        sse_client::connect(app.client.get(stream_url(&app, &channel)).header("x-forwarded-for", forwarded.to_owned()))
    };
    let mut held = Vec::new();
    for host in 1..=3 {
        let stream = open(&format!("2001:db8:a:b::{host}")).await;
        assert_eq!(stream.status, 200, "2001:db8:a:b::{host}");
        held.push(stream);
    }
    for host in ["2001:db8:a:b::4", "2001:db8:a:b:1:2:3:4", "2001:db8:a:b:ffff:ffff:ffff:ffff"] {
        let refused = open(host).await;
        assert_eq!(refused.status, 429, "{host} is in the same /64");
        assert_eq!(refused.error_json().await["error"]["code"], "too_many_streams");
    }
    for other in ["2001:db8:a:c::1", "2001:db8:a:a::1", "2001:db8:ffff:b::1"] {
        let stream = open(other).await;
        assert_eq!(stream.status, 200, "{other} is another /64");
        held.push(stream);
    }

    // IPv4: each address its own cap; the mapped forms of one address share it.
    for form in ["198.51.100.1", "::ffff:198.51.100.1", "::ffff:c633:6401"] {
        let stream = open(form).await;
        assert_eq!(stream.status, 200, "{form}");
        held.push(stream);
    }
    assert_eq!(open("198.51.100.1").await.status, 429, "the mapped forms were the same client");
    let neighbour = open("198.51.100.2").await;
    assert_eq!(neighbour.status, 200, "the next IPv4 address is another client");
}

/// Reads until the end of a response head; returns everything read so far.
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            other => panic!("no response head ({other:?}): {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    seen
}

/// Event streams take their own connection path (http::stream_conn), so the
/// transport is checked byte by byte: a stream is chunked and ends with the
/// last chunk and a close; an error is JSON with its length; a client that
/// hangs up frees its slot at once; pipelined requests still go to hyper,
/// with nothing lost; a head trickled on the channels role is cut off too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_over_raw_sockets() {
    let app = app(&["--max-streams-per-ip", "1", "--header-read-timeout-secs", "1"]).await;
    let channels = addr(&app, Role::Channels);
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].as_str().unwrap();
    let token = channel["publish_token"].as_str().unwrap();
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");

    // A stream, one message, then the channel is deleted: the stream says so,
    // sends the last chunk and the server closes the connection.
    let mut stream = TcpStream::connect(channels).await.unwrap();
    stream.write_all(get(&format!("/channel/v1/public/{id}")).as_bytes()).await.unwrap();
    let mut raw = read_head(&mut stream).await;
    assert_eq!(app.publish_text(&channel, "one").await.status(), 201);
    let deleted = app.client.delete(app.rest(&format!("/v1/channels/{id}"))).header("x-publish-token", token);
    assert_eq!(deleted.send().await.unwrap().status(), 204);
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    assert!(closed.is_ok(), "the server closed the stream: {:?}", String::from_utf8_lossy(&raw));
    assert!(raw.ends_with(b"\r\n0\r\n\r\n"), "ends with the last chunk: {:?}", String::from_utf8_lossy(&raw));
    let answer = Raw::parse(&raw).expect("an HTTP answer");
    assert_eq!(answer.status, 200);
    for line in ["content-type: text/event-stream", "cache-control: no-cache", "transfer-encoding: chunked", "date: "] {
        assert!(answer.head.contains(line), "{line}: {}", answer.head);
    }
    let events: Vec<&str> = answer.body.split("\n\n").filter(|e| e.contains("event: ")).collect();
    assert_eq!(events.len(), 2, "{}", answer.body);
    assert!(
        events[0].contains("event: message") && events[0].contains(r#""encoding":"text","payload":"one""#),
        "{}",
        events[0]
    );
    assert!(events[1].starts_with("event: deleted"), "{}", events[1]);

    // An error on the same path: JSON, its length, then the connection closes.
    let unknown = request(channels, &get(&format!("/v1/public/{}", uuid::Uuid::now_v7())), b"").await;
    assert_eq!((unknown.status, unknown.error_code().as_str()), (404, "channel_not_found"));
    assert!(unknown.head.contains(&format!("content-length: {}", unknown.body.len())), "{}", unknown.head);

    // A client that hangs up frees its slot (one per client here) at once.
    let channel = app.create_channel("public").await;
    let path = format!("/v1/public/{}", channel["channel_id"].as_str().unwrap());
    let mut first = TcpStream::connect(channels).await.unwrap();
    first.write_all(get(&path).as_bytes()).await.unwrap();
    assert!(read_head(&mut first).await.starts_with(b"HTTP/1.1 200 "));
    drop(first);
    let started = Instant::now();
    loop {
        let mut next = TcpStream::connect(channels).await.unwrap();
        next.write_all(get(&path).as_bytes()).await.unwrap();
        let head = read_head(&mut next).await;
        if head.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(head.starts_with(b"HTTP/1.1 429 "), "{:?}", String::from_utf8_lossy(&head));
        assert!(started.elapsed() < Duration::from_secs(2), "the slot of a closed stream is still held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two requests in one write: hyper answers both, in order.
    let pipelined = format!("{}GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", get("/v1/public/nope"));
    let answer = String::from_utf8_lossy(&exchange(channels, &pipelined, b"").await).into_owned();
    let (first, second) = answer.split_once("HTTP/1.1 200 ").expect("a second answer");
    assert!(first.starts_with("HTTP/1.1 400 ") && first.contains("invalid_id"), "{answer}");
    assert!(second.contains(r#"{"status":"ok"}"#), "{answer}");

    // A stream request trickled slower than the header read timeout: closed unanswered.
    let mut slow = TcpStream::connect(channels).await.unwrap();
    slow.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Slow: ").as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), slow.read_to_end(&mut nothing)).await;
    assert!(read.is_ok() && nothing.is_empty(), "closed without an answer: {:?}", String::from_utf8_lossy(&nothing));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    all_roles_healthy(&app).await;
}

/// The lean event-stream path (http::stream_conn) holds the head limit
/// exactly as hyper does: a stream GET whose head is one byte over
/// MAX_HEAD_BYTES (16 KiB) gets hyper's 431, one of exactly 16 KiB is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_heads_over_16_kib_get_431() {
    let app = app(&[]).await;
    let channels = addr(&app, Role::Channels);
    let channel = app.create_channel("public").await;
    let path = format!("/v1/public/{}", channel["channel_id"].as_str().unwrap());
    let head_of = |len: usize| {
        let start = format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Pad: ");
        let head = format!("{start}{}\r\n\r\n", "a".repeat(len - start.len() - 4));
        assert_eq!(head.len(), len);
        head
    };
    const MAX_HEAD_BYTES: usize = 16 * 1024;

    let mut at_limit = TcpStream::connect(channels).await.unwrap();
    at_limit.write_all(head_of(MAX_HEAD_BYTES).as_bytes()).await.unwrap();
    let head = String::from_utf8_lossy(&read_head(&mut at_limit).await).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ") && head.contains("text/event-stream"), "{head}");
    drop(at_limit);

    for len in [MAX_HEAD_BYTES + 1, MAX_HEAD_BYTES + 1000, 24 * 1024, 32 * 1024 - 1] {
        let answer = request(channels, &head_of(len), b"").await;
        assert_eq!(answer.status, 431, "a {len}-byte stream head: {answer:?}");
    }
    all_roles_healthy(&app).await;
}

/// LEAN_STREAMS=false (incident response): hyper serves event streams like
/// any other request. Streams still work — chunked, with their events — but
/// as hyper answers them: no `connection: close`, and when a stream ends the
/// connection stays open for the next request (the lean path closes it). The
/// minimum read rate is the lean path's, so it does not apply then (a reader
/// is cut only by WRITE_TIMEOUT_SECS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_streams_off_serves_streams_through_hyper() {
    for lean in [true, false] {
        let app = app(&["--lean-streams", if lean { "true" } else { "false" }]).await;
        let channels = addr(&app, Role::Channels);
        let channel = app.create_channel("public").await;
        let id = channel["channel_id"].as_str().unwrap();
        let token = channel["publish_token"].as_str().unwrap();

        let mut stream = TcpStream::connect(channels).await.unwrap();
        stream.write_all(format!("GET /channel/v1/public/{id} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).await.unwrap();
        let mut raw = read_head(&mut stream).await;
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ") && head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert_eq!(head.contains("connection: close"), lean, "lean {lean}: {head}");

        assert_eq!(app.publish_text(&channel, "one").await.status(), 201);
        let deleted = app.client.delete(app.rest(&format!("/v1/channels/{id}"))).header("x-publish-token", token);
        assert_eq!(deleted.send().await.unwrap().status(), 204);
        // The stream ends with its last chunk.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !raw.ends_with(b"\r\n0\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&chunk[..n]),
                other => panic!("lean {lean}: the stream did not end ({other:?}): {:?}", String::from_utf8_lossy(&raw)),
            }
        }
        let answer = Raw::parse(&raw).expect("an HTTP answer");
        assert!(
            answer.body.contains(r#""encoding":"text","payload":"one""#) && answer.body.contains("event: deleted"),
            "{}",
            answer.body
        );

        // Then: lean, the connection is closed; hyper, it serves the next request.
        let next = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await;
        let mut after = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut after)).await;
        let after = String::from_utf8_lossy(&after);
        if lean {
            assert!(!after.contains("HTTP/1.1 200 "), "the lean path closes after its stream: {after}");
        } else {
            assert!(next.is_ok() && after.contains(r#"{"status":"ok"}"#), "hyper keeps the connection: {after}");
        }
        all_roles_healthy(&app).await;
    }
}

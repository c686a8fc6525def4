//! Tokens never reach the logs. The built binary runs as a child process
//! with `RUST_LOG=trace`, its stdout and stderr captured, through a scenario
//! that hands it every kind of secret every way it is accepted: publish
//! tokens in `X-Publish-Token`, `Authorization: Bearer` and (refused with
//! 400, but sent) `?token=`; read tokens in `X-Read-Token`, Bearer and `?token=`;
//! grant creation and revocation; the internal API with its token; channel
//! deletion; and an MCP session (plain JSON-RPC over HTTP) whose tool calls
//! carry the tokens as arguments and return new ones in results. Then no
//! token, no token hash (as stored in the database), no internal token and
//! no key appears anywhere in the output — which must really be a trace log.

use std::time::Duration;

use chantra_core::domain::{PublishToken, ReadToken, TokenHasher};
use chantra_testkit::{Launcher, Server, bin};
use serde_json::{Value, json};

use crate::helpers::{Backend, TEST_SECRET, TestDatabase, s3_env};
use crate::mcp::McpClient;
use crate::on_both_backends;
use crate::sse_client;

const INTERNAL: &str = "internal-log-test-secret-0123456789";

/// Starts `chantra serve --role all` at trace level (stdout and stderr in its log).
async fn start(dir: &std::path::Path, backend: Backend, database_url: &str) -> Server {
    let mut launcher = Launcher::new(bin!(), dir)
        .roles("all")
        .env("RUST_LOG", "trace")
        .database(database_url)
        .env("INTERNAL_API_TOKEN", INTERNAL);
    if backend == Backend::Postgres {
        launcher = launcher.s3(&s3_env());
    }
    launcher.start().await
}

/// Reads a stream until its first `message` event (or 10 s), then drops it.
async fn first_message(request: reqwest::RequestBuilder) {
    let mut stream = sse_client::connect(request).await;
    assert_eq!(stream.status, 200);
    let seen = stream.messages(1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "no message event on the stream");
}

on_both_backends!(no_secret_reaches_the_trace_log);

async fn no_secret_reaches_the_trace_log(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::for_backend(backend, dir.path()).await;
    let server = start(dir.path(), backend, &database.url).await;
    let http = reqwest::Client::new();
    let rest = server.rest_url("");
    let mut publish_tokens: Vec<String> = Vec::new();
    let mut read_tokens: Vec<String> = Vec::new();

    // Channels: a public one with no body, a private one with JSON.
    let public: Value = http.post(format!("{rest}/v1/channels")).send().await.unwrap().json().await.unwrap();
    let private: Value = http
        .post(format!("{rest}/v1/channels"))
        .json(&json!({ "visibility": "private" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (public_id, private_id) = (public["channel_id"].as_str().unwrap(), private["channel_id"].as_str().unwrap());
    let public_token = public["publish_token"].as_str().unwrap();
    let private_token = private["publish_token"].as_str().unwrap();
    let first_read = private["read_token"].as_str().unwrap();
    publish_tokens.extend([public_token.to_owned(), private_token.to_owned()]);
    read_tokens.push(first_read.to_owned());

    // Publish: header token, Bearer token, a token in the query string (refused:
    // publish takes only ?ttl=, and the refusal must not log it either), and a wrong token.
    let published = http
        .post(format!("{rest}/v1/channels/{public_id}/publish?ttl=600"))
        .header("x-publish-token", public_token)
        .body("public hello")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let refused = http
        .post(format!("{rest}/v1/channels/{private_id}/publish?token={private_token}"))
        .bearer_auth(private_token)
        .body("query token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let published = http
        .post(format!("{rest}/v1/channels/{private_id}/publish"))
        .bearer_auth(private_token)
        .header("content-type", "application/vnd.chantra.envelope+json")
        .body(json!({ "payload": "cHJpdmF0ZSBoZWxsbw==", "content_type": "text/plain" }).to_string())
        .header("idempotency-key", "log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let forged = PublishToken::generate();
    publish_tokens.push(forged.expose().to_owned());
    let refused = http
        .post(format!("{rest}/v1/channels/{private_id}/publish"))
        .header("x-publish-token", forged.expose())
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metadata = http.get(format!("{rest}/v1/channels/{private_id}")).bearer_auth(private_token).send().await;
    assert_eq!(metadata.unwrap().status(), 200);

    // Reads: the read token in X-Read-Token, as Bearer, and in ?token= (the EventSource way).
    let stream = server.channels_url(&format!("/channel/v1/private/{private_id}"));
    first_message(http.get(&stream).header("x-read-token", first_read).header("last-event-id", public_id)).await;
    first_message(http.get(&stream).bearer_auth(first_read).query(&[("since", "0")])).await;
    first_message(http.get(format!("{stream}?token={first_read}&since=0"))).await;
    let public_stream = server.channels_url(&format!("/channel/v1/public/{public_id}?since=0"));
    first_message(http.get(&public_stream)).await;
    let forged_read = ReadToken::generate();
    read_tokens.push(forged_read.expose().to_owned());
    let refused = http.get(format!("{stream}?token={}", forged_read.expose())).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // The internal read API, with its token and a read token.
    let internal = http
        .get(server.channels_url(&format!("/internal/v1/channels/{private_id}/messages")))
        .header("x-internal-token", INTERNAL)
        .header("x-read-token", first_read)
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 200);

    // A grant: created, used, revoked.
    let grant: Value = http
        .post(format!("{rest}/v1/channels/{private_id}/read-grants"))
        .header("x-publish-token", private_token)
        .json(&json!({ "label": "dashboard", "expires_in_seconds": 3600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant_token = grant["read_token"].as_str().unwrap();
    read_tokens.push(grant_token.to_owned());
    first_message(http.get(format!("{stream}?since=0")).header("x-read-token", grant_token)).await;
    let revoked = http
        .post(format!("{rest}/v1/channels/{private_id}/read-grants/{}/revoke", grant["grant_id"].as_str().unwrap()))
        .header("x-publish-token", private_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    // MCP: tokens as tool arguments, and new tokens in tool results.
    let mut mcp = McpClient::connect(server.url("mcp", "/mcp")).await;
    let (failed, created) = mcp.call("create_channel", json!({ "visibility": "private" })).await;
    assert!(!failed, "{created}");
    let mcp_id = created["channel_id"].as_str().unwrap().to_owned();
    let mcp_publish = created["publish_token"].as_str().unwrap().to_owned();
    let mcp_read = created["read_token"].as_str().unwrap().to_owned();
    publish_tokens.push(mcp_publish.clone());
    read_tokens.push(mcp_read.clone());
    let calls = [
        ("publish_message", json!({ "channel_id": mcp_id, "publish_token": mcp_publish, "payload": "agent hello" })),
        ("publish_message", json!({ "channel_id": private_id, "publish_token": private_token, "payload": "via mcp" })),
        ("read_channel_messages", json!({ "channel_id": mcp_id, "read_token": mcp_read })),
        ("read_channel_messages", json!({ "channel_id": private_id, "read_token": first_read })),
        ("get_channel", json!({ "channel_id": mcp_id, "publish_token": mcp_publish })),
    ];
    for (tool, arguments) in calls {
        let (failed, result) = mcp.call(tool, arguments).await;
        assert!(!failed, "{tool}: {result}");
    }
    let (failed, grant) =
        mcp.call("create_read_grant", json!({ "channel_id": mcp_id, "publish_token": mcp_publish })).await;
    assert!(!failed, "{grant}");
    read_tokens.push(grant["read_token"].as_str().unwrap().to_owned());
    let revoke = json!({ "channel_id": mcp_id, "publish_token": mcp_publish, "grant_id": grant["grant_id"] });
    assert!(!mcp.call("revoke_read_grant", revoke).await.0);
    let (failed, wrong) =
        mcp.call("get_channel", json!({ "channel_id": mcp_id, "publish_token": forged.expose() })).await;
    assert!(failed, "{wrong}");
    assert!(!mcp.call("delete_channel", json!({ "channel_id": mcp_id, "publish_token": mcp_publish })).await.0);

    // Deletion, over REST.
    for (id, token) in [(public_id, public_token), (private_id, private_token)] {
        let deleted = http.delete(format!("{rest}/v1/channels/{id}")).header("x-publish-token", token).send().await;
        assert_eq!(deleted.unwrap().status(), 204);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = server.log();
    // Below info, everything that logs at all is in: each request of each role
    // at its start, response and end of stream (tower-http, DEBUG), each
    // publish (DEBUG), and any TRACE event (none of the code paths here emits
    // one; axum would, for its own extractors' rejections).
    let verbose = log.lines().filter(|l| l.contains(" DEBUG ") || l.contains(" TRACE ")).count();
    assert!(verbose >= 60, "the log is really verbose ({verbose} DEBUG/TRACE lines):\n{log}");
    for role in ["rest", "channels", "mcp"] {
        assert!(log.contains(&format!("role=\"{role}\"")), "{role} requests are logged");
    }
    assert!(log.contains(private_id), "requests are logged with their path");

    let hasher = TokenHasher::new(TEST_SECRET.as_bytes());
    let mut secrets: Vec<(String, String)> = Vec::new();
    for token in &publish_tokens {
        let parsed = PublishToken::parse(token).unwrap();
        secrets.push((format!("publish token {}…", &token[..8]), token[4..].to_owned()));
        secrets.push((format!("hash of publish token {}…", &token[..8]), hasher.hash_publish(&parsed).as_str().into()));
    }
    for token in &read_tokens {
        let parsed = ReadToken::parse(token).unwrap();
        secrets.push((format!("read token {}…", &token[..8]), token[4..].to_owned()));
        secrets.push((format!("hash of read token {}…", &token[..8]), hasher.hash_read(&parsed).as_str().into()));
    }
    secrets.push(("INTERNAL_API_TOKEN".into(), INTERNAL.into()));
    secrets.push(("TOKEN_SECRET_SALT".into(), TEST_SECRET.into()));
    if backend == Backend::Postgres {
        secrets.push(("S3_SECRET_KEY".into(), s3_env().secret_key));
    }
    assert_eq!(
        secrets.len(),
        2 * (publish_tokens.len() + read_tokens.len()) + 2 + usize::from(backend == Backend::Postgres)
    );
    let leaked: Vec<&str> =
        secrets.iter().filter(|(_, s)| log.contains(s.as_str())).map(|(what, _)| what.as_str()).collect();
    assert!(leaked.is_empty(), "secrets in the trace log: {leaked:?}");
    // Not even a recognisable piece of one (a token cut at a line break or a field boundary).
    for token in publish_tokens.iter().chain(&read_tokens) {
        assert!(!log.contains(&token[4..20]), "a piece of {}… is in the log", &token[..8]);
    }
}

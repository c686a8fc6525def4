//! The mcp role over real HTTP: the tool list (snapshot), every tool's
//! success and error paths on both backends, reads through the channels
//! role's internal API, two replicas sharing sessions, DNS-rebinding
//! protection and rate limiting.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chantra::cli::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, TestDatabase, spawn_app_with};
use crate::on_both_backends;

/// A minimal Streamable HTTP client: JSON-RPC over POST, answers as JSON or SSE.
pub struct McpClient {
    http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    next_id: u64,
    /// Sent as X-Forwarded-For (a client behind a trusted proxy).
    forwarded_for: Option<String>,
    /// Bytes of the last HTTP response body.
    pub last_response_bytes: usize,
}

fn initialize_params() -> Value {
    json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": { "name": "chantra-tests", "version": "1" }
    })
}

impl McpClient {
    pub async fn connect(url: String) -> Self {
        Self::connect_from(url, None).await
    }

    /// A client whose requests come through a trusted proxy for `forwarded_for`.
    pub async fn connect_from(url: String, forwarded_for: Option<&str>) -> Self {
        let mut client = Self { forwarded_for: forwarded_for.map(str::to_owned), ..Self::detached(url) };
        let init = client.request("initialize", initialize_params()).await;
        assert_eq!(init["result"]["serverInfo"]["name"], "chantra", "{init}");
        client.notify("notifications/initialized").await;
        client
    }

    /// A client with no session yet.
    pub fn detached(url: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
            session: None,
            next_id: 1,
            forwarded_for: None,
            last_response_bytes: 0,
        }
    }

    /// An `initialize` without a session, for its raw HTTP answer.
    pub async fn try_initialize(&self) -> reqwest::Response {
        let body = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params() });
        let mut request = self.http.post(&self.url).header("accept", "application/json, text/event-stream").json(&body);
        if let Some(ip) = &self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        request.send().await.unwrap()
    }

    /// Ends the session (HTTP DELETE).
    pub async fn close(&mut self) {
        let session = self.session.take().expect("a session");
        let mut request =
            self.http.delete(&self.url).header("mcp-session-id", session).header("mcp-protocol-version", "2025-06-18");
        if let Some(ip) = &self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        let response = request.send().await.unwrap();
        // 204, not rmcp's 202: the official Python SDK warns on anything but 200/204.
        assert_eq!(response.status(), 204, "DELETE");
    }

    fn post(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(body);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(ip) = &self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        request
    }

    async fn notify(&self, method: &str) {
        let response = self.post(&self.url, &json!({ "jsonrpc": "2.0", "method": method })).send().await.unwrap();
        assert!(response.status().is_success(), "{method}: {}", response.status());
    }

    /// Sends a request to `url` (another replica, say) and returns the JSON-RPC response.
    pub async fn request_at(&mut self, url: &str, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = self.post(url, &body).send().await.unwrap();
        assert!(response.status().is_success(), "{method}: HTTP {}", response.status());
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.to_str().unwrap().to_owned());
        }
        let is_sse = response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream");
        let text = response.text().await.unwrap();
        self.last_response_bytes = text.len();
        let messages: Vec<Value> = if is_sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        } else {
            vec![serde_json::from_str(&text).unwrap()]
        };
        messages.into_iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer to {method}: {text}"))
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let url = self.url.clone();
        self.request_at(&url, method, params).await
    }

    /// Calls a tool; returns (is_error, structured content or the parsed text content).
    pub async fn call(&mut self, tool: &str, arguments: Value) -> (bool, Value) {
        let url = self.url.clone();
        self.call_at(&url, tool, arguments).await
    }

    pub async fn call_at(&mut self, url: &str, tool: &str, arguments: Value) -> (bool, Value) {
        let response = self.request_at(url, "tools/call", json!({ "name": tool, "arguments": arguments })).await;
        let result = &response["result"];
        assert!(result.is_object(), "{tool}: not a tool result: {response}");
        let is_error = result["isError"].as_bool().unwrap_or(false);
        let content = if result["structuredContent"].is_object() {
            result["structuredContent"].clone()
        } else {
            serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
        };
        (is_error, content)
    }
}

fn error_code(result: &(bool, Value)) -> &str {
    assert!(result.0, "expected a tool error, got {}", result.1);
    result.1["error"]["code"].as_str().unwrap()
}

async fn mcp_app(backend: Backend, extra: &[&str]) -> TestApp {
    let options = Options {
        roles: Some(Role::EACH.to_vec()),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    spawn_app_with(backend, options).await
}

on_both_backends!(
    tools_work_end_to_end,
    tool_errors_match_the_rest_api,
    each_payload_appears_once,
    pages_are_bounded_in_bytes,
    sessions_are_capped_per_client_and_process,
    wait_for_messages_follows_a_channel,
    reads_from_latest_and_since
);

/// Every property of every input schema, with its path, recursively.
fn schema_nodes<'a>(path: String, schema: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match schema {
        Value::Object(map) => {
            out.push((path.clone(), schema));
            for (key, child) in map {
                schema_nodes(format!("{path}/{key}"), child, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                schema_nodes(format!("{path}/{i}"), child, out);
            }
        }
        _ => {}
    }
}

/// Ajv-based clients (the MCP Inspector) refuse nullable type unions and
/// unknown formats: optional arguments are their plain type, formats standard.
#[tokio::test]
async fn schemas_every_client_can_fill() {
    const STANDARD: &[&str] = &["date-time", "date", "time", "duration", "uuid", "uri", "email"];
    let app = mcp_app(Backend::Sqlite, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let listed = client.request("tools/list", json!({})).await;
    let mut optional_integers = 0;
    for tool in listed["result"]["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        let mut nodes = Vec::new();
        schema_nodes(format!("{name}/inputSchema"), &tool["inputSchema"], &mut nodes);
        for (path, node) in &nodes {
            assert!(!node["type"].is_array(), "{path}: a type union {}", node["type"]);
            assert_ne!(node["type"], "null", "{path}");
            if let Some(format) = node["format"].as_str() {
                assert!(STANDARD.contains(&format), "{path}: non-standard format {format}");
            }
        }
        let required: Vec<&str> = tool["inputSchema"]["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (field, property) in tool["inputSchema"]["properties"].as_object().unwrap() {
            if property["type"] == "integer" && !required.contains(&field.as_str()) {
                optional_integers += 1;
            }
        }
        let mut nodes = Vec::new();
        schema_nodes(format!("{name}/outputSchema"), &tool["outputSchema"], &mut nodes);
        for (path, node) in &nodes {
            if let Some(format) = node["format"].as_str() {
                assert!(STANDARD.contains(&format), "{path}: non-standard format {format}");
            }
        }
    }
    assert!(optional_integers >= 3, "ttl_seconds, expires_in_seconds, limit are plain optional integers");
}

#[tokio::test]
async fn tools_list_is_stable() {
    let app = mcp_app(Backend::Sqlite, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let listed = client.request("tools/list", json!({})).await;
    let tools = listed["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8);
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        assert!(tool["description"].as_str().is_some_and(|d| d.len() > 40), "{name} is described");
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
        assert_eq!(tool["outputSchema"]["type"], "object", "{name} publishes an output schema");
        let read_only = tool["annotations"]["readOnlyHint"].as_bool().unwrap();
        let destructive = tool["annotations"]["destructiveHint"].as_bool().unwrap();
        assert_eq!(read_only, matches!(name, "get_channel" | "read_channel_messages" | "wait_for_messages"), "{name}");
        assert_eq!(destructive, matches!(name, "delete_channel" | "revoke_read_grant"), "{name}");
    }
    insta::assert_json_snapshot!("tools_list", listed["result"]);

    let discovery: Value =
        app.client.get(app.url(Role::Mcp, "/.well-known/mcp-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["name"], "chantra");
    assert_eq!(discovery["endpoints"]["streamable_http"], app.url(Role::Mcp, "/mcp"), "the bound address");
    assert_eq!(discovery["tools"].as_array().unwrap().len(), 8);
    assert!(discovery["protocol_versions"].as_array().unwrap().iter().any(|v| v == "2025-06-18"));
}

/// The content items after the text one, with the channel id as `[uuid]`.
fn links(response: &Value, channel_id: &str) -> Value {
    let content = response["result"]["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "text", "the JSON text comes first: {response}");
    let links = Value::Array(content[1..].to_vec());
    serde_json::from_str(&links.to_string().replace(channel_id, "[uuid]")).unwrap()
}

#[tokio::test]
async fn tool_results_link_their_channel() {
    let app = mcp_app(Backend::Sqlite, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let created = client.request("tools/call", json!({ "name": "create_channel", "arguments": {} })).await;
    let channel = &created["result"]["structuredContent"];
    let id = channel["channel_id"].as_str().unwrap().to_owned();
    let token = channel["publish_token"].as_str().unwrap().to_owned();
    let published = client
        .request(
            "tools/call",
            json!({ "name": "publish_message", "arguments": { "channel_id": id, "publish_token": token, "payload": "hi" } }),
        )
        .await;
    let read = client
        .request("tools/call", json!({ "name": "read_channel_messages", "arguments": { "channel_id": id } }))
        .await;
    let failed = client
        .request(
            "tools/call",
            json!({ "name": "get_channel", "arguments": { "channel_id": id, "publish_token": "chp_x" } }),
        )
        .await;
    assert_eq!(failed["result"]["isError"], true);
    assert_eq!(failed["result"]["content"].as_array().unwrap().len(), 1, "no link on an error: {failed}");
    let deleted = client
        .request(
            "tools/call",
            json!({ "name": "delete_channel", "arguments": { "channel_id": id, "publish_token": token } }),
        )
        .await;
    assert_eq!(deleted["result"]["content"].as_array().unwrap().len(), 1, "no link to a deleted channel");
    insta::assert_json_snapshot!(
        "tool_result_links",
        json!({
            "create_channel": links(&created, &id),
            "publish_message": links(&published, &id),
            "read_channel_messages": links(&read, &id),
        })
    );
}

async fn tools_work_end_to_end(backend: Backend) {
    let app = mcp_app(backend, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;

    let (error, public) = client.call("create_channel", json!({})).await;
    assert!(!error);
    assert_eq!(public["visibility"], "public");
    let id = public["channel_id"].as_str().unwrap();
    let token = public["publish_token"].as_str().unwrap();

    let (error, first) = client
        .call("publish_message", json!({ "channel_id": id, "publish_token": token, "payload": "héllo agents" }))
        .await;
    assert!(!error, "{first}");
    assert_eq!(first["content_type"], "text/plain; charset=utf-8");
    let binary = [0u8, 159, 146, 150];
    let (_, second) = client
        .call(
            "publish_message",
            json!({ "channel_id": id, "publish_token": token, "payload_base64": STANDARD.encode(binary), "ttl_seconds": 60 }),
        )
        .await;
    assert_eq!(second["content_type"], "application/octet-stream");

    // The REST API sees what MCP published: one service layer.
    let rest_view: Value = app.get_channel(&public).await.json().await.unwrap();
    assert_eq!(rest_view["live_messages"], 2);

    let (_, page) = client.call("read_channel_messages", json!({ "channel_id": id, "limit": 1 })).await;
    assert_eq!(page["messages"][0]["payload_text"], "héllo agents");
    assert_eq!(page["has_more"], true);
    let (_, rest) = client
        .call("read_channel_messages", json!({ "channel_id": id, "after": page["next_cursor"], "limit": 10 }))
        .await;
    assert_eq!(rest["messages"][0]["id"], second["message_id"]);
    assert!(rest["messages"][0].get("payload_text").is_none(), "not UTF-8: no text");
    assert_eq!(STANDARD.decode(rest["messages"][0]["payload_base64"].as_str().unwrap()).unwrap(), binary);
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["truncated"], false);

    let (_, private) = client.call("create_channel", json!({ "visibility": "private" })).await;
    let pid = private["channel_id"].as_str().unwrap();
    let ptoken = private["publish_token"].as_str().unwrap();
    client.call("publish_message", json!({ "channel_id": pid, "publish_token": ptoken, "payload": "secret" })).await;
    let (error, grant) =
        client.call("create_read_grant", json!({ "channel_id": pid, "publish_token": ptoken, "label": "agent" })).await;
    assert!(!error);
    let (_, read) =
        client.call("read_channel_messages", json!({ "channel_id": pid, "read_token": grant["read_token"] })).await;
    assert_eq!(read["messages"][0]["payload_text"], "secret");

    let (_, described) = client.call("get_channel", json!({ "channel_id": pid, "publish_token": ptoken })).await;
    assert_eq!(described["read_grants"].as_array().unwrap().len(), 2);
    // The create result names the first grant.
    assert_eq!(described["read_grants"][0]["grant_id"], private["read_grant_id"]);
    let (error, revoked) = client
        .call("revoke_read_grant", json!({ "channel_id": pid, "publish_token": ptoken, "grant_id": grant["grant_id"] }))
        .await;
    assert!(!error);
    assert_eq!(revoked["state"], "revoked");
    let denied =
        client.call("read_channel_messages", json!({ "channel_id": pid, "read_token": grant["read_token"] })).await;
    assert_eq!(error_code(&denied), "grant_revoked");

    let (error, deleted) = client.call("delete_channel", json!({ "channel_id": pid, "publish_token": ptoken })).await;
    assert!(!error);
    assert_eq!(deleted["deleted"], true);
    let gone = client.call("get_channel", json!({ "channel_id": pid, "publish_token": ptoken })).await;
    assert_eq!(error_code(&gone), "channel_not_found");
}

async fn tool_errors_match_the_rest_api(backend: Backend) {
    let app = mcp_app(backend, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let (_, channel) = client.call("create_channel", json!({ "visibility": "private" })).await;
    let id = channel["channel_id"].as_str().unwrap();
    let token = channel["publish_token"].as_str().unwrap();
    let other: Value = app.create_channel("public").await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let cases = [
        (
            "publish_message",
            json!({ "channel_id": id, "publish_token": other["publish_token"], "payload": "x" }),
            "invalid_token",
        ),
        ("publish_message", json!({ "channel_id": id, "publish_token": "chp_bad", "payload": "x" }), "invalid_token"),
        (
            "publish_message",
            json!({ "channel_id": unknown, "publish_token": token, "payload": "x" }),
            "channel_not_found",
        ),
        (
            "publish_message",
            json!({ "channel_id": id, "publish_token": token, "payload": "x", "ttl_seconds": 172_801 }),
            "invalid_ttl",
        ),
        (
            "publish_message",
            json!({ "channel_id": id, "publish_token": token, "payload_base64": "%%" }),
            "invalid_payload",
        ),
        ("publish_message", json!({ "channel_id": id, "publish_token": token }), "invalid_payload"),
        ("publish_message", json!({ "channel_id": id, "publish_token": token, "payload": "" }), "empty_payload"),
        ("publish_message", json!({ "channel_id": "nope", "publish_token": token, "payload": "x" }), "invalid_id"),
        ("get_channel", json!({ "channel_id": id, "publish_token": channel["read_token"] }), "invalid_token"),
        (
            "create_read_grant",
            json!({ "channel_id": other["channel_id"], "publish_token": other["publish_token"] }),
            "channel_is_public",
        ),
        (
            "revoke_read_grant",
            json!({ "channel_id": id, "publish_token": token, "grant_id": unknown }),
            "grant_not_found",
        ),
        ("read_channel_messages", json!({ "channel_id": id }), "missing_token"),
        ("read_channel_messages", json!({ "channel_id": id, "read_token": "chr_bad" }), "invalid_token"),
        (
            "read_channel_messages",
            json!({ "channel_id": id, "read_token": channel["read_token"], "after": "x" }),
            "invalid_cursor",
        ),
        (
            "read_channel_messages",
            json!({ "channel_id": id, "read_token": channel["read_token"], "limit": 0 }),
            "invalid_limit",
        ),
    ];
    for (tool, arguments, code) in cases {
        let result = client.call(tool, arguments.clone()).await;
        assert_eq!(error_code(&result), code, "{tool} {arguments}");
        let message = result.1["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty());
        // Written for agents: tool arguments, never HTTP header names.
        assert!(!message.contains("header") && !message.contains("X-"), "{tool}: {message}");
    }
    let missing = client.call("read_channel_messages", json!({ "channel_id": id })).await;
    assert!(missing.1["error"]["message"].as_str().unwrap().contains("pass read_token"), "{}", missing.1);

    // Arguments that do not fit a tool are tool errors with the REST API's
    // code for a body that does not fit (invalid_json), naming the argument.
    let argument_cases = [
        (
            "publish_message",
            json!({ "channel_id": id, "publish_token": token, "payload": "x", "ttl_seconds": "60" }),
            "ttl_seconds",
        ),
        ("publish_message", json!({ "channel_id": id, "publish_token": token, "payload": "x", "bogus": 1 }), "bogus"),
        ("get_channel", json!({ "channel_id": id }), "publish_token"),
        ("create_channel", json!({ "visibility": "secret" }), "visibility"),
        ("read_channel_messages", json!({ "channel_id": id, "limit": -1 }), "limit"),
    ];
    for (tool, arguments, named) in argument_cases {
        let result = client.call(tool, arguments.clone()).await;
        assert_eq!(error_code(&result), "invalid_json", "{tool} {arguments}");
        let message = result.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{tool}: {message}");
        assert!(!message.contains("i64") && !message.contains("u64"), "{tool}: {message}");
    }
    // The same mistake through REST gives the same code and message.
    let rest = app
        .client
        .post(app.rest(&format!("/v1/channels/{id}/publish?ttl=172801")))
        .header("x-publish-token", token)
        .body("x")
        .send()
        .await
        .unwrap();
    let rest: Value = rest.json().await.unwrap();
    let mcp = client
        .call(
            "publish_message",
            json!({ "channel_id": id, "publish_token": token, "payload": "x", "ttl_seconds": 172_801 }),
        )
        .await;
    assert_eq!(rest["error"], mcp.1["error"]);

    // An unknown tool is a protocol-level error.
    let unknown_tool = client.request("tools/call", json!({ "name": "nope", "arguments": {} })).await;
    assert!(unknown_tool["error"].is_object(), "{unknown_tool}");
}

/// A body that is not JSON, or not JSON-RPC, is answered in JSON-RPC
/// (-32700, -32600), not with a plain-text 415.
#[tokio::test]
async fn malformed_jsonrpc_gets_jsonrpc_errors() {
    let app = mcp_app(Backend::Sqlite, &[]).await;
    let url = app.url(Role::Mcp, "/mcp");
    let send = |body: &'static str| {
        app.client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, code, id) in [("{not json", -32700, Value::Null), (r#"{"id": 7, "nothing": true}"#, -32600, json!(7))] {
        let response = send(body).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["id"], id);
    }
    // A well-formed request still works after the check, and its session ends with 204.
    let mut client = McpClient::connect(url).await;
    let (error, _) = client.call("create_channel", json!({})).await;
    assert!(!error);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_the_channels_internal_api() {
    // A channels process and an mcp process apart, sharing one database and store.
    let database = TestDatabase::create().await;
    let secret = "internal-secret-0123456789";
    let shared = |roles: Vec<Role>, extra: Vec<String>| Options {
        roles: Some(roles),
        extra_args: [
            vec!["--database-url".into(), database.url.clone(), "--internal-api-token".into(), secret.into()],
            extra,
        ]
        .concat(),
        ..Default::default()
    };
    let channels = spawn_app_with(Backend::Postgres, shared(vec![Role::Rest, Role::Channels], vec![])).await;
    let internal_url = channels.url(Role::Channels, "");
    let mcp = spawn_app_with(
        Backend::Postgres,
        shared(vec![Role::Mcp], vec!["--channels-internal-url".into(), internal_url]),
    )
    .await;
    let mut client = McpClient::connect(mcp.url(Role::Mcp, "/mcp")).await;
    let channel = channels.create_channel("private").await;
    channels.publish_text(&channel, "via the internal API").await;
    let (error, page) = client
        .call(
            "read_channel_messages",
            json!({ "channel_id": channel["channel_id"], "read_token": channel["read_token"] }),
        )
        .await;
    assert!(!error, "{page}");
    assert_eq!(page["messages"][0]["payload_text"], "via the internal API");
    channels.publish_text(&channel, "the newest").await;
    let (error, latest) = client
        .call(
            "read_channel_messages",
            json!({ "channel_id": channel["channel_id"], "read_token": channel["read_token"], "from": "latest", "limit": 1 }),
        )
        .await;
    assert!(!error, "{latest}");
    assert_eq!(texts(&latest), ["the newest"], "from: latest through the internal API");
    let denied = client.call("read_channel_messages", json!({ "channel_id": channel["channel_id"] })).await;
    assert_eq!(error_code(&denied), "missing_token");

    // With the channels role down, the tool says so instead of failing obscurely.
    drop(channels);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let down = client
        .call(
            "read_channel_messages",
            json!({ "channel_id": channel["channel_id"], "read_token": channel["read_token"] }),
        )
        .await;
    assert_eq!(error_code(&down), "channels_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_one_session() {
    let database = TestDatabase::create().await;
    let replica = || Options {
        roles: Some(vec![Role::Mcp, Role::Rest]),
        extra_args: vec!["--database-url".into(), database.url.clone()],
        ..Default::default()
    };
    let a = spawn_app_with(Backend::Postgres, replica()).await;
    let b = spawn_app_with(Backend::Postgres, replica()).await;
    let (url_a, url_b) = (a.url(Role::Mcp, "/mcp"), b.url(Role::Mcp, "/mcp"));
    let mut client = McpClient::connect(url_a.clone()).await;
    assert!(client.session.is_some(), "a session was opened on replica A");

    // Alternate every request between the replicas with the one session.
    let urls = [url_b.clone(), url_a.clone()];
    let (error, channel) = client.call_at(&urls[0], "create_channel", json!({})).await;
    assert!(!error);
    let id = channel["channel_id"].as_str().unwrap();
    let token = channel["publish_token"].as_str().unwrap();
    let mut published = Vec::new();
    for i in 0..6 {
        let (error, message) = client
            .call_at(
                &urls[i % 2],
                "publish_message",
                json!({ "channel_id": id, "publish_token": token, "payload": format!("m{i}") }),
            )
            .await;
        assert!(!error, "{message}");
        published.push(message["message_id"].clone());
    }
    let (_, page) = client.call_at(&url_b, "read_channel_messages", json!({ "channel_id": id })).await;
    let ids: Vec<Value> = page["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, published);
    let listed = client.request_at(&url_b, "tools/list", json!({})).await;
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn dns_rebinding_and_rate_limits_are_enforced() {
    let app = mcp_app(Backend::Sqlite, &["--rate-limit-per-second", "1", "--rate-limit-burst", "5"]).await;
    let url = app.url(Role::Mcp, "/mcp");
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "x", "version": "1" } } });
    let send = |host: Option<&str>, origin: Option<&str>| {
        let mut request = app.client.post(&url).header("accept", "application/json, text/event-stream").json(&body);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(send(Some("evil.example"), None).await.unwrap().status(), 403, "a foreign Host is refused");
    assert_eq!(send(None, Some("https://evil.example")).await.unwrap().status(), 403, "a foreign Origin is refused");
    assert_eq!(send(None, Some("http://localhost:3000")).await.unwrap().status(), 200);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(None, None).await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "rate limiting covers /mcp: {statuses:?}");
}

/// Publishes `payload` through REST with a content type; returns the message id.
async fn publish_raw(app: &TestApp, channel: &Value, content_type: &str, payload: Vec<u8>) -> String {
    let response = app
        .client
        .post(app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .header("content-type", content_type)
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["message_id"].as_str().unwrap().to_owned()
}

async fn each_payload_appears_once(backend: Backend) {
    let app = mcp_app(backend, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let channel = app.create_channel("public").await;
    let text = "a text payload that must not be sent twice";
    publish_raw(&app, &channel, "text/plain; charset=utf-8", text.into()).await;
    // A textual type that is not text/*.
    publish_raw(&app, &channel, "application/xml", b"<k>v</k>".to_vec()).await;
    // Valid UTF-8, but the publisher said these are bytes: they stay bytes.
    publish_raw(&app, &channel, "application/octet-stream", b"plain ascii bytes".to_vec()).await;
    // A textual type whose bytes are not UTF-8.
    publish_raw(&app, &channel, "text/plain; charset=iso-8859-1", vec![0x63, 0x61, 0x66, 0xe9]).await;

    let (error, page) = client.call("read_channel_messages", json!({ "channel_id": channel["channel_id"] })).await;
    assert!(!error, "{page}");
    let messages = page["messages"].as_array().unwrap();
    let forms: Vec<(bool, bool)> =
        messages.iter().map(|m| (m.get("payload_text").is_some(), m.get("payload_base64").is_some())).collect();
    assert_eq!(forms, [(true, false), (true, false), (false, true), (false, true)], "{page}");
    assert_eq!(messages[0]["payload_text"], text);
    assert_eq!(messages[1]["payload_text"], "<k>v</k>");
    assert_eq!(STANDARD.decode(messages[2]["payload_base64"].as_str().unwrap()).unwrap(), b"plain ascii bytes");
    assert_eq!(STANDARD.decode(messages[3]["payload_base64"].as_str().unwrap()).unwrap(), [0x63, 0x61, 0x66, 0xe9]);
    assert_eq!(page["truncated"], false);
    // Nowhere else in the structured result either (the text content block is its JSON copy).
    assert_eq!(page.to_string().matches(text).count(), 1, "{page}");
}

/// 12 messages of 16 KiB against a 64 KiB page budget: every page stops at
/// the budget, says `truncated`, and the cursor walks through all of them.
async fn pages_are_bounded_in_bytes(backend: Backend) {
    const BUDGET: usize = 64 * 1024;
    let app = mcp_app(backend, &["--page-max-bytes", &BUDGET.to_string()]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let channel = app.create_channel("public").await;
    let mut published = Vec::new();
    for i in 0..12u8 {
        let text = format!("{i:02}").repeat(8 * 1024);
        published.push(publish_raw(&app, &channel, "text/plain", text.into_bytes()).await);
    }

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut truncated_pages = 0;
    loop {
        let (error, page) = client
            .call("read_channel_messages", json!({ "channel_id": channel["channel_id"], "after": after, "limit": 100 }))
            .await;
        assert!(!error, "{page}");
        let messages = page["messages"].as_array().unwrap();
        let payload_bytes: usize = messages.iter().map(|m| m["payload_text"].as_str().unwrap().len()).sum();
        assert!(payload_bytes <= BUDGET, "a page of {payload_bytes} payload bytes passes the budget");
        // The whole HTTP answer carries the result twice (structured + text), so about 2 × the budget.
        assert!(client.last_response_bytes < 3 * BUDGET, "{} bytes answered", client.last_response_bytes);
        seen.extend(messages.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        assert_eq!(page["next_cursor"].as_str(), seen.last().map(String::as_str));
        if page["truncated"] == true {
            truncated_pages += 1;
            assert!(messages.len() < 12 && !messages.is_empty());
            assert_eq!(page["has_more"], true, "a truncated page has more");
        }
        if page["has_more"] == false {
            break;
        }
        after = page["next_cursor"].clone();
        assert!(seen.len() <= published.len(), "the cursor goes round");
    }
    assert_eq!(seen, published, "every message once, in order");
    assert!(truncated_pages >= 2, "{truncated_pages} truncated pages");
}

/// An `initialize` refused for lack of a slot: status and the JSON error.
async fn refused(response: reqwest::Response, status: u16) {
    assert_eq!(response.status(), status);
    assert!(response.headers().get("mcp-session-id").is_none(), "no session is made");
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_sessions", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("sessions"), "{body}");
}

async fn sessions_are_capped_per_client_and_process(backend: Backend) {
    // Clients told apart by X-Forwarded-For from a trusted proxy (the test itself).
    let app = mcp_app(
        backend,
        &["--trusted-proxies", "127.0.0.1", "--mcp-max-sessions-per-ip", "3", "--mcp-max-sessions", "5"],
    )
    .await;
    let url = app.url(Role::Mcp, "/mcp");
    let a = Some("198.51.100.1");
    let mut first = McpClient::connect_from(url.clone(), a).await;
    let _second = McpClient::connect_from(url.clone(), a).await;
    let _third = McpClient::connect_from(url.clone(), a).await;
    refused(first.try_initialize().await, 429).await;

    // The sessions already open keep working.
    let (error, _) = first.call("create_channel", json!({})).await;
    assert!(!error);
    // Another client is not affected.
    let mut other = McpClient::connect_from(url.clone(), Some("198.51.100.2")).await;
    let (error, _) = other.call("create_channel", json!({})).await;
    assert!(!error);

    // A deleted session frees its slot.
    first.close().await;
    let _fourth = McpClient::connect_from(url.clone(), a).await;
    refused(first.try_initialize().await, 429).await;

    // 3 + 2 = 5 sessions: the process is full for everyone.
    let _other2 = McpClient::connect_from(url.clone(), Some("198.51.100.2")).await;
    let third_client = McpClient { forwarded_for: Some("198.51.100.3".into()), ..McpClient::detached(url.clone()) };
    refused(third_client.try_initialize().await, 503).await;
    other.close().await;
    let _fits = McpClient::connect_from(url, Some("198.51.100.3")).await;
}

#[tokio::test]
async fn idle_sessions_free_their_slot() {
    let app = mcp_app(Backend::Sqlite, &["--mcp-max-sessions-per-ip", "1", "--mcp-session-idle-secs", "1"]).await;
    let url = app.url(Role::Mcp, "/mcp");
    let client = McpClient::connect(url.clone()).await;
    refused(client.try_initialize().await, 429).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut again = McpClient::connect(url).await;
    let (error, _) = again.call("create_channel", json!({})).await;
    assert!(!error, "the new session works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_pages_are_bounded_in_bytes() {
    // The channels role and two mcp roles apart: one with the same page budget,
    // one whose cap is far below what the channels role sends.
    let database = TestDatabase::create().await;
    let secret = "internal-secret-0123456789";
    let shared = |roles: Vec<Role>, extra: &[&str]| Options {
        roles: Some(roles),
        extra_args: [
            vec!["--database-url".into(), database.url.clone(), "--internal-api-token".into(), secret.into()],
            extra.iter().map(|s| s.to_string()).collect(),
        ]
        .concat(),
        ..Default::default()
    };
    let channels =
        spawn_app_with(Backend::Postgres, shared(vec![Role::Rest, Role::Channels], &["--page-max-bytes", "67108864"]))
            .await;
    let internal_url = channels.url(Role::Channels, "");
    let mcp = spawn_app_with(
        Backend::Postgres,
        shared(vec![Role::Mcp], &["--channels-internal-url", &internal_url, "--page-max-bytes", "65536"]),
    )
    .await;
    let channel = channels.create_channel("public").await;
    for i in 0..40u8 {
        publish_raw(&channels, &channel, "text/plain", format!("{i:02}").repeat(8 * 1024).into_bytes()).await;
    }

    let mut client = McpClient::connect(mcp.url(Role::Mcp, "/mcp")).await;
    let (error, page) = client.call("read_channel_messages", json!({ "channel_id": channel["channel_id"] })).await;
    assert!(!error, "{page}");
    assert_eq!(page["truncated"], true);
    assert_eq!(page["has_more"], true);
    let count = page["messages"].as_array().unwrap().len();
    assert!((1..40).contains(&count), "{count} messages");
    assert!(client.last_response_bytes < 3 * 65536, "{} bytes answered", client.last_response_bytes);

    // This mcp role accepts internal pages of at most ~600 KB: the channels role's
    // 40 × 16 KiB page (~880 KB in base64) is refused, not buffered.
    let small = spawn_app_with(
        Backend::Postgres,
        shared(
            vec![Role::Mcp],
            &["--channels-internal-url", &internal_url, "--page-max-bytes", "16384", "--max-payload-bytes", "16384"],
        ),
    )
    .await;
    let cap = chantra::mcp::max_remote_page_bytes(16384, 16384);
    assert!(cap < 40 * 16384 * 4 / 3, "the test page must pass the cap ({cap})");
    let mut client = McpClient::connect(small.url(Role::Mcp, "/mcp")).await;
    let refused = client.call("read_channel_messages", json!({ "channel_id": channel["channel_id"] })).await;
    assert_eq!(error_code(&refused), "page_too_large", "{}", refused.1);
    // A smaller limit, as the message says, reads.
    let (error, page) =
        client.call("read_channel_messages", json!({ "channel_id": channel["channel_id"], "limit": 5 })).await;
    assert!(!error, "{page}");
    assert!(!page["messages"].as_array().unwrap().is_empty());
}

/// Publishes `text` through REST after `delay`; resolves to when the 201 came back.
fn publish_later(
    app: &TestApp,
    channel: &Value,
    text: &str,
    delay: std::time::Duration,
) -> tokio::task::JoinHandle<std::time::Instant> {
    let (client, url) =
        (app.client.clone(), app.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap())));
    let (token, text) = (channel["publish_token"].as_str().unwrap().to_owned(), text.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let response = client
            .post(url)
            .header("x-publish-token", token)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        std::time::Instant::now()
    })
}

fn texts(result: &Value) -> Vec<&str> {
    let messages = result["messages"].as_array().unwrap_or_else(|| panic!("no messages: {result}"));
    messages.iter().map(|m| m["payload_text"].as_str().unwrap_or_else(|| panic!("not text: {m}"))).collect()
}

async fn wait_for_messages_follows_a_channel(backend: Backend) {
    use std::time::{Duration, Instant};
    let app = mcp_app(backend, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].clone();
    app.publish_text(&channel, "before").await;

    // Without `after`: only messages published from now on.
    let (error, first) = client.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    assert!(!error, "{first}");
    assert_eq!(first["timed_out"], true);
    assert_eq!(first["messages"].as_array().unwrap().len(), 0);
    let (_, page) = client.call("read_channel_messages", json!({ "channel_id": id })).await;
    assert_eq!(first["next_cursor"], page["next_cursor"], "the cursor stands at the newest message");

    // A publish while waiting returns the call at once.
    let published = publish_later(&app, &channel, "live", Duration::from_millis(500));
    let started = Instant::now();
    let (error, live) = client
        .call("wait_for_messages", json!({ "channel_id": id, "after": first["next_cursor"], "timeout_seconds": 20 }))
        .await;
    let returned = Instant::now();
    let published = published.await.unwrap();
    assert!(!error, "{live}");
    assert_eq!(texts(&live), ["live"], "{live}");
    assert_eq!(live["timed_out"], false);
    assert!(returned.duration_since(started) >= Duration::from_millis(400), "it waited");
    assert!(
        returned.saturating_duration_since(published) < Duration::from_secs(1),
        "returned within 1 s of the publish"
    );
    assert_eq!(live["next_cursor"], live["messages"][0]["id"]);

    // A backlog comes at once, in order, bounded by max_messages; the cursor walks on.
    for i in 0..5 {
        app.publish_text(&channel, &format!("b{i}")).await;
    }
    let (error, part) = client
        .call("wait_for_messages", json!({ "channel_id": id, "after": live["next_cursor"], "max_messages": 3 }))
        .await;
    assert!(!error, "{part}");
    assert_eq!(texts(&part), ["b0", "b1", "b2"]);
    assert_eq!(part["has_more"], true);
    let (error, rest) = client
        .call("wait_for_messages", json!({ "channel_id": id, "after": part["next_cursor"], "timeout_seconds": 1 }))
        .await;
    assert!(!error, "{rest}");
    assert_eq!(texts(&rest), ["b3", "b4"]);
    assert_eq!(rest["has_more"], false);

    // Argument mistakes are tool errors.
    for (arguments, code) in [
        (json!({ "channel_id": id, "timeout_seconds": 0 }), "invalid_timeout"),
        (json!({ "channel_id": id, "timeout_seconds": 100_000 }), "invalid_timeout"),
        (json!({ "channel_id": id, "max_messages": 0 }), "invalid_limit"),
        (json!({ "channel_id": id, "after": "nope" }), "invalid_cursor"),
        (json!({ "channel_id": id, "timeout_seconds": "5" }), "invalid_json"),
    ] {
        let result = client.call("wait_for_messages", arguments.clone()).await;
        assert_eq!(error_code(&result), code, "{arguments}");
    }

    // Deletion ends the wait, said as a field.
    let deleter = {
        let (http, url) = (app.client.clone(), app.rest(&format!("/v1/channels/{}", id.as_str().unwrap())));
        let token = channel["publish_token"].as_str().unwrap().to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            http.delete(url).header("x-publish-token", token).send().await.unwrap().status()
        })
    };
    let (error, deleted) = client
        .call("wait_for_messages", json!({ "channel_id": id, "after": rest["next_cursor"], "timeout_seconds": 20 }))
        .await;
    assert_eq!(deleter.await.unwrap(), 204);
    assert!(!error, "{deleted}");
    assert_eq!(deleted["channel_deleted"], true, "{deleted}");
    assert_eq!(deleted["timed_out"], false);

    // A private channel: the token is needed, and its revocation ends the wait.
    let private = app.create_channel("private").await;
    let pid = private["channel_id"].clone();
    let missing = client.call("wait_for_messages", json!({ "channel_id": pid })).await;
    assert_eq!(error_code(&missing), "missing_token");
    let (_, grant) =
        client.call("create_read_grant", json!({ "channel_id": pid, "publish_token": private["publish_token"] })).await;
    let revoker = {
        let http = app.client.clone();
        let url = app.rest(&format!(
            "/v1/channels/{}/read-grants/{}/revoke",
            pid.as_str().unwrap(),
            grant["grant_id"].as_str().unwrap()
        ));
        let token = private["publish_token"].as_str().unwrap().to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            http.post(url).header("x-publish-token", token).send().await.unwrap().status()
        })
    };
    let (_, revoked) = client
        .call(
            "wait_for_messages",
            json!({ "channel_id": pid, "read_token": grant["read_token"], "timeout_seconds": 20 }),
        )
        .await;
    assert_eq!(revoker.await.unwrap(), 200);
    assert_eq!(revoked["access_ended"], "revoked", "{revoked}");
}

/// Every waiting call holds a slot: MCP_MAX_WAITS_PER_IP per client, MCP_MAX_WAITS per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_capped_per_client_and_process() {
    let app = mcp_app(
        Backend::Sqlite,
        &["--trusted-proxies", "127.0.0.1", "--mcp-max-waits-per-ip", "1", "--mcp-max-waits", "2"],
    )
    .await;
    let url = app.url(Role::Mcp, "/mcp");
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].clone();
    let wait_from = |ip: &'static str| {
        let (url, id) = (url.clone(), id.clone());
        tokio::spawn(async move {
            let mut client = McpClient::connect_from(url, Some(ip)).await;
            client.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 3 })).await
        })
    };
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(700));
    let mut waiting = vec![wait_from("198.51.100.1")];
    settle().await;
    let mut same_ip = McpClient::connect_from(url.clone(), Some("198.51.100.1")).await;
    let refused = same_ip.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    assert_eq!(error_code(&refused), "too_many_streams");
    waiting.push(wait_from("198.51.100.2"));
    settle().await;
    let mut third = McpClient::connect_from(url.clone(), Some("198.51.100.3")).await;
    let refused = third.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    assert_eq!(error_code(&refused), "server_busy");
    for waiter in waiting {
        let (error, result) = waiter.await.unwrap();
        assert!(!error && result["timed_out"] == true, "{result}");
    }
    // The slots come back when the calls return.
    let (error, result) = third.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    assert!(!error, "{result}");
}

/// The publish lands on another process (rest + channels); the mcp process
/// hears it over PostgreSQL LISTEN/NOTIFY and the waiting call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_hears_publishes_from_another_process() {
    use std::time::{Duration, Instant};
    let database = TestDatabase::create().await;
    let shared = |roles: Vec<Role>| Options {
        roles: Some(roles),
        extra_args: vec!["--database-url".into(), database.url.clone()],
        ..Default::default()
    };
    let publisher = spawn_app_with(Backend::Postgres, shared(vec![Role::Rest, Role::Channels])).await;
    let mcp = spawn_app_with(Backend::Postgres, shared(vec![Role::Mcp])).await;
    let mut client = McpClient::connect(mcp.url(Role::Mcp, "/mcp")).await;
    let channel = publisher.create_channel("private").await;
    let (_, start) = client
        .call(
            "wait_for_messages",
            json!({ "channel_id": channel["channel_id"], "read_token": channel["read_token"], "timeout_seconds": 1 }),
        )
        .await;
    assert_eq!(start["timed_out"], true, "{start}");
    let mut cursor = start["next_cursor"].clone();
    for i in 0..5 {
        let published = publish_later(&publisher, &channel, &format!("m{i}"), Duration::from_millis(300));
        let (error, result) = client
            .call(
                "wait_for_messages",
                json!({ "channel_id": channel["channel_id"], "read_token": channel["read_token"], "after": cursor, "timeout_seconds": 20 }),
            )
            .await;
        let returned = Instant::now();
        assert!(!error, "{result}");
        assert_eq!(texts(&result), [format!("m{i}")]);
        assert!(returned.saturating_duration_since(published.await.unwrap()) < Duration::from_secs(1));
        cursor = result["next_cursor"].clone();
    }
}

/// notifications/cancelled ends a waiting call at once: its slot is free
/// again (MCP_MAX_WAITS_PER_IP = 1) long before its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_ends_at_once() {
    let app = mcp_app(Backend::Sqlite, &["--mcp-max-waits-per-ip", "1"]).await;
    let url = app.url(Role::Mcp, "/mcp");
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].clone();
    let mut waiter = McpClient::connect(url.clone()).await;
    let session = waiter.session.clone();
    let request_id = waiter.next_id;
    let waiting = {
        let id = id.clone();
        tokio::spawn(async move {
            waiter.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 60 })).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut other = McpClient::connect(url.clone()).await;
    let busy = other.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    assert_eq!(error_code(&busy), "too_many_streams", "the first call holds the slot");

    let canceller = McpClient { session, ..McpClient::detached(url) };
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": request_id, "reason": "test" } });
    let response = canceller.post(&canceller.url, &cancel).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let started = std::time::Instant::now();
    loop {
        let result = other.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
        if !result.0 {
            break;
        }
        assert_eq!(error_code(&result), "too_many_streams");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the cancelled call still holds its slot");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    waiting.abort();
}

async fn reads_from_latest_and_since(backend: Backend) {
    let app = mcp_app(backend, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let channel = app.create_channel("private").await;
    let (id, token) = (channel["channel_id"].clone(), channel["read_token"].clone());
    for i in 0..3 {
        app.publish_text(&channel, &format!("a{i}")).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for i in 0..3 {
        app.publish_text(&channel, &format!("b{i}")).await;
    }
    let read = |args: Value| {
        let mut arguments = json!({ "channel_id": id, "read_token": token });
        arguments.as_object_mut().unwrap().extend(args.as_object().unwrap().clone());
        arguments
    };

    // The newest `limit`, oldest first; the cursor then follows new messages.
    let (error, latest) = client.call("read_channel_messages", read(json!({ "from": "latest", "limit": 2 }))).await;
    assert!(!error, "{latest}");
    assert_eq!(texts(&latest), ["b1", "b2"]);
    assert_eq!(latest["has_more"], false);
    app.publish_text(&channel, "c0").await;
    let (_, next) = client.call("read_channel_messages", read(json!({ "after": latest["next_cursor"] }))).await;
    assert_eq!(texts(&next), ["c0"]);
    let (_, all) = client.call("read_channel_messages", read(json!({ "from": "latest", "limit": 50 }))).await;
    assert_eq!(texts(&all), ["a0", "a1", "a2", "b0", "b1", "b2", "c0"], "fewer than limit: all of them");
    let (_, oldest) = client.call("read_channel_messages", read(json!({ "from": "oldest", "limit": 1 }))).await;
    assert_eq!(texts(&oldest), ["a0"]);

    // From a time on: RFC 3339 or Unix seconds.
    let (error, since) = client.call("read_channel_messages", read(json!({ "since": between }))).await;
    assert!(!error, "{since}");
    assert_eq!(texts(&since), ["b0", "b1", "b2", "c0"]);
    let (_, epoch) = client.call("read_channel_messages", read(json!({ "since": "0", "limit": 2 }))).await;
    assert_eq!(texts(&epoch), ["a0", "a1"]);
    let (_, future) = client.call("read_channel_messages", read(json!({ "since": "4102444800" }))).await;
    assert_eq!(texts(&future), Vec::<&str>::new());

    for (args, code) in [
        (json!({ "from": "newest" }), "invalid_json"),
        (json!({ "from": "latest", "after": latest["next_cursor"] }), "invalid_cursor"),
        (json!({ "since": between, "after": latest["next_cursor"] }), "invalid_cursor"),
        (json!({ "since": "yesterday" }), "invalid_cursor"),
        (json!({ "since": "-5" }), "invalid_cursor"),
    ] {
        let result = client.call("read_channel_messages", read(args.clone())).await;
        assert_eq!(error_code(&result), code, "{args}");
    }
}

/// Reads the next SSE event (name, data) from a streaming response, skipping comments.
async fn next_sse_event(response: &mut reqwest::Response, buffer: &mut String) -> (String, String) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.trim_start().to_owned());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            return (name, data.join("\n"));
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .expect("an SSE event within 10 s")
            .unwrap()
            .expect("the stream is open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// The legacy HTTP+SSE transport: GET /sse announces the endpoint, POSTs
/// there are answered on the stream; capped per client; DNS-rebinding
/// protection as on /mcp; closing the stream ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_transport_serves_tools() {
    let app = mcp_app(Backend::Sqlite, &["--mcp-max-sessions-per-ip", "1"]).await;
    let base = app.url(Role::Mcp, "");
    let open = || app.client.get(format!("{base}/sse")).header("accept", "text/event-stream").send();
    let mut events = open().await.unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut buffer = String::new();
    let (name, endpoint) = next_sse_event(&mut events, &mut buffer).await;
    assert_eq!(name, "endpoint");
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let post = |body: Value| {
        app.client.post(format!("{base}{endpoint}")).header("content-type", "application/json").json(&body).send()
    };

    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params() });
    assert_eq!(post(init).await.unwrap().status(), 202);
    let (name, answer) = next_sse_event(&mut events, &mut buffer).await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((name.as_str(), &answer["id"]), ("message", &json!(1)));
    assert_eq!(answer["result"]["serverInfo"]["name"], "chantra", "{answer}");
    assert_eq!(post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await.unwrap().status(), 202);
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "create_channel", "arguments": { "visibility": "private" } } });
    assert_eq!(post(call).await.unwrap().status(), 202);
    let (_, answer) = next_sse_event(&mut events, &mut buffer).await;
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["result"]["structuredContent"]["visibility"], "private", "{answer}");

    // One session per client here: a second stream is refused like a second initialize.
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_sessions");
    // Foreign Host or Origin: refused, as on /mcp.
    let foreign = app.client.get(format!("{base}/sse")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    let foreign = app.client.get(format!("{base}/sse")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    // A malformed message gets a JSON-RPC error; an unknown session a JSON error.
    let malformed = app
        .client
        .post(format!("{base}{endpoint}"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["error"]["code"], -32700);
    let unknown = app
        .client
        .post(format!("{base}/messages?sessionId=nope"))
        .header("content-type", "application/json")
        .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], "session_not_found");

    // Closing the stream ends the session and frees its slot.
    drop(events);
    let mut reopened = None;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let response = open().await.unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
    }
    assert!(reopened.is_some(), "the slot came back");
    let gone = post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await.unwrap();
    assert_eq!(gone.json::<Value>().await.unwrap()["error"]["code"], "session_not_found");

    // Streamable HTTP still answers on /sse (a POST).
    let mut client = McpClient::connect(app.url(Role::Mcp, "/sse")).await;
    let (error, _) = client.call("create_channel", json!({})).await;
    assert!(!error);
}

/// Messages after the cursor that expired before the wait are reported as
/// a gap, and the wait goes on from the oldest one kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_reports_a_gap() {
    let app = mcp_app(Backend::Sqlite, &[]).await;
    let mut client = McpClient::connect(app.url(Role::Mcp, "/mcp")).await;
    let channel = app.create_channel("public").await;
    let id = channel["channel_id"].clone();
    let (_, start) = client.call("wait_for_messages", json!({ "channel_id": id, "timeout_seconds": 1 })).await;
    let publish = |text: &'static str, ttl: Option<u64>| {
        let mut url = app.rest(&format!("/v1/channels/{}/publish", id.as_str().unwrap()));
        if let Some(ttl) = ttl {
            url.push_str(&format!("?ttl={ttl}"));
        }
        app.client
            .post(url)
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .body(text)
            .send()
    };
    assert_eq!(publish("short-lived", Some(1)).await.unwrap().status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let kept: Value = publish("kept", None).await.unwrap().json().await.unwrap();
    let (error, result) = client
        .call("wait_for_messages", json!({ "channel_id": id, "after": start["next_cursor"], "timeout_seconds": 5 }))
        .await;
    assert!(!error, "{result}");
    assert_eq!(texts(&result), ["kept"]);
    assert_eq!(result["gap"]["requested_after"], start["next_cursor"], "{result}");
    assert_eq!(result["gap"]["oldest_available"], kept["message_id"], "{result}");
}

/// The next SSE event carrying a JSON-RPC message (rmcp primes a stream with an empty one).
async fn next_message(response: &mut reqwest::Response, buffer: &mut String) -> String {
    loop {
        let (_, data) = next_sse_event(response, buffer).await;
        if !data.trim().is_empty() {
            return data;
        }
    }
}

/// Channels as MCP resources: the template; resources/read gives the newest
/// messages (a private channel's read token in the URI's query); a
/// subscription hears a REST publish within a second on the session's GET
/// stream, is capped per session, and stops with resources/unsubscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_resources_to_read_and_subscribe() {
    let app = mcp_app(Backend::Sqlite, &["--mcp-max-subscriptions-per-session", "1"]).await;
    let url = app.url(Role::Mcp, "/mcp");
    let mut client = McpClient::connect(url.clone()).await;
    let templates = client.request("resources/templates/list", json!({})).await;
    assert_eq!(templates["result"]["resourceTemplates"][0]["uriTemplate"], "chantra://channels/{channel_id}");

    let (_, channel) = client.call("create_channel", json!({ "visibility": "private" })).await;
    let id = channel["channel_id"].as_str().unwrap();
    let read_token = channel["read_token"].as_str().unwrap();
    assert_eq!(app.publish_text(&channel, "first").await.status(), 201);
    let uri = format!("chantra://channels/{id}?read_token={read_token}");
    let read = client.request("resources/read", json!({ "uri": uri })).await;
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["uri"], uri.as_str(), "{read}");
    assert_eq!(contents["mimeType"], "application/json");
    let body: Value = serde_json::from_str(contents["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["messages"][0]["payload_text"], "first");
    assert_eq!(body["newest_message_id"], body["messages"][0]["id"]);

    let denied = client.request("resources/read", json!({ "uri": format!("chantra://channels/{id}") })).await;
    assert_eq!(denied["error"]["data"]["code"], "missing_token", "{denied}");
    assert!(denied["error"]["message"].as_str().unwrap().contains("?read_token="), "{denied}");
    let unknown = client.request("resources/read", json!({ "uri": "chantra://channels/nope" })).await;
    assert_eq!(unknown["error"]["code"], -32002, "{unknown}");
    let refused = client
        .request("resources/subscribe", json!({ "uri": format!("chantra://channels/{id}?read_token=chr_wrong") }))
        .await;
    assert!(refused["error"].is_object(), "a bad token is refused at subscribe: {refused}");

    // Server-to-client notifications travel on the session's GET stream.
    let mut events = app
        .client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut buffer = String::new();
    let subscribed = client.request("resources/subscribe", json!({ "uri": uri })).await;
    assert!(subscribed["result"].is_object(), "{subscribed}");
    let (_, public) = client.call("create_channel", json!({})).await;
    let second_uri = format!("chantra://channels/{}", public["channel_id"].as_str().unwrap());
    let capped = client.request("resources/subscribe", json!({ "uri": second_uri })).await;
    assert_eq!(capped["error"]["data"]["code"], "too_many_subscriptions", "{capped}");

    let started = std::time::Instant::now();
    assert_eq!(app.publish_text(&channel, "second").await.status(), 201);
    let data = next_message(&mut events, &mut buffer).await;
    let elapsed = started.elapsed();
    let note: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(note["method"], "notifications/resources/updated", "{note}");
    assert_eq!(note["params"]["uri"], uri.as_str());
    assert!(elapsed < std::time::Duration::from_secs(1), "notified after {elapsed:?}");
    let read = client.request("resources/read", json!({ "uri": uri })).await;
    let body: Value = serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["messages"][1]["payload_text"], "second");

    let unsubscribed = client.request("resources/unsubscribe", json!({ "uri": uri })).await;
    assert!(unsubscribed["result"].is_object(), "{unsubscribed}");
    assert_eq!(app.publish_text(&channel, "third").await.status(), 201);
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(1500), next_message(&mut events, &mut buffer));
    assert!(quiet.await.is_err(), "no notification after unsubscribe");
    // The slot is free again.
    let again = client.request("resources/subscribe", json!({ "uri": second_uri })).await;
    assert!(again["result"].is_object(), "{again}");

    // Deleting the channel sends a last notification and ends the subscription,
    // which then no longer holds the session's one slot.
    let (error, _) = client
        .call("delete_channel", json!({ "channel_id": public["channel_id"], "publish_token": public["publish_token"] }))
        .await;
    assert!(!error);
    let note: Value = serde_json::from_str(&next_message(&mut events, &mut buffer).await).unwrap();
    assert_eq!(note["params"]["uri"], second_uri.as_str(), "{note}");
    let mut resubscribed = Value::Null;
    for _ in 0..50 {
        resubscribed = client.request("resources/subscribe", json!({ "uri": uri })).await;
        if resubscribed["result"].is_object() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(resubscribed["result"].is_object(), "an ended subscription frees its slot: {resubscribed}");
}

/// A subscription on an mcp-only process hears publishes made on another
/// process (PostgreSQL LISTEN/NOTIFY), each within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_hears_publishes_from_another_process() {
    use std::time::{Duration, Instant};
    let database = TestDatabase::create().await;
    let shared = |roles: Vec<Role>| Options {
        roles: Some(roles),
        extra_args: vec!["--database-url".into(), database.url.clone()],
        ..Default::default()
    };
    let publisher = spawn_app_with(Backend::Postgres, shared(vec![Role::Rest, Role::Channels])).await;
    let mcp = spawn_app_with(Backend::Postgres, shared(vec![Role::Mcp])).await;
    let url = mcp.url(Role::Mcp, "/mcp");
    let mut client = McpClient::connect(url.clone()).await;
    let channel = publisher.create_channel("private").await;
    let uri = format!(
        "chantra://channels/{}?read_token={}",
        channel["channel_id"].as_str().unwrap(),
        channel["read_token"].as_str().unwrap()
    );
    let mut events = mcp
        .client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", client.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let subscribed = client.request("resources/subscribe", json!({ "uri": uri })).await;
    assert!(subscribed["result"].is_object(), "{subscribed}");
    for i in 0..3 {
        let published = publish_later(&publisher, &channel, &format!("m{i}"), Duration::from_millis(200));
        let note: Value = serde_json::from_str(&next_message(&mut events, &mut buffer).await).unwrap();
        let notified = Instant::now();
        assert_eq!(note["method"], "notifications/resources/updated", "{note}");
        assert_eq!(note["params"]["uri"], uri.as_str());
        assert!(notified.saturating_duration_since(published.await.unwrap()) < Duration::from_secs(1));
        let read = client.request("resources/read", json!({ "uri": uri })).await;
        let body: Value = serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["messages"].as_array().unwrap().last().unwrap()["payload_text"], format!("m{i}"));
    }
}

/// subscriptions/listen (2026-07-28): rmcp acknowledges the request before
/// the server opens its streams, so a message published as soon as the
/// client reads the acknowledgment must still be notified. The streams'
/// opening is held back on purpose: the test locks `read_grants` (a private
/// channel's reader check reads it, a publish does not) until the message
/// is published and committed. Opened "from now", the stream took that
/// message for one from before the subscription and stayed silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_hears_a_message_published_right_after_its_acknowledgment() {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};

    let app = mcp_app(Backend::Postgres, &[]).await;
    let channel = app.create_channel("private").await;
    let uri = format!(
        "chantra://channels/{}?read_token={}",
        channel["channel_id"].as_str().unwrap(),
        channel["read_token"].as_str().unwrap()
    );
    let lock = app.service.db().begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE read_grants IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let listen = json!({ "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
        "notifications": { "resourceSubscriptions": [uri] },
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "chantra-tests", "version": "1" },
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    } });
    let mut events = app
        .client
        .post(app.url(Role::Mcp, "/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&listen)
        .send()
        .await
        .unwrap();
    if events.status() != 200 {
        panic!("listen: HTTP {}: {}", events.status(), events.text().await.unwrap());
    }
    let mut buffer = String::new();
    let ack: Value = serde_json::from_str(&next_message(&mut events, &mut buffer).await).unwrap();
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");

    assert_eq!(app.publish_text(&channel, "right after the acknowledgment").await.status(), 201);
    lock.commit().await.unwrap();
    let note = tokio::time::timeout(std::time::Duration::from_secs(5), next_message(&mut events, &mut buffer))
        .await
        .expect("a notification for the message published after the acknowledgment");
    let note: Value = serde_json::from_str(&note).unwrap();
    assert_eq!(note["method"], "notifications/resources/updated", "{note}");
    assert_eq!(note["params"]["uri"], uri.as_str(), "{note}");
}

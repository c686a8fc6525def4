//! What rmcp answers in plain text at the edges of Streamable HTTP, answered
//! the way MCP clients expect instead:
//!
//! - a POST whose JSON body does not parse gets a JSON-RPC error -32700
//!   (parse error), and one that parses but is not a JSON-RPC message gets
//!   -32600 (invalid request), both with HTTP 400 — rmcp answers 415 with a
//!   serde message, which clients report as a transport failure;
//! - a session DELETE is answered 204 (rmcp says 202, which the official
//!   Python SDK logs as "Session termination failed").
//!
//! The body is read here with the same cap rmcp applies (413 in the
//! project's JSON error shape above it), then handed on unchanged.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};

/// The largest request body read (MCP's own cap, `max_request_bytes`).
#[derive(Clone, Copy)]
pub struct BodyCap(pub usize);

pub async fn jsonrpc_edges(State(BodyCap(cap)): State<BodyCap>, request: Request, next: Next) -> Response {
    if request.method() == Method::DELETE {
        let mut response = next.run(request).await;
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.body_mut() = Body::empty();
            response.headers_mut().remove(header::CONTENT_LENGTH);
        }
        return response;
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::http::extract::is_json);
    if request.method() != Method::POST || !is_json {
        // rmcp answers the other methods and media types itself.
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // 413 beyond the cap (the rest drained, bounded), 400 for a broken body.
    let bytes = match crate::http::extract::read_limited(&parts.headers, body, cap, cap).await {
        Ok(bytes) => bytes,
        Err(err) => return crate::http::error::respond(err),
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(err) => return jsonrpc_error(Value::Null, -32700, format!("Parse error: the body is not JSON ({err})")),
    };
    // Checked from the parsed value, not a copy of it (a publish carries up to a MiB).
    if let Err(err) = <ClientJsonRpcMessage as serde::Deserialize>::deserialize(&value) {
        let id = value.get("id").filter(|id| id.is_string() || id.is_number()).cloned().unwrap_or(Value::Null);
        return jsonrpc_error(
            id,
            -32600,
            format!("Invalid Request: not a JSON-RPC 2.0 request or notification ({err})"),
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn jsonrpc_error(id: Value, code: i32, message: String) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
    let mut response = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

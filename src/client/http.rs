//! The HTTP side of the client: one reqwest client (rustls, the version the
//! mcp role and rust-s3 already build), and how an answer that is not a
//! success becomes a [`ClientError`] with the server's own code and message.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::{ClientError, Failure};

/// The longest a management or publish call may take before it counts as a network failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a connection may take to open (also for `sub`, which has no overall timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one-shot calls (everything but `sub`).
pub fn client() -> Result<reqwest::Client, ClientError> {
    build(reqwest::Client::builder().timeout(REQUEST_TIMEOUT))
}

/// A client for event streams: bounded connect, no overall timeout (a stream lasts).
pub fn stream_client() -> Result<reqwest::Client, ClientError> {
    build(reqwest::Client::builder())
}

fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, ClientError> {
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("chantra-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| ClientError::other(format!("cannot start the HTTP client: {err}")))
}

/// Sends a one-shot request: a network failure is exit 5, an error status
/// its own code; the successful answer's JSON body is returned (Null for 204).
pub async fn call(request: RequestBuilder, what: &str) -> Result<Value, ClientError> {
    let response = request.send().await.map_err(|err| network_error(what, &err))?;
    if !response.status().is_success() {
        return Err(error_from(response, what).await);
    }
    if response.status() == StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let text = response.text().await.map_err(|err| network_error(what, &err))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|err| ClientError::other(format!("{what}: the server's answer is not JSON: {err}")))
}

/// A request that did not get an answer: the server is down, unreachable or too slow.
pub fn network_error(what: &str, err: &reqwest::Error) -> ClientError {
    let why = if err.is_timeout() {
        "no answer in time".to_owned()
    } else if err.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    // reqwest's Display says only "error sending request": the cause says why.
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    let url = err.url().map(|u| format!(" to {}", redact(u))).unwrap_or_default();
    let cause = if cause.is_empty() { String::new() } else { format!(" ({cause})") };
    ClientError::new(Failure::Unavailable, format!("{what}: {why}{url}{cause}"))
}

/// A URL without its query (which may carry `?token=chr_…`).
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

/// The failure an error status stands for.
pub fn failure_of(status: StatusCode) -> Failure {
    match status.as_u16() {
        401 | 403 => Failure::Auth,
        404 | 410 => Failure::NotFound,
        400 | 409 | 413 | 415 | 422 => Failure::Usage,
        429 | 500..=599 => Failure::Unavailable,
        _ => Failure::Other,
    }
}

/// The error an answer with an error status stands for, in one line:
/// `what: 404 channel_not_found: <the server's message>`.
pub async fn error_from(response: Response, what: &str) -> ClientError {
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            let error = v.get("error")?;
            let code = error.get("code")?.as_str()?.to_owned();
            let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
            Some(format!("{code}: {message}"))
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let retry = retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default();
    ClientError::new(failure_of(status), format!("{what}: {} {detail}{retry}", status.as_u16()))
}

/// The `Retry-After` of an answer, in seconds or as an HTTP date.
pub fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        let code = |n: u16| failure_of(StatusCode::from_u16(n).unwrap()).exit_code();
        assert_eq!(
            [code(400), code(401), code(403), code(404), code(429), code(503), code(418)],
            [2, 3, 3, 4, 5, 5, 1]
        );
    }

    #[test]
    fn redaction_drops_the_query() {
        let url = reqwest::Url::parse("http://h/v1/private/x?token=chr_secret").unwrap();
        assert_eq!(redact(&url), "http://h/v1/private/x");
    }
}

//! A small Server-Sent Events client for the tests, written from the
//! WHATWG parsing rules rather than shared with the server's encoder, so
//! a framing mistake on either side shows up. It also tells how a stream
//! ended: cleanly (the server closed the response) or with a transport
//! error (a killed process).

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }

    /// The payload of a `message` event, decoded as its `encoding` says ([`payload_bytes`]).
    pub fn payload(&self) -> Vec<u8> {
        payload_bytes(&self.json())
    }

    /// The payload of a `message` event as text (panics when it is not UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8(self.payload()).unwrap_or_else(|e| panic!("payload is not UTF-8 ({e}): {}", self.data))
    }
}

/// The payload bytes of a message object (SSE data, poll item, NDJSON
/// line) as its `encoding` says: `text` is the string, `base64` (or no
/// `encoding`, an older server) is decoded, `json` is the document written
/// compactly (the published bytes minus the whitespace outside strings;
/// compare it as JSON).
pub fn payload_bytes(message: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let payload = &message["payload"];
    match message["encoding"].as_str() {
        Some("json") => serde_json::to_vec(payload).expect("a JSON value serialises"),
        Some("text") => payload.as_str().unwrap_or_else(|| panic!("text payload is not a string: {message}")).into(),
        Some("base64") | None => base64::engine::general_purpose::STANDARD
            .decode(payload.as_str().unwrap_or_else(|| panic!("base64 payload is not a string: {message}")))
            .unwrap_or_else(|e| panic!("payload is not base64 ({e}): {message}")),
        Some(other) => panic!("unknown encoding {other}: {message}"),
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The response body was complete (the server ended it).
    Clean,
    /// The connection failed mid-body.
    Error(String),
}

pub struct SseStream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buffer: String,
    current: Event,
    has_data: bool,
    /// Comment lines seen so far (keep-alives).
    pub comments: usize,
    /// The last `id:` field seen, as EventSource tracks it.
    pub last_event_id: Option<String>,
    /// The reconnection delay the server suggested.
    pub retry: Option<u64>,
    /// Set once the body is over.
    pub end: Option<End>,
}

pub async fn connect(request: reqwest::RequestBuilder) -> SseStream {
    try_connect(request).await.expect("connect")
}

/// Sends the request with `Accept: text/event-stream`; a connection failure is an `Err`.
pub async fn try_connect(request: reqwest::RequestBuilder) -> reqwest::Result<SseStream> {
    let response = request.header("accept", "text/event-stream").send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok(SseStream {
        status,
        headers,
        body: Some(response.bytes_stream().boxed()),
        buffer: String::new(),
        current: Event::default(),
        has_data: false,
        comments: 0,
        last_event_id: None,
        retry: None,
        end: None,
    })
}

impl SseStream {
    /// The whole body of a non-stream (error) response, as JSON (`Null` if it is not JSON).
    pub async fn error_json(mut self) -> Value {
        let mut bytes = Vec::new();
        if let Some(mut body) = self.body.take() {
            while let Some(Ok(chunk)) = body.next().await {
                bytes.extend_from_slice(&chunk);
            }
        }
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// The next dispatched event; `None` when the stream ends or `wait` passes.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.parse_buffered() {
                return Some(event);
            }
            let body = self.body.as_mut()?;
            let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.body = None;
                    self.end = Some(End::Clean);
                    return None;
                }
                Ok(Some(Err(err))) => {
                    self.body = None;
                    self.end = Some(End::Error(format!("{err:?}")));
                    return None;
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("SSE is UTF-8"));
        }
    }

    /// Events until `count` messages arrived (or `wait` passes between two).
    pub async fn messages(&mut self, count: usize, wait: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        while out.len() < count {
            match self.next(wait).await {
                Some(event) if event.event == "message" => out.push(event),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Whether the body is over.
    pub fn ended(&self) -> bool {
        self.body.is_none()
    }

    /// Whether the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.next(left).await.is_none() {
                return self.body.is_none();
            }
        }
    }

    fn parse_buffered(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer.find(['\n', '\r'])?;
            let mut line: String = self.buffer[..end].to_owned();
            let mut consumed = end + 1;
            if self.buffer.as_bytes()[end] == b'\r' && self.buffer.as_bytes().get(end + 1) == Some(&b'\n') {
                consumed += 1;
            }
            self.buffer.drain(..consumed);
            if line.is_empty() {
                // As in the spec: an event without data dispatches nothing.
                if self.has_data {
                    let mut event = std::mem::take(&mut self.current);
                    self.has_data = false;
                    if event.event.is_empty() {
                        event.event = "message".into();
                    }
                    if event.data.ends_with('\n') {
                        event.data.pop();
                    }
                    if event.id.is_none() {
                        event.id = self.last_event_id.clone().filter(|_| event.event == "message");
                    }
                    return Some(event);
                }
                self.current = Event::default();
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.find(':') {
                Some(i) => {
                    let value = line.split_off(i + 1);
                    line.pop();
                    (line, value.strip_prefix(' ').map(str::to_owned).unwrap_or(value))
                }
                None => (line, String::new()),
            };
            match field.as_str() {
                "event" => self.current.event = value,
                "data" => {
                    self.current.data.push_str(&value);
                    self.current.data.push('\n');
                    self.has_data = true;
                }
                "id" => {
                    self.current.id = Some(value.clone());
                    self.last_event_id = Some(value);
                }
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
    }
}

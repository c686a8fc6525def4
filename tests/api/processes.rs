//! API calls for the tests that run the built binary as several processes
//! (sse_multiprocess, fanout_nats): channels, retrying publishes, streams.

use std::time::{Duration, Instant};

use chantra_testkit::{BASE_URL, Server};
use serde_json::{Value, json};

use crate::sse_client::{self, Event, SseStream};

pub async fn create_channel(client: &reqwest::Client, rest: &Server, visibility: &str) -> Value {
    let response =
        client.post(rest.rest_url("/v1/channels")).json(&json!({ "visibility": visibility })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Publishes `text` with an Idempotency-Key made of it, retrying a 503 or a
/// failed connection (within `wait`, and saying so on stderr: a process may
/// be restarting, the database briefly unavailable); returns the
/// acknowledged id.
pub async fn publish(client: &reqwest::Client, rest: &Server, channel: &Value, text: &str, wait: Duration) -> String {
    let id = channel["channel_id"].as_str().unwrap();
    let deadline = Instant::now() + wait;
    loop {
        let sent = client
            .post(rest.rest_url(&format!("/v1/channels/{id}/publish")))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .header("idempotency-key", text.replace(' ', "-"))
            .body(text.to_owned())
            .send()
            .await;
        let problem = match sent {
            Ok(response) if response.status() == 201 => {
                let body: Value = response.json().await.unwrap();
                return body["message_id"].as_str().unwrap().to_owned();
            }
            Ok(response) if response.status() == 503 => format!("503 {}", response.text().await.unwrap_or_default()),
            Ok(response) => {
                panic!("publish {text}: {} {}", response.status(), response.text().await.unwrap_or_default())
            }
            Err(err) => format!("{err}"),
        };
        eprintln!("publish {text} failed, retrying: {problem}");
        assert!(Instant::now() < deadline, "publish {text} kept failing for {wait:?}: {problem}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn stream_path(channel: &Value) -> String {
    channel["url"].as_str().unwrap().strip_prefix(BASE_URL).expect("the configured base URL").to_owned()
}

/// Opens a stream (with a client of its own: no whole-request timeout, as
/// every read is bounded by its own wait).
pub async fn open(channels: &Server, channel: &Value, headers: &[(&str, &str)]) -> SseStream {
    let mut request = reqwest::Client::new().get(channels.channels_url(&stream_path(channel)));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let stream = sse_client::connect(request).await;
    assert_eq!(stream.status, 200, "opening a stream on {}", channels.name());
    stream
}

pub fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone().unwrap_or_default()).collect()
}

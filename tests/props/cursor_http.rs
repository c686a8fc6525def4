//! Where a reader starts, sent as hostile input to the real channels role
//! (in-process, SQLite): arbitrary `Last-Event-ID` headers and
//! `?last_event_id=` / `?since=` values. The parser lives in the SSE handler,
//! so the property is checked over HTTP: 200 exactly for an empty cursor, a
//! hyphenated UUID or a Unix time in seconds that fits a UUIDv7, else 400
//! `invalid_cursor` with the JSON error shape — never a 5xx, never a hang.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use chantra::app::Application;
use chantra::cli::{Cli, Command, Role};
use chantra::config::Config;
use clap::Parser as _;
use proptest::prelude::*;
use serde_json::Value;

use crate::cases;

struct Server {
    runtime: tokio::runtime::Runtime,
    channels: SocketAddr,
    channel_id: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// One app for every case: starting one per case would dominate the run.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}/chantra.db?mode=rwc", dir.path().display());
        let data = dir.path().display().to_string();
        let args = [
            "chantra",
            "serve",
            "--role",
            "rest",
            "--role",
            "channels",
            "--rest-addr",
            "127.0.0.1:0",
            "--channels-addr",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--database-url",
            &db,
            "--token-secret-salt",
            "props-secret-0123456789abcdef",
            "--rate-limit-per-second",
            "0",
            "--no-sweeper",
            "true",
        ];
        let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else { unreachable!() };
        let config = Config::from_args(&serve).unwrap();
        let (channels, rest) = runtime.block_on(async {
            let app = Application::build(config).await.unwrap();
            let addrs = (app.local_addr(Role::Channels).unwrap(), app.local_addr(Role::Rest).unwrap());
            tokio::spawn(app.run(std::future::pending()));
            addrs
        });
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let channel: Value = runtime.block_on(async {
            let created = client.post(format!("http://{rest}/v1/channels")).send().await.unwrap();
            created.json().await.unwrap()
        });
        let channel_id = channel["channel_id"].as_str().unwrap().to_owned();
        Server { runtime, channels, channel_id, client, _dir: dir }
    })
}

/// Status and, for an error, its code; the stream (if any) is dropped at once.
fn open(header: Option<&str>, query: &[(&str, &str)]) -> (u16, Option<String>) {
    let s = server();
    s.runtime.block_on(async {
        let mut request = s.client.get(format!("http://{}/v1/public/{}", s.channels, s.channel_id)).query(query);
        if let Some(value) = header {
            request = request.header("last-event-id", value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        if status == 200 {
            return (status, None);
        }
        let body: Value = response.json().await.expect("errors are JSON");
        (status, body["error"]["code"].as_str().map(str::to_owned))
    })
}

fn is_uuid(input: &str) -> bool {
    uuid::Uuid::try_parse(input).is_ok() && input.len() == 36
}

fn cursor_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "[ \t]{0,2}[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}[ \t]{0,2}",
        "[0-9a-f-]{30,40}",
        "[ -~]{0,40}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn last_event_id_header(value in cursor_text()) {
        // Hyper trims the header value's surrounding whitespace; the handler trims again.
        let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
        let expected_ok = trimmed.is_empty() || is_uuid(trimmed);
        let (status, code) = open(Some(&value), &[]);
        if expected_ok {
            prop_assert_eq!(status, 200, "{:?}: {:?}", value, code);
        } else {
            prop_assert_eq!((status, code.as_deref()), (400, Some("invalid_cursor")), "{:?}", value);
        }
    }

    #[test]
    fn last_event_id_query(value in prop_oneof![cursor_text(), any::<String>()]) {
        let trimmed = value.trim();
        let expected_ok = trimmed.is_empty() || is_uuid(trimmed);
        let (status, code) = open(None, &[("last_event_id", &value)]);
        if expected_ok {
            prop_assert_eq!(status, 200, "{:?}: {:?}", value, code);
        } else {
            prop_assert_eq!((status, code.as_deref()), (400, Some("invalid_cursor")), "{:?}", value);
        }
    }

    #[test]
    fn since_query(value in prop_oneof![
        "[ ]?[0-9]{1,20}[ ]?",
        "-[0-9]{1,5}",
        any::<String>(),
        (0u64..(1 << 48) / 1000 + 10).prop_map(|n| n.to_string()),
    ]) {
        let expected_ok = value.trim().parse::<u64>().ok().and_then(|s| s.checked_mul(1000)).is_some_and(|m| m < 1 << 48);
        let (status, code) = open(None, &[("since", &value)]);
        if expected_ok {
            prop_assert_eq!(status, 200, "{:?}: {:?}", value, code);
        } else {
            prop_assert_eq!((status, code.as_deref()), (400, Some("invalid_cursor")), "{:?}", value);
        }
    }
}

#[test]
fn non_utf8_last_event_id_is_refused() {
    let s = server();
    let (status, code) = s.runtime.block_on(async {
        let value = reqwest::header::HeaderValue::from_bytes(b"0193a0e8-\xff").unwrap();
        let url = format!("http://{}/v1/public/{}", s.channels, s.channel_id);
        let response = s.client.get(url).header("last-event-id", value).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["error"]["code"].as_str().map(str::to_owned))
    });
    assert_eq!((status, code.as_deref()), (400, Some("invalid_cursor")));
}

//! Starts the real application for a test, on one of the two backend pairs:
//!
//! - `Backend::Sqlite`: embedded SQLite file + filesystem payloads in a temp dir;
//! - `Backend::Postgres`: a fresh PostgreSQL database (created here, dropped
//!   when the test ends) + the S3 server named by `CHANTRA_TEST_S3_ENDPOINT`
//!   (garage, started by scripts/test.sh).
//!
//! The app is built by `Application::build_with_clock`, exactly as `main`
//! builds it, from command-line arguments parsed by the real `Cli`. A backend
//! that cannot be reached fails the test with instructions; nothing is skipped.

use std::net::SocketAddr;

use chantra::app::Application;
use chantra::cli::{Cli, Command, Role};
use chantra::config::Config;
use chantra_core::clock::Clock;
use chantra_core::service::Service;
use serde_json::Value;

// What the in-process app shares with the launched binary and tests/faults.
pub use chantra_testkit::{Backend, FaultProxy, TEST_SECRET, TestDatabase, admin_database_url, s3_env};

/// Defines `mod name { sqlite(), postgres() }` running `async fn name(Backend)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub client: reqwest::Client,
    pub service: Service,
    /// The app's supervised background tasks.
    pub tasks: chantra_core::supervisor::Tasks,
    pub clock: Clock,
    pub addrs: Vec<(Role, SocketAddr)>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _database: Option<TestDatabase>,
}

impl TestApp {
    pub fn url(&self, role: Role, path: &str) -> String {
        let addr = self.addrs.iter().find(|(r, _)| *r == role).map(|(_, a)| *a).expect("role not running");
        format!("http://{addr}{path}")
    }

    /// A URL on the rest role.
    pub fn rest(&self, path: &str) -> String {
        self.url(Role::Rest, path)
    }

    /// A channel's read URL as the API returned it (on the test base URL),
    /// pointed at the channels role here.
    pub fn channel_url(&self, channel: &Value) -> String {
        let url = channel["url"].as_str().expect("a channel URL");
        self.url(Role::Channels, url.strip_prefix(chantra_testkit::BASE_URL).expect("the test base URL"))
    }

    /// Creates a channel and returns its creation body.
    pub async fn create_channel(&self, visibility: &str) -> Value {
        let response = self
            .client
            .post(self.rest("/v1/channels"))
            .json(&serde_json::json!({ "visibility": visibility }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Publishes a raw text payload and returns the response.
    pub async fn publish_text(&self, channel: &Value, text: &str) -> reqwest::Response {
        self.client
            .post(self.rest(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .header("content-type", "text/plain")
            .body(text.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Where the payload of the message with this id is stored.
    pub async fn object_key(&self, message_id: &str) -> String {
        use sea_orm::EntityTrait as _;
        let id: chantra_core::domain::MessageId = message_id.parse().unwrap();
        let row = chantra_core::db::entity::message::Entity::find_by_id(id).one(self.service.db()).await.unwrap();
        row.expect("the message row exists").payload_object_key
    }

    /// The stored payload of a published message, read back from where it
    /// lives: its row in `message_payloads` when it is kept in the database
    /// (`payload_inline`), else the real store.
    pub async fn stored_payload(&self, message: &Value) -> Vec<u8> {
        use sea_orm::EntityTrait as _;
        let id: chantra_core::domain::MessageId = message["message_id"].as_str().unwrap().parse().unwrap();
        let row = chantra_core::db::entity::message::Entity::find_by_id(id).one(self.service.db()).await.unwrap();
        let row = row.expect("the message row exists");
        assert!(row.payload_object_key.starts_with(&format!("channels/{}/", message["channel_id"].as_str().unwrap())));
        if row.payload_inline {
            return chantra_core::db::messages::inline_payload(self.service.db(), id)
                .await
                .unwrap()
                .expect("its payload row");
        }
        self.service.store().get(&row.payload_object_key).await.unwrap().to_vec()
    }

    /// Deletes `channel` with its publish token.
    pub async fn delete_channel(&self, channel: &Value) -> reqwest::Response {
        self.client
            .delete(self.rest(&format!("/v1/channels/{}", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }

    pub async fn get_channel(&self, channel: &Value) -> reqwest::Response {
        self.client
            .get(self.rest(&format!("/v1/channels/{}", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }
}

impl TestApp {
    /// Starts a graceful shutdown, as SIGTERM would.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Options that vary between tests.
#[derive(Default)]
pub struct Options {
    pub extra_args: Vec<String>,
    /// Overrides the S3 endpoint (e.g. a fault-injecting proxy) on the Postgres pair.
    pub s3_endpoint: Option<String>,
    pub roles: Option<Vec<Role>>,
}

/// `--s3-bucket` naming a bucket of its own (the PostgreSQL + S3 pair; the app
/// creates it), for tests that sweep with a clock moved past the orphan
/// grace: such a sweep deletes every object in its bucket that its own
/// database does not know, and in the shared bucket those are other tests'
/// payloads, written at the same time.
pub fn own_bucket_args(backend: Backend) -> Vec<String> {
    match backend {
        Backend::Sqlite => Vec::new(),
        Backend::Postgres => {
            vec!["--s3-bucket".into(), format!("chantra-own-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])]
        }
    }
}

/// The rest and channels roles, with extra `serve` arguments.
pub async fn spawn_rest_channels(backend: Backend, extra: &[&str]) -> TestApp {
    let options = Options {
        roles: Some(vec![Role::Rest, Role::Channels]),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    spawn_app_with(backend, options).await
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let roles = options.roles.unwrap_or_else(|| vec![Role::Rest]);
    let mut args: Vec<String> = vec!["chantra".into(), "serve".into()];
    for role in &roles {
        args.push("--role".into());
        args.push(role.name().into());
    }
    for flag in ["--rest-addr", "--channels-addr", "--mcp-addr", "--landing-addr"] {
        args.extend([flag.into(), "127.0.0.1:0".into()]);
    }
    args.extend(["--data-dir".into(), data_dir.path().display().to_string()]);
    args.extend(["--token-secret-salt".into(), TEST_SECRET.into()]);
    args.extend(["--rate-limit-per-second".into(), "0".into()]);
    // Tests run sweeps themselves (service.sweep_once) with a moved clock.
    args.extend(["--no-sweeper".into(), "true".into()]);
    args.extend(["--channel-base-url".into(), chantra_testkit::BASE_URL.into()]);

    let database = match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}/chantra.db?mode=rwc", data_dir.path().display());
            args.extend(["--database-url".into(), url]);
            None
        }
        Backend::Postgres => {
            let database = TestDatabase::create().await;
            args.extend(["--database-url".into(), database.url.clone()]);
            let s3 = s3_env();
            args.extend(["--s3-endpoint".into(), options.s3_endpoint.clone().unwrap_or(s3.endpoint)]);
            args.extend(["--s3-access-key".into(), s3.access_key]);
            args.extend(["--s3-secret-key".into(), s3.secret_key]);
            args.extend(["--s3-bucket".into(), s3.bucket]);
            args.extend(["--s3-timeout-secs".into(), "3".into()]);
            Some(database)
        }
    };
    args.extend(options.extra_args);

    let Command::Serve(serve) = Cli::try_parse_from(&args).expect("test arguments parse").command else {
        unreachable!("serve was requested")
    };
    let config = Config::from_args(&serve).expect("test configuration is valid");
    let clock = Clock::system();
    let app = Application::build_with_clock(config, clock.clone()).await.expect("application starts");
    let addrs = roles.iter().map(|r| (*r, app.local_addr(*r).expect("bound"))).collect();
    let service = app.service().clone();
    let tasks = app.tasks().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));

    TestApp {
        client: reqwest::Client::new(),
        service,
        tasks,
        clock,
        addrs,
        data_dir,
        shutdown: Some(tx),
        _database: database,
    }
}

use clap::Parser as _;

/// Replaces ids, times, tokens and URLs with placeholders after checking
/// their shape, so one snapshot holds on both backends and every run.
pub fn redact(value: &Value) -> Value {
    redact_field("", value)
}

fn redact_field(key: &str, value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), redact_field(k, v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact_field(key, v)).collect()),
        Value::String(s) if key.ends_with("_id") => {
            uuid::Uuid::parse_str(s).unwrap_or_else(|_| panic!("{key} is not a UUID: {s}"));
            Value::String("[uuid]".into())
        }
        Value::String(s) if key.ends_with("_at") => {
            chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|_| panic!("{key} is not RFC 3339: {s}"));
            Value::String("[time]".into())
        }
        Value::String(s) if key == "publish_token" || key == "read_token" => {
            let prefix = if key == "publish_token" { "chp_" } else { "chr_" };
            assert!(s.starts_with(prefix) && s.len() == 47, "{key} has the wrong shape: {s}");
            Value::String(format!("[{prefix}token]"))
        }
        Value::String(s) if key == "url" => {
            let (base, id) = s.rsplit_once('/').expect("url has a path");
            uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("url does not end in a channel id: {s}"));
            Value::String(format!("{base}/[uuid]"))
        }
        other => other.clone(),
    }
}

/// The value of an unlabelled series in Prometheus text, if present. The
/// recorder is process-wide, and nextest runs each test in its own process.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

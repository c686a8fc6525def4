//! The built `chantra` binary as users run it: help, migrations on both
//! databases, startup errors, the zero-configuration default, and logs that
//! never contain a token.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use chantra_testkit::{Launcher, bin};
use serde_json::Value;

use crate::helpers::{Backend, TEST_SECRET, TestDatabase};
use crate::on_both_backends;

/// The binary with a clean environment: no setting leaks in from the caller.
fn chantra(dir: &std::path::Path) -> Command {
    Launcher::bare(bin!(), dir).command()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the chantra binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_names_every_flag_with_its_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let serve = String::from_utf8(run(chantra(dir.path()).args(["serve", "--help"])).stdout).unwrap();
    for env in [
        "CHANTRA_ROLES",
        "REST_ADDR",
        "CHANNELS_ADDR",
        "MCP_ADDR",
        "LANDING_ADDR",
        "DATABASE_URL",
        "DATA_DIR",
        "S3_ENDPOINT",
        "S3_BUCKET",
        "S3_ACCESS_KEY",
        "S3_SECRET_KEY",
        "S3_REGION",
        "CHANNEL_HOSTNAME",
        "CHANNEL_BASE_URL",
        "TOKEN_SECRET_SALT",
        "AUTO_MIGRATE",
        "MAX_PAYLOAD_BYTES",
        "RATE_LIMIT_PER_SECOND",
        "RATE_LIMIT_BURST",
        "TRUSTED_PROXIES",
        "INTERNAL_API_TOKEN",
        "CHANNELS_INTERNAL_URL",
    ] {
        assert!(serve.contains(&format!("[env: {env}")), "serve --help lacks {env}:\n{serve}");
    }
    // A laptop's serve listens on loopback only; containers bind 0.0.0.0 explicitly.
    assert!(serve.contains("[default: 127.0.0.1:8081]") && serve.contains("[default: 127.0.0.1:8070]"));
    assert!(serve.contains("[default: 127.0.0.1:8090]") && serve.contains("[default: 127.0.0.1:8080]"));
    let migrate = String::from_utf8(run(chantra(dir.path()).args(["migrate", "--help"])).stdout).unwrap();
    for word in ["up", "down", "status", "fresh", "DATABASE_URL", "DESTROYS DATA"] {
        assert!(migrate.contains(word), "migrate --help lacks {word}:\n{migrate}");
    }
}

/// `sweep --help` lists what sweeping uses, not the ~50 flags only `serve` reads.
#[test]
fn sweep_help_lists_only_sweep_settings() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = String::from_utf8(run(chantra(dir.path()).args(["sweep", "--help"])).stdout).unwrap();
    for flag in ["--once", "--database-url", "--s3-endpoint", "--sweep-interval-secs", "--channel-idle-days"] {
        assert!(sweep.contains(flag), "sweep --help lacks {flag}:\n{sweep}");
    }
    for flag in ["--rest-addr", "--mcp-public-url", "--role", "--rate-limit-per-second", "--no-sweeper"] {
        assert!(!sweep.contains(flag), "sweep --help lists the serve-only {flag}:\n{sweep}");
    }
}

on_both_backends!(migrate_round_trip);

async fn migrate_round_trip(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::for_backend(backend, dir.path()).await;
    let url = &database.url;
    let migrate = |action: &str| run(chantra(dir.path()).args(["migrate", action]).env("DATABASE_URL", url));

    let status = migrate("status");
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending  m20261125_000001_create_tables"));
    assert!(migrate("up").status.success());
    assert!(String::from_utf8_lossy(&migrate("status").stdout).contains("applied  m20261125_000001_create_tables"));

    let down = migrate("down");
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(stderr(&down).contains("destroyed"), "down warns: {}", stderr(&down));
    assert!(String::from_utf8_lossy(&migrate("status").stdout).contains("pending"));
    assert!(migrate("up").status.success(), "up again after down");
    let fresh = migrate("fresh");
    assert!(fresh.status.success() && stderr(&fresh).contains("destroyed"));

    // With AUTO_MIGRATE=false, serve refuses a schema that is behind.
    assert!(migrate("down").status.success());
    let mut serve = chantra(dir.path());
    serve
        .args(["serve", "--role", "rest", "--rest-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", url)
        .env("AUTO_MIGRATE", "false")
        .env("TOKEN_SECRET_SALT", TEST_SECRET);
    let refused = run(&mut serve);
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(message.contains("chantra migrate up") && message.contains("AUTO_MIGRATE=false"), "{message}");
}

#[test]
fn misconfiguration_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("DATABASE_URL", "mysql://localhost/x")], "DATABASE_URL"),
        (
            &[
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x"),
                ("TOKEN_SECRET_SALT", TEST_SECRET),
                ("DB_ACQUIRE_TIMEOUT_SECS", "2"),
            ],
            "DATABASE_URL",
        ),
        (&[("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")], "TOKEN_SECRET_SALT"),
        (&[("TOKEN_SECRET_SALT", "short")], "TOKEN_SECRET_SALT"),
        (&[("S3_ENDPOINT", "http://127.0.0.1:1")], "S3_ACCESS_KEY"),
        (&[("CHANNEL_BASE_URL", "not a url")], "CHANNEL_BASE_URL"),
    ];
    for (env, setting) in cases {
        let mut cmd = chantra(dir.path());
        cmd.args(["serve", "--role", "rest", "--rest-addr", "127.0.0.1:0"]).env("DATA_DIR", dir.path().join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = run(&mut cmd);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{setting}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: ") && last.contains(setting), "{setting}: {err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    }
    let unknown_role = run(chantra(dir.path()).args(["serve", "--role", "queue"]));
    assert_eq!(unknown_role.status.code(), Some(2));
    assert!(stderr(&unknown_role).contains("invalid value 'queue' for '--role"));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run(chantra(dir.path())
        .args(["serve", "--role", "rest", "--rest-addr", &format!("127.0.0.1:{port}")])
        .env("DATA_DIR", dir.path().join("data"))
        .env("DATABASE_URL", format!("sqlite://{}/x.db?mode=rwc", dir.path().display())));
    assert!(stderr(&output).lines().last().unwrap().contains("REST_ADDR: cannot bind"), "{}", stderr(&output));
}

#[tokio::test]
async fn zero_configuration_default_and_no_tokens_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    // Every role, ready, with nothing configured but the addresses.
    let server = Launcher::bare(bin!(), dir.path()).roles("all").env("RUST_LOG", "trace").start().await;
    let client = reqwest::Client::new();
    let rest = server.rest_url("");

    // The embedded default lives under ./data.
    for file in ["data/chantra.db", "data/token_secret_salt", "data/payloads"] {
        assert!(dir.path().join(file).exists(), "{file} was not created");
    }
    assert!(server.log().contains("TOKEN_SECRET_SALT is not set"));

    // A full scenario with every kind of token, at trace level.
    let channel: Value = client
        .post(format!("{rest}/v1/channels"))
        .json(&serde_json::json!({"visibility": "private"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = channel["channel_id"].as_str().unwrap();
    // No public URL configured: the channel URL names the channels role's bound address.
    assert_eq!(channel["url"], format!("http://{}/channel/v1/private/{id}", server.addr("channels")));
    let publish_token = channel["publish_token"].as_str().unwrap();
    // A token in the query string is refused (publish takes only ?ttl=) and must not be logged.
    let refused = client
        .post(format!("{rest}/v1/channels/{id}/publish?token={publish_token}"))
        .header("x-publish-token", publish_token)
        .body("secret-free payload")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let published = client
        .post(format!("{rest}/v1/channels/{id}/publish"))
        .header("x-publish-token", publish_token)
        .body("secret-free payload")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let grant: Value = client
        .post(format!("{rest}/v1/channels/{id}/read-grants"))
        .bearer_auth(publish_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong = client
        .get(format!("{rest}/v1/channels/{id}"))
        .header("x-publish-token", grant["read_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // A private stream opened the browser way, with the read token in the query string.
    let stream_url =
        server.channels_url(&format!("/channel/v1/private/{id}?token={}", channel["read_token"].as_str().unwrap()));
    let stream = client.get(&stream_url).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    assert_eq!(
        client
            .delete(format!("{rest}/v1/channels/{id}"))
            .header("x-publish-token", publish_token)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the log really is verbose");
    assert!(log.contains(id), "requests are logged (by path)");
    for secret in [publish_token, channel["read_token"].as_str().unwrap(), grant["read_token"].as_str().unwrap()] {
        let body = &secret[4..];
        assert!(!log.contains(body), "a token leaked into the log");
    }
    let salt = std::fs::read_to_string(dir.path().join("data/token_secret_salt")).unwrap();
    assert!(!log.contains(salt.trim()), "the token secret leaked into the log");
}

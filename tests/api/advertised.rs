//! The URLs a server gives out follow the addresses it binds (issue 16,
//! items 7 and 8): with only `*_ADDR` set, channel URLs, the landing pages,
//! the playground and `/.well-known/mcp-server` point at the ports really
//! bound (0.0.0.0 as localhost, port 0 resolved); configured public URLs
//! win; and `serve` prints the URL of each role it serves once, on stdout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chantra::app::Application;
use chantra::cli::{Cli, Command, Role};
use chantra::config::Config;
use chantra_testkit::{Launcher, Server, bin};
use clap::Parser as _;
use serde_json::Value;

use crate::helpers::TEST_SECRET;

async fn create_channel(client: &reqwest::Client, rest: &str) -> Value {
    let response = client.post(format!("{rest}/v1/channels")).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// The lines `serve` printed on stdout (the log file holds stdout and
/// stderr; log lines carry a level, the banner's lines do not).
async fn banner(server: &Server) -> Vec<String> {
    for _ in 0..50 {
        let log = server.log();
        if log.contains("is serving:") {
            let lines = log.lines().skip_while(|l| !l.starts_with("chantra ")).skip(1);
            return lines
                .take_while(|l| l.starts_with("  "))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no startup banner in the output:\n{}", server.log());
}

/// Every role on its own non-default loopback port, no public URL set.
#[tokio::test]
async fn urls_follow_the_bound_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path()).env("CHANNEL_BASE_URL", "").roles("all").start().await;
    let client = reqwest::Client::new();
    let (rest, channels, mcp, landing) = (
        format!("http://{}", server.addr("rest")),
        format!("http://{}", server.addr("channels")),
        format!("http://{}", server.addr("mcp")),
        format!("http://{}", server.addr("landing")),
    );
    for default_port in [":8081", ":8070", ":8090", ":8080"] {
        assert!(![&rest, &channels, &mcp, &landing].iter().any(|u| u.ends_with(default_port)), "non-default ports");
    }

    // A channel's URL is on the channels port actually bound, and works.
    let channel = create_channel(&client, &rest).await;
    let id = channel["channel_id"].as_str().unwrap();
    assert_eq!(channel["url"], format!("{channels}/channel/v1/public/{id}"));
    let stream = client.get(channel["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);

    // The landing quickstart, the docs and the playground call these ports.
    let home = text(&client, &format!("{landing}/")).await;
    assert!(home.contains(&format!("curl -s -X POST {rest}/v1/channels")), "{home}");
    assert!(home.contains(&format!("curl -N {channels}/channel/v1/public/")), "{home}");
    assert!(home.contains(&format!("\"url\": \"{mcp}/mcp\"")), "{home}");
    assert!(!home.contains("localhost:80"), "no default port is advertised:\n{home}");
    let playground = client.get(format!("{landing}/playground")).send().await.unwrap();
    let csp = playground.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&rest) && csp.contains(&channels), "the playground may call the bound ports: {csp}");
    let playground = playground.text().await.unwrap();
    assert!(playground.contains(&format!("data-rest-url=\"{rest}\"")), "{playground}");
    assert!(text(&client, &format!("{landing}/docs")).await.contains(&format!("<code>{rest}</code>")));

    // MCP discovery names the bound mcp port.
    let discovery: Value =
        client.get(format!("{mcp}/.well-known/mcp-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["endpoints"]["streamable_http"], format!("{mcp}/mcp"));
    assert_eq!(discovery["endpoints"]["sse"], format!("{mcp}/sse"));

    // Printed once at startup, one line per role, on stdout.
    let printed = banner(&server).await;
    assert_eq!(
        printed,
        [
            format!("REST API {rest} (OpenAPI: {rest}/openapi.json)"),
            format!("MCP {mcp}/mcp (discovery: {mcp}/.well-known/mcp-server)"),
            format!("channels {channels}/channel/v1/{{public|private}}/{{channel_id}} (SSE, poll, NDJSON)"),
            format!("landing {landing} (pages, docs, playground)"),
        ],
        "{}",
        server.log()
    );
    assert_eq!(server.log_count("is serving:"), 1);
}

/// Configured public URLs win over the bound addresses everywhere.
#[tokio::test]
async fn configured_public_urls_win() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path())
        .env("CHANNEL_BASE_URL", "")
        .env("CHANNEL_HOSTNAME", "chantra.example.test")
        .env("LANDING_REST_URL", "https://api.example.test/")
        .env("MCP_PUBLIC_URL", "https://mcp.example.test")
        .roles("all")
        .start()
        .await;
    let client = reqwest::Client::new();
    let channel = create_channel(&client, &server.rest_url("")).await;
    let id = channel["channel_id"].as_str().unwrap();
    assert_eq!(channel["url"], format!("https://chantra.example.test/channel/v1/public/{id}"));
    let home = text(&client, &server.url("landing", "/")).await;
    assert!(home.contains("curl -s -X POST https://api.example.test/v1/channels"), "{home}");
    assert!(home.contains("curl -N https://chantra.example.test/channel/v1/public/"), "{home}");
    assert!(home.contains("\"url\": \"https://mcp.example.test/mcp\""), "{home}");
    let playground = text(&client, &server.url("landing", "/playground")).await;
    assert!(playground.contains("data-rest-url=\"https://api.example.test\""), "{playground}");
    let discovery: Value =
        client.get(server.url("mcp", "/.well-known/mcp-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["endpoints"]["streamable_http"], "https://mcp.example.test/mcp");
    let printed = banner(&server).await;
    assert!(
        printed
            .contains(&"REST API https://api.example.test (OpenAPI: https://api.example.test/openapi.json)".to_owned()),
        "{printed:?}"
    );
    assert!(printed.iter().any(|l| l.starts_with("channels https://chantra.example.test/channel/v1/")), "{printed:?}");
    assert!(printed.iter().any(|l| l.starts_with("MCP https://mcp.example.test/mcp")), "{printed:?}");
}

/// Only the roles served are printed.
#[tokio::test]
async fn banner_names_only_the_roles_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path()).env("CHANNEL_BASE_URL", "").roles("rest,channels").start().await;
    let printed = banner(&server).await;
    let rest = format!("http://{}", server.addr("rest"));
    let channels = format!("http://{}", server.addr("channels"));
    assert_eq!(printed.len(), 2, "{printed:?}");
    assert!(printed[0].starts_with(&format!("REST API {rest} ")), "{printed:?}");
    assert!(printed[1].starts_with(&format!("channels {channels}/channel/v1/")), "{printed:?}");
}

/// A wildcard bind is advertised as localhost, and port 0 as the port the
/// kernel chose (in process: `Application::build`, as `main` runs it).
#[tokio::test]
async fn wildcard_and_port_zero_binds() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/chantra.db?mode=rwc", dir.path().display());
    let data = dir.path().display().to_string();
    let mut args = vec!["chantra", "serve", "--role", "rest", "--role", "channels", "--role", "mcp"];
    args.extend(["--rest-addr", "127.0.0.1:0", "--channels-addr", "0.0.0.0:0", "--mcp-addr", "127.0.0.1:0"]);
    args.extend(["--database-url", &db, "--data-dir", &data, "--token-secret-salt", TEST_SECRET]);
    args.extend(["--no-sweeper", "true", "--rate-limit-per-second", "0"]);
    let Command::Serve(serve) = Cli::try_parse_from(&args).unwrap().command else { unreachable!() };
    let config = Config::from_args(&serve).unwrap();
    let app = Application::build(config).await.unwrap();
    let bound: BTreeMap<Role, SocketAddr> =
        [Role::Rest, Role::Channels, Role::Mcp].into_iter().map(|r| (r, app.local_addr(r).unwrap())).collect();
    let urls: BTreeMap<Role, String> = app.urls().into_iter().collect();
    let channels_port = bound[&Role::Channels].port();
    assert_ne!(channels_port, 0);
    assert_eq!(urls[&Role::Channels], format!("http://localhost:{channels_port}"));
    assert_eq!(urls[&Role::Rest], format!("http://{}", bound[&Role::Rest]));
    assert_eq!(urls[&Role::Mcp], format!("http://{}", bound[&Role::Mcp]));
    let rest = format!("http://{}", bound[&Role::Rest]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let channel = create_channel(&reqwest::Client::new(), &rest).await;
    let id = channel["channel_id"].as_str().unwrap();
    assert_eq!(channel["url"], format!("http://localhost:{channels_port}/channel/v1/public/{id}"));
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[test]
fn local_urls() {
    use chantra::config::local_url;
    assert_eq!(local_url("0.0.0.0:8070".parse().unwrap()), "http://localhost:8070");
    assert_eq!(local_url("[::]:8070".parse().unwrap()), "http://localhost:8070");
    assert_eq!(local_url("127.0.0.1:8081".parse().unwrap()), "http://127.0.0.1:8081");
    assert_eq!(local_url("[::1]:8090".parse().unwrap()), "http://[::1]:8090");
    assert_eq!(local_url("192.0.2.7:80".parse().unwrap()), "http://192.0.2.7:80");
}

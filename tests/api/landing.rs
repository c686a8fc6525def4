//! The landing role: every page renders with its key text and security
//! headers, every local link resolves, assets are cached and compressed,
//! unknown paths get a helpful HTML 404, and the values shown come from the
//! running configuration.

use chantra::cli::Role;

use crate::helpers::{Backend, Options, TestApp, spawn_app_with};

async fn landing(extra: &[&str]) -> TestApp {
    let options = Options {
        roles: Some(vec![Role::Landing]),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    spawn_app_with(Backend::Sqlite, options).await
}

fn local_links(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for part in html.split(attr).skip(1) {
            let link = part.split('"').next().unwrap_or_default();
            if link.starts_with('/') {
                links.push(link.split('#').next().unwrap().to_owned());
            }
        }
    }
    links.sort();
    links.dedup();
    links
}

#[tokio::test]
async fn pages_render_with_their_key_text() {
    let app = landing(&[
        "--max-payload-bytes",
        "2097152",
        "--channel-idle-days",
        "14",
        "--landing-rest-url",
        "https://api.example.test",
    ])
    .await;
    let pages = [
        (
            "/",
            vec![
                "Pub/sub channels in one HTTP call",
                "curl -s -X POST https://api.example.test/v1/channels",
                "curl -N",
                "EventSource",
                "mcpServers",
                "48 hours",
                "14 days",
                "2 MiB",
                "token hashes",
            ],
        ),
        (
            "/docs",
            vec![
                "REST API",
                "/v1/channels/{id}/read-grants/{grant_id}/revoke",
                "event: gap",
                "Last-Event-ID",
                "read_channel_messages",
                "payload_too_large",
                "127.0.0.1:8070",
                "127.0.0.1:8090",
                "172800",
                "2 MiB",
            ],
        ),
        (
            "/playground",
            vec![
                "Create a channel",
                "id=\"messages\"",
                "data-rest-url=\"https://api.example.test\"",
                "/static/playground.js",
            ],
        ),
    ];
    for (path, needles) in pages {
        let response = app.client.get(app.url(Role::Landing, path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("https://api.example.test"), "{csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let html = response.text().await.unwrap();
        for needle in needles {
            assert!(html.contains(needle), "{path} lacks {needle:?}");
        }
        assert!(!html.contains("<script>"), "{path}: no inline script");
        assert!(!html.contains("https://fonts.") && !html.contains("cdn."), "{path}: no external assets");
        assert!(
            html.contains("<html lang=\"en\">") && html.contains("name=\"viewport\""),
            "{path}: accessible, responsive"
        );
        for link in local_links(&html) {
            let status = app.client.get(app.url(Role::Landing, &link)).send().await.unwrap().status();
            assert_eq!(status, 200, "{path} links to {link}");
        }
    }
}

#[tokio::test]
async fn assets_are_cached_and_compressed() {
    let app = landing(&[]).await;
    for (asset, content_type) in [
        ("/static/style.css", "text/css"),
        ("/static/playground.js", "text/javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let response =
            app.client.get(app.url(Role::Landing, asset)).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(content_type), "{asset}");
        assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
        if asset != "/static/favicon.svg" {
            assert_eq!(response.headers()["content-encoding"], "gzip", "{asset} is compressed");
        }
    }
    let missing = app.client.get(app.url(Role::Landing, "/static/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn unknown_pages_get_a_helpful_404() {
    let app = landing(&[]).await;
    let response = app.client.get(app.url(Role::Landing, "/pricing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    let html = response.text().await.unwrap();
    assert!(html.contains("/pricing") && html.contains("href=\"/docs\"") && html.contains("href=\"/playground\""));
    // Health checks still answer JSON on this role.
    let health = app.client.get(app.url(Role::Landing, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

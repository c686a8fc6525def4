//! Security checks not covered elsewhere (sse.rs already refuses the
//! internal API without a token and with a wrong one, rest_http.rs checks a
//! GET from a foreign origin, landing.rs the headers of the three pages):
//!
//! - the internal token is compared whole — a prefix, an extension, another
//!   case or another header does not open `/internal/*`, and no role but
//!   channels serves it;
//! - with `CORS_ALLOWED_ORIGINS` set to one origin, a foreign origin's
//!   preflight gets no `Access-Control-Allow-Origin`, and no role ever allows
//!   credentials (tokens travel in headers, never cookies);
//! - every landing response — 404 page and static assets included — carries
//!   the CSP (no inline or eval'd script, no framing, no plugins), `nosniff`
//!   and `Referrer-Policy`.

use chantra::cli::Role;
use serde_json::Value;

use crate::helpers::{Backend, Options, TestApp, spawn_app_with};

async fn app(roles: Vec<Role>, extra: &[&str]) -> TestApp {
    let options =
        Options { roles: Some(roles), extra_args: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    spawn_app_with(Backend::Sqlite, options).await
}

const INTERNAL: &str = "internal-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_token_must_match_exactly() {
    let app = app(vec![Role::Rest, Role::Channels], &["--internal-api-token", INTERNAL]).await;
    let channel = app.create_channel("public").await;
    let path = format!("/internal/v1/channels/{}/messages", channel["channel_id"].as_str().unwrap());
    let url = app.url(Role::Channels, &path);
    let get = |name: &str, value: &str| app.client.get(&url).header(name, value).send();

    let near_misses = [
        ("x-internal-token", INTERNAL[..INTERNAL.len() - 1].to_owned()),
        ("x-internal-token", format!("{INTERNAL}0")),
        ("x-internal-token", INTERNAL.to_uppercase()),
        ("x-internal-token", format!(" {INTERNAL}x")),
        ("x-internal-token", String::new()),
        ("authorization", format!("Bearer {INTERNAL}")),
        ("x-read-token", INTERNAL.to_owned()),
    ];
    for (name, value) in &near_misses {
        let response = get(name, value).await.unwrap();
        assert_eq!(response.status(), 401, "{name}: {value:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_internal_token", "{name}: {value:?}");
        assert!(!body.to_string().contains(INTERNAL), "the answer never echoes the secret");
    }
    assert_eq!(get("x-internal-token", INTERNAL).await.unwrap().status(), 200, "the exact token opens it");

    // Only the channels role serves /internal/*, even with the right token.
    let on_rest = app.client.get(app.rest(&path)).header("x-internal-token", INTERNAL).send().await.unwrap();
    assert_eq!(on_rest.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origin() {
    let allowed = "https://app.example.test";
    let app = app(vec![Role::Rest, Role::Channels], &["--cors-allowed-origins", allowed]).await;
    let channel = app.create_channel("private").await;
    let url = app.url(Role::Channels, &format!("/channel/v1/private/{}", channel["channel_id"].as_str().unwrap()));
    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization,last-event-id")
            .send()
    };

    let ok = preflight(allowed).await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], allowed);
    assert!(ok.headers().get_all("vary").iter().any(|v| v.to_str().unwrap().to_lowercase().contains("origin")));
    for foreign in ["https://evil.example", "https://app.example.test.evil.example", "http://app.example.test", "null"]
    {
        let response = preflight(foreign).await.unwrap();
        assert!(response.headers().get("access-control-allow-origin").is_none(), "preflight from {foreign}");
        let get = app.client.get(&url).header("origin", foreign).send().await.unwrap();
        assert!(get.headers().get("access-control-allow-origin").is_none(), "GET from {foreign}");
    }

    // No role allows credentialed requests, whatever the origin.
    for url in [app.rest("/v1/channels"), url.clone()] {
        for origin in [allowed, "https://evil.example"] {
            let response = app
                .client
                .request(reqwest::Method::OPTIONS, &url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
                .await
                .unwrap();
            assert!(response.headers().get("access-control-allow-credentials").is_none(), "{url} {origin}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_landing_response_carries_the_security_headers() {
    let app = app(vec![Role::Landing], &[]).await;
    for path in ["/", "/docs", "/playground", "/no-such-page", "/static/playground.js", "/static/favicon.svg"] {
        let response = app.client.get(app.url(Role::Landing, path)).send().await.unwrap();
        let headers = response.headers();
        let csp = headers.get("content-security-policy").map(|v| v.to_str().unwrap()).unwrap_or_default();
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for wanted in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(directives.contains(&wanted), "{path}: CSP lacks {wanted}: {csp}");
        }
        assert!(
            !csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'") && !csp.contains('*'),
            "{path}: {csp}"
        );
        assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert_eq!(headers.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{path}");
        assert!(
            headers.get("access-control-allow-origin").is_none(),
            "{path}: landing pages are not for other origins"
        );
    }
}

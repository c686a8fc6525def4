//! The landing role: the product page, the reference docs and a live
//! playground, rendered from `templates/` and served with `static/`.
//!
//! Templates and assets are compiled into the binary (one file to deploy)
//! and the templates are parsed once, when the router is built. Values such
//! as limits, ports and the version come from the constants and settings the
//! code itself uses, so the pages cannot drift from the behaviour.

mod assets;
pub mod settings;

pub use settings::LandingSettings;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use minijinja::{Environment, context};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::cli::{DEFAULT_CHANNELS_ADDR, DEFAULT_LANDING_ADDR, DEFAULT_MCP_ADDR, DEFAULT_REST_ADDR};
use crate::mcp::ChantraMcp;
use crate::state::AppState;
use chantra_core::domain::MAX_TTL_SECONDS;

const TEMPLATES: [(&str, &str); 5] = [
    ("base.html", include_str!("../../../templates/base.html")),
    ("index.html", include_str!("../../../templates/index.html")),
    ("docs.html", include_str!("../../../templates/docs.html")),
    ("playground.html", include_str!("../../../templates/playground.html")),
    ("not_found.html", include_str!("../../../templates/not_found.html")),
];

/// The parsed templates and the values every page shows.
struct Pages {
    env: Environment<'static>,
    site: minijinja::Value,
}

#[derive(Serialize)]
struct RoleRow {
    name: &'static str,
    addr: &'static str,
    what: &'static str,
}

pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Arc::new(Pages::new(state));
    let csp = content_security_policy(state);
    Router::new()
        .route(
            "/",
            get({
                let pages = pages.clone();
                move || render(pages.clone(), "index.html", "home")
            }),
        )
        .route(
            "/docs",
            get({
                let pages = pages.clone();
                move || render(pages.clone(), "docs.html", "docs")
            }),
        )
        .route(
            "/playground",
            get({
                let pages = pages.clone();
                move || render(pages.clone(), "playground.html", "playground")
            }),
        )
        .route("/static/{file}", get(assets::serve))
        .fallback(move |uri: OriginalUri, _state: State<AppState>| not_found(pages.clone(), uri))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}

impl Pages {
    fn new(state: &AppState) -> Self {
        let env = environment().unwrap_or_else(|err| {
            // The templates are part of the binary; the unit test below catches this first.
            tracing::error!(error = %err, "landing templates do not parse");
            Environment::new()
        });
        let config = &state.landing;
        let max_payload = config.max_payload_bytes;
        let site = context! {
            version => env!("CARGO_PKG_VERSION"),
            rest_url => config.rest_url.clone(),
            channel_base => config.channel_base_url.clone(),
            mcp_url => config.mcp_public_url.clone(),
            tools => ChantraMcp::tool_names(),
            max_ttl_seconds => MAX_TTL_SECONDS,
            max_ttl_hours => MAX_TTL_SECONDS / 3600,
            idle_days => config.channel_idle_days,
            max_payload => human_bytes(max_payload),
            replay_max => config.replay_max,
            keepalive_secs => config.keepalive.as_secs(),
            roles => vec![
                RoleRow { name: "landing", addr: DEFAULT_LANDING_ADDR, what: "these pages and the playground" },
                RoleRow { name: "rest", addr: DEFAULT_REST_ADDR, what: "management and publish API under /v1, /openapi.json" },
                RoleRow { name: "channels", addr: DEFAULT_CHANNELS_ADDR, what: "SSE reads /v1/{public|private}/{id} and the internal read API" },
                RoleRow { name: "mcp", addr: DEFAULT_MCP_ADDR, what: "MCP Streamable HTTP at /mcp and /sse, /.well-known/mcp-server" },
            ],
        };
        Self { env, site }
    }

    fn render(&self, template: &str, page: &str, extra: minijinja::Value) -> Result<String, minijinja::Error> {
        let merged = minijinja::value::merge_maps([context! { page => page }, extra, self.site.clone()]);
        self.env.get_template(template)?.render(merged)
    }
}

/// The templates, parsed, with an HTML formatter.
fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // minijinja's HTML escaping also turns `/` into `&#x2f;`, which makes the
    // copyable curl lines unreadable in the page source; escaping the five
    // HTML-significant characters is what safety needs.
    env.set_formatter(|out, _state, value| {
        let text = value.to_string();
        if value.is_safe() {
            return out.write_str(&text).map_err(minijinja::Error::from);
        }
        for c in text.chars() {
            let written = match c {
                '&' => out.write_str("&amp;"),
                '<' => out.write_str("&lt;"),
                '>' => out.write_str("&gt;"),
                '"' => out.write_str("&quot;"),
                '\'' => out.write_str("&#39;"),
                c => out.write_char(c),
            };
            written.map_err(minijinja::Error::from)?;
        }
        Ok(())
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

async fn render(pages: Arc<Pages>, template: &'static str, page: &'static str) -> Response {
    match pages.render(template, page, context! {}) {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(template, error = %err, "landing page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, Html("<h1>Internal error</h1>")).into_response()
        }
    }
}

async fn not_found(pages: Arc<Pages>, OriginalUri(uri): OriginalUri) -> Response {
    let html = pages
        .render("not_found.html", "not_found", context! { path => uri.path() })
        .unwrap_or_else(|_| "<h1>Not found</h1>".to_owned());
    (StatusCode::NOT_FOUND, Html(html)).into_response()
}

/// Scripts and styles only from this origin (no inline script); the
/// playground may call the configured API and channel URLs.
fn content_security_policy(state: &AppState) -> HeaderValue {
    let config = &state.landing;
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' {} {}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        config.rest_url, config.channel_base_url
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

fn human_bytes(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(1 << 20), "1 MiB");
        assert_eq!(human_bytes(300 * 1024), "300 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }

    #[test]
    fn every_template_parses() {
        environment().unwrap();
    }
}

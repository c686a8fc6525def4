//! Property tests of everything that parses or encodes hostile input, run
//! against the `chantra` library itself: tokens, ids and cursors, bounded
//! values (TTL, labels, content types, idempotency keys), query and header
//! helpers, NOTIFY payloads, base64 payloads, and the SSE frames readers
//! receive — which must come back unchanged through an independent SSE
//! parser (`eventsource-stream`), against which `chantra sub`'s own SSE
//! parser is also checked (`client_sse`). `cursor_http` runs the channels role
//! in-process and sends it arbitrary `Last-Event-ID`, `?last_event_id=` and
//! `?since=` values. `lean_path` sends arbitrary request heads to the accept
//! loop with and without the lean event-stream path and checks it is invisible.
//!
//! Case counts are chosen so the whole binary runs in seconds; raise them for
//! a deeper run with `PROPTEST_CASES=10000 cargo nextest run --test props`.

mod base64;
mod client_sse;
mod cursor_http;
mod extract;
mod frames;
mod ids;
mod lean_path;
mod limits;
mod tokens;

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

//! One integration binary: the real application over HTTP, on SQLite +
//! filesystem and on PostgreSQL + S3 (garage). See helpers.rs; what is
//! shared with tests/faults (the launcher of the built binary, the SSE
//! client, the test database) is in crates/chantra-testkit.

mod advertised;
mod backends;
mod cli;
mod client;
mod docs;
mod fanout_nats;
mod helpers;
mod inline_payloads;
mod landing;
mod lifecycle;
mod limits;
mod logs;
mod mcp;
mod processes;
mod publish_contention;
mod reads;
mod rest_channels;
mod rest_grants;
mod rest_http;
mod rest_publish;
mod security;
mod sse;
mod sse_multiprocess;
mod supervision;

/// The SSE test client, under the name the cases use.
use chantra_testkit::sse as sse_client;

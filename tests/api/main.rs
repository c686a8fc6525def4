//! One integration binary: the real application over HTTP, on SQLite +
//! filesystem and on PostgreSQL + S3 (garage). See helpers.rs.

mod backends;
mod cli;
mod helpers;
mod landing;
mod lifecycle;
mod limits;
mod logs;
mod mcp;
mod rest_channels;
mod rest_grants;
mod rest_http;
mod rest_publish;
mod security;
mod sse;
mod sse_client;
mod sse_multiprocess;
mod supervision;

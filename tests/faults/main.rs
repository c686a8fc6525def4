//! Fault injection: the built `chantra` binary as real processes on
//! loopback, on PostgreSQL and garage, while things go wrong — a channels
//! process killed, PostgreSQL restarted, the S3 store hung and killed, a
//! SIGTERM under load, a reconnect storm, slow and never-reading clients,
//! an MCP initialize storm.
//! Each case prints what it measured (run with `--no-capture`); see
//! docs/RELIABILITY.md for the figures of a run.
//!
//! Needs the shared PostgreSQL on 127.0.0.1:5432 (`source scripts/test-env.sh
//! && ensure_postgres`) and the garage binary (`bash scripts/setup-test-tools.sh`
//! installs it); every case starts its own garage, and the PostgreSQL restart
//! case its own cluster. A backend that cannot be reached fails the case.

mod common;
mod garage;
mod pg_cluster;
mod server;
mod traffic;

/// The SSE test client, under the name the cases use.
use chantra_testkit::sse as sse_client;

mod channels_killed;
mod durability;
mod graceful_shutdown;
mod grants_bounded;
mod mcp_sessions;
mod postgres_restart;
mod reconnect_storm;
mod replay_memory;
mod s3_outage;
mod slow_clients;

//! chantra-core: everything Chantra *is*, without how it is reached.
//!
//! Layers, lowest first; each module imports only those above it in this list:
//!
//! | module | what it holds | may import |
//! |---|---|---|
//! | [`domain`], [`clock`], [`metrics`] | ids, tokens, limits, visibility; "now"; counters | nothing here |
//! | [`db`] | the only SQL (SeaORM entities and queries, NOTIFY/LISTEN) | domain, metrics |
//! | [`payload`] | payload stores (filesystem, S3) | domain, metrics |
//! | [`error`] | the service's error type | domain, db, payload |
//! | [`supervisor`] | named background tasks, restarted when they stop | metrics |
//! | [`fanout`] | the in-process hub and the notice bus (trait; local and PostgreSQL buses) | domain, db, supervisor |
//! | [`service`] | every business rule | all of the above |
//!
//! The binary (`chantra`) adds the edges — HTTP, MCP, CLI — on top; this
//! crate depends on no HTTP server, MCP or CLI library (scripts/check-layers.sh).

pub mod clock;
pub mod db;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod metrics;
pub mod payload;
pub mod service;
pub mod supervisor;

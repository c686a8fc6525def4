//! Chantra: anonymous pub/sub channels. One binary, four roles (rest,
//! channels, mcp, landing) over one service layer. See DESIGN.md for the
//! contract and README.md for running it.
//!
//! This crate is the edges: the CLI and configuration, the app wiring, HTTP
//! (REST, event streams, landing) and MCP. Every business rule lives below,
//! in `chantra_core`, which cannot import anything from here.

pub mod app;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod role;
pub mod state;
pub mod telemetry;

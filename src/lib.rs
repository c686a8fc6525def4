//! Chantra: anonymous pub/sub channels. One binary, four roles (rest,
//! channels, mcp, landing) over one service layer. See DESIGN.md for the
//! contract and README.md for running it.

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod payload;
pub mod service;
pub mod state;
pub mod supervisor;
pub mod telemetry;

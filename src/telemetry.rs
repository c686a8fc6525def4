//! Logging: `tracing` to stderr, filtered by RUST_LOG (default `info`).
//!
//! Secrets stay out of logs by construction rather than by filtering: token
//! types print as `PublishToken("chp_…")`, request spans record the path but
//! never the query string, and no code path logs request headers or bodies.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in container logs or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

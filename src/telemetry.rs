//! Logging: `tracing` to stderr, filtered by RUST_LOG (default `info`).
//!
//! Secrets stay out of logs: token types print as `PublishToken("chp_…")`,
//! request spans record the path but never the query string, no code path
//! logs request headers or bodies, and rmcp (which logs whole tool calls at
//! debug level) is held at info.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // rmcp logs whole requests and results at debug level, and tool
    // arguments and results carry tokens: never below info, whatever RUST_LOG says.
    let filter = filter.add_directive("rmcp=info".parse().expect("a valid constant directive"));
    // Colours only for a person at a terminal, not in container logs or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

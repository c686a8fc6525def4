//! The command line of the client commands (`channel`, `grant`, `pub`,
//! `sub`): what `chantra --help` shows. Parsed values only; `client` turns
//! them into requests. Kept apart from `cli.rs` (the server's flags) so each
//! file stays readable; `cli.rs` names these types in its `Command` enum.

use clap::{Args, Subcommand};

/// The exit codes of the client commands, shown under every client command's `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (client commands):
  0  success; `sub` also after Ctrl-C / SIGTERM (it stops between two messages)
  1  other failure (unexpected answer, unreadable file, broken output)
  2  usage: bad arguments, missing token, or a request the server refused as invalid (400, 409, 413, 415)
  3  auth: token missing, wrong, revoked or expired (401, 403; `sub`: event `revoked`)
  4  not found: unknown channel or grant (404; `sub`: event `deleted`)
  5  server or network: unreachable, timeout, 5xx, 429 (`sub` retries these instead)
  6  `sub --exec`: the command failed on a message (resume with the printed --last-event-id)

Settings: --url / CHANTRA_URL (REST API, default http://127.0.0.1:8081), --token / CHANTRA_PUBLISH_TOKEN,
--read-token / CHANTRA_READ_TOKEN; else `url`, `publish_token`, `read_token` in
~/.config/chantra/client.toml (CHANTRA_CONFIG names another file). See docs/CLI.md.";

/// Where the server is, which tokens to use, how to print: every client command takes these.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnArgs {
    /// Base URL of the REST API (default http://127.0.0.1:8081, or `url` in the config file).
    #[arg(long, env = "CHANTRA_URL")]
    pub url: Option<String>,

    /// Publish token (chp_…) of the channel.
    #[arg(long, env = "CHANTRA_PUBLISH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Read token (chr_…) of a private channel.
    #[arg(long, env = "CHANTRA_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    /// Print JSON (one object, or one per line for `sub`) instead of text for people.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ChannelAction {
    /// Create a channel; prints its id, URL and tokens (shown once: keep them).
    Create {
        /// A private channel: readers need a read token (the first one is printed).
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show a channel's metadata and read grants (needs its publish token).
    Get {
        /// Channel id or URL.
        channel: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Delete a channel with its messages and grants; its readers are told (needs its publish token).
    Delete {
        /// Channel id or URL.
        channel: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum GrantAction {
    /// Create a read grant on a private channel; prints its id and read token (shown once).
    Create {
        /// Channel id or URL.
        channel: String,
        /// A name for the grant, to recognise it later.
        #[arg(long)]
        label: Option<String>,
        /// The grant expires after this many seconds (default: never).
        #[arg(long, value_name = "SECS")]
        expires_in: Option<i64>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Revoke a read grant; readers using it are disconnected.
    Revoke {
        /// Channel id or URL.
        channel: String,
        /// The grant's id (from `grant create` or `channel get`).
        grant_id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PubArgs {
    /// Channel id or URL.
    pub channel: String,

    /// The message: text (sent as text/plain; charset=utf-8), `-` for standard input, `@FILE`
    /// for a file's bytes. Omitted: standard input.
    pub message: Option<String>,

    /// Seconds the message is kept (default: the server's maximum, 48 h).
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<u64>,

    /// Content type of the message (default text/plain; charset=utf-8 for UTF-8 text,
    /// application/octet-stream for other bytes). The body is always sent as is.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// A retry with the same key (within the message's TTL) returns the first result
    /// instead of publishing twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SubArgs {
    /// The channel URL (from `channel create`); an id works too when a publish token is set,
    /// to look the URL up.
    pub channel: String,

    /// Start with the messages since TIME: unix seconds, RFC 3339, a duration ago (30s, 10m,
    /// 2h, 1d) or `all` (everything kept). Default: only new messages.
    #[arg(long, value_name = "TIME", conflicts_with = "last_event_id")]
    pub since: Option<String>,

    /// Start after this message id (what a previous `sub` printed when it stopped).
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,

    /// Run CMD (with `sh -c`) for each message, one at a time in order: the payload on its
    /// standard input, CHANTRA_MESSAGE_ID, CHANTRA_CHANNEL_ID, CHANTRA_CONTENT_TYPE,
    /// CHANTRA_CREATED_AT, CHANTRA_EXPIRES_AT in its environment. A failing CMD stops `sub` (exit 6).
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,

    /// Seconds without a byte from the server (it sends keep-alives every 15 s by default)
    /// after which the connection counts as dead and is reopened; also the longest wait for the
    /// answer to a connection attempt (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,

    /// Longest wait between two reconnection attempts, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub max_backoff: u64,

    #[command(flatten)]
    pub conn: ConnArgs,
}

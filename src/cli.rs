//! The command line: `chantra serve` and `chantra migrate` (and the other
//! server commands), plus the client commands whose flags live in
//! `client/args.rs`. Every flag has an environment fallback (clap `env`), so
//! containers are configured with variables and laptops with flags or a
//! `.env` file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use chantra_core::domain::{DEFAULT_CHANNEL_IDLE_DAYS, DEFAULT_MAX_PAYLOAD_BYTES};

use crate::client::args::{ChannelAction, EXIT_CODES_HELP, GrantAction, PubArgs, SubArgs};

/// The runtime role (no `all`); re-exported because `BindArgs` and callers name it with the CLI.
pub use crate::role::Role;

/// Default bind address of each role (the seed's ports), on loopback: a
/// laptop's `serve` is not reachable from the network unless asked
/// (containers set `*_ADDR=0.0.0.0:…`).
pub const DEFAULT_REST_ADDR: &str = "127.0.0.1:8081";
pub const DEFAULT_CHANNELS_ADDR: &str = "127.0.0.1:8070";
pub const DEFAULT_MCP_ADDR: &str = "127.0.0.1:8090";
pub const DEFAULT_LANDING_ADDR: &str = "127.0.0.1:8080";

/// The embedded default: a SQLite file next to the payload directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/chantra.db?mode=rwc";

#[derive(Debug, Parser)]
#[command(
    name = "chantra",
    version,
    about = "Anonymous pub/sub channels over HTTP, Server-Sent Events and MCP.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one or more roles, each on its own address.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Manage the database schema.
    Migrate(MigrateArgs),
    /// Check that a running role answers /healthz (for container HEALTHCHECKs; exit 0 or 1).
    Healthcheck(HealthcheckArgs),
    /// Run the lifecycle sweeper: expiry, idle channels, orphan objects (e.g. from cron).
    #[command(args_override_self = true)]
    Sweep(Box<SweepArgs>),
    /// Client: create, show or delete a channel on a running server.
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Channel(ChannelAction),
    /// Client: create or revoke a read grant of a private channel.
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Grant(GrantAction),
    /// Client: publish a message (text, standard input or a file).
    #[command(after_help = EXIT_CODES_HELP)]
    Pub(Box<PubArgs>),
    /// Client: follow a channel, resuming without loss after any disconnection.
    #[command(after_help = EXIT_CODES_HELP)]
    Sub(Box<SubArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Run one pass and exit (otherwise sweep every SWEEP_INTERVAL_SECS until stopped).
    #[arg(long)]
    pub once: bool,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub fanout: FanoutArgs,

    /// Apply pending migrations at startup; with false, sweep refuses an outdated schema.
    #[arg(long, env = "AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
}

/// What the lifecycle sweeper removes and how fast: shared by `serve` (which
/// runs a sweeper unless NO_SWEEPER) and `sweep`.
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Seconds a revoked or expired read grant is kept (readers are told why it ended) before
    /// the sweeper purges it (0: at the next pass).
    #[arg(long, env = "GRANT_PURGE_GRACE_SECS", default_value_t = 86_400)]
    pub grant_purge_grace_secs: u64,

    /// Days without a publish after which a channel is deleted.
    #[arg(long, env = "CHANNEL_IDLE_DAYS", default_value_t = DEFAULT_CHANNEL_IDLE_DAYS)]
    pub channel_idle_days: u32,

    /// Seconds between sweeper passes.
    #[arg(long, env = "SWEEP_INTERVAL_SECS", default_value_t = 60)]
    pub sweep_interval_secs: u64,

    /// Rows or objects handled per sweeper batch.
    #[arg(long, env = "SWEEP_BATCH", default_value_t = 500)]
    pub sweep_batch: u64,

    /// Seconds an object may lack its row (or a row its object) before it counts as an orphan
    /// (0: at once).
    #[arg(long, env = "ORPHAN_GRACE_SECS", default_value_t = 3600)]
    pub orphan_grace_secs: u64,

    /// Days after which S3 objects expire by a bucket lifecycle rule (set at startup when missing).
    #[arg(long, env = "S3_EXPIRY_DAYS", default_value_t = 2)]
    pub s3_expiry_days: u32,
}

/// Where each role listens; `serve` binds these and `healthcheck` probes them.
#[derive(Debug, Clone, Args)]
pub struct BindArgs {
    /// Address the rest role binds.
    #[arg(long, env = "REST_ADDR", default_value = DEFAULT_REST_ADDR)]
    pub rest_addr: SocketAddr,

    /// Address the channels role binds.
    #[arg(long, env = "CHANNELS_ADDR", default_value = DEFAULT_CHANNELS_ADDR)]
    pub channels_addr: SocketAddr,

    /// Address the mcp role binds.
    #[arg(long, env = "MCP_ADDR", default_value = DEFAULT_MCP_ADDR)]
    pub mcp_addr: SocketAddr,

    /// Address the landing role binds.
    #[arg(long, env = "LANDING_ADDR", default_value = DEFAULT_LANDING_ADDR)]
    pub landing_addr: SocketAddr,
}

impl BindArgs {
    pub fn addr(&self, role: Role) -> SocketAddr {
        match role {
            Role::Rest => self.rest_addr,
            Role::Channels => self.channels_addr,
            Role::Mcp => self.mcp_addr,
            Role::Landing => self.landing_addr,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Roles to check (each on the address serve binds); defaults to the roles this container serves.
    #[arg(long = "role", env = "CHANTRA_ROLES", value_enum, value_delimiter = ',', default_value = "all")]
    pub roles: Vec<RoleArg>,

    #[command(flatten)]
    pub binds: BindArgs,

    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// A `--role` value: one role, or `all` for every role in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum RoleArg {
    /// Management and publish API under /v1 (default :8081).
    Rest,
    /// MCP server for AI agents (default :8090).
    Mcp,
    /// Server-Sent Events reads and the internal read API (default :8070).
    Channels,
    /// Product pages, docs and playground (default :8080).
    Landing,
    /// Every role above, sharing one service layer.
    All,
}

impl RoleArg {
    /// The flag value naming one role (what tests and scripts pass to `--role`).
    pub fn of(role: Role) -> Self {
        match role {
            Role::Rest => RoleArg::Rest,
            Role::Mcp => RoleArg::Mcp,
            Role::Channels => RoleArg::Channels,
            Role::Landing => RoleArg::Landing,
        }
    }

    /// Expands `all` and removes repeats, in a stable order.
    pub fn expand(args: &[RoleArg]) -> Vec<Role> {
        let mut out: Vec<Role> = args
            .iter()
            .flat_map(|arg| match arg {
                RoleArg::Rest => vec![Role::Rest],
                RoleArg::Mcp => vec![Role::Mcp],
                RoleArg::Channels => vec![Role::Channels],
                RoleArg::Landing => vec![Role::Landing],
                RoleArg::All => Role::EACH.to_vec(),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://… (embedded) or postgres://… (production).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Seconds to wait for a database connection before answering 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    pub db_acquire_timeout_secs: u64,

    /// Maximum database connections in this process's pool [default: 16 with PostgreSQL, 4 with SQLite].
    #[arg(long, env = "DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
}

/// The notice bus between processes. Unset FANOUT_URL: PostgreSQL LISTEN/NOTIFY
/// (in-process with SQLite). `nats://…`: NATS, one subject per channel.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// NATS server URL(s), comma-separated (nats://host:4222, tls://host:4222); may carry
    /// user:password@. Unset: PostgreSQL LISTEN/NOTIFY. Needs PostgreSQL.
    #[arg(long, env = "FANOUT_URL", hide_env_values = true)]
    pub fanout_url: Option<String>,

    /// NATS user (with FANOUT_NATS_PASSWORD).
    #[arg(long, env = "FANOUT_NATS_USER")]
    pub fanout_nats_user: Option<String>,

    /// NATS password (with FANOUT_NATS_USER).
    #[arg(long, env = "FANOUT_NATS_PASSWORD", hide_env_values = true)]
    pub fanout_nats_password: Option<String>,

    /// NATS authentication token.
    #[arg(long, env = "FANOUT_NATS_TOKEN", hide_env_values = true)]
    pub fanout_nats_token: Option<String>,

    /// NATS NKey seed (SU…).
    #[arg(long, env = "FANOUT_NATS_NKEY_SEED", hide_env_values = true)]
    pub fanout_nats_nkey_seed: Option<String>,

    /// NATS credentials file (JWT + NKey seed, as `nsc` writes it).
    #[arg(long, env = "FANOUT_NATS_CREDS_FILE")]
    pub fanout_nats_creds_file: Option<PathBuf>,

    /// Refuse a NATS server without TLS (tls:// URLs imply it).
    #[arg(long, env = "FANOUT_NATS_TLS_REQUIRED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub fanout_nats_tls_required: bool,

    /// PEM file of the CA that signs the NATS server's certificate (else the system roots).
    #[arg(long, env = "FANOUT_NATS_TLS_CA_FILE")]
    pub fanout_nats_tls_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for NATS servers that verify clients (with FANOUT_NATS_TLS_KEY_FILE).
    #[arg(long, env = "FANOUT_NATS_TLS_CERT_FILE")]
    pub fanout_nats_tls_cert_file: Option<PathBuf>,

    /// Client key (PEM) of FANOUT_NATS_TLS_CERT_FILE.
    #[arg(long, env = "FANOUT_NATS_TLS_KEY_FILE")]
    pub fanout_nats_tls_key_file: Option<PathBuf>,

    /// Subjects are <prefix>.ch.<channel id> and <prefix>.resync (deployments sharing a NATS need distinct ones).
    #[arg(long, env = "FANOUT_NATS_SUBJECT_PREFIX", default_value = "chantra")]
    pub fanout_nats_subject_prefix: String,

    /// Milliseconds between catch-ups from the database while NATS is unreachable.
    #[arg(long, env = "FANOUT_POLL_MS", default_value_t = 1000)]
    pub fanout_poll_ms: u64,

    /// Notices waiting to be published to NATS; beyond, they are dropped (readers catch up by cursor).
    #[arg(long, env = "FANOUT_OUTBOX", default_value_t = 8192)]
    pub fanout_outbox: usize,
}

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded defaults: payload files and the generated token secret.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// S3 endpoint (e.g. http://minio:9000). When unset, payloads are files under DATA_DIR/payloads.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 bucket for payloads; created at startup when missing.
    #[arg(long, env = "S3_BUCKET", default_value = "chantra")]
    pub s3_bucket: String,

    /// S3 access key.
    #[arg(long, env = "S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,

    /// S3 secret key.
    #[arg(long, env = "S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,

    /// S3 region used to sign requests (must match the server's: garage and MinIO default to us-east-1).
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Seconds before an S3 request is abandoned and the client gets 503.
    #[arg(long, env = "S3_TIMEOUT_SECS", default_value_t = 10)]
    pub s3_timeout_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Roles to run: rest, mcp, channels, landing or all (repeatable or comma-separated).
    #[arg(long = "role", env = "CHANTRA_ROLES", value_enum, value_delimiter = ',', default_value = "all")]
    pub roles: Vec<RoleArg>,

    #[command(flatten)]
    pub binds: BindArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub fanout: FanoutArgs,

    /// Public host of the channels role; channel URLs are https://{CHANNEL_HOSTNAME}/channel/v1/….
    #[arg(long, env = "CHANNEL_HOSTNAME")]
    pub channel_hostname: Option<String>,

    /// Replaces https://{CHANNEL_HOSTNAME} in channel URLs (local use without an edge proxy).
    /// When neither is set: the address the channels role binds (0.0.0.0 and :: as localhost).
    #[arg(long, env = "CHANNEL_BASE_URL")]
    pub channel_base_url: Option<String>,

    /// Secret keying the token hashes. Required with PostgreSQL; generated under DATA_DIR otherwise.
    #[arg(long, env = "TOKEN_SECRET_SALT", hide_env_values = true)]
    pub token_secret_salt: Option<String>,

    /// Apply pending migrations at startup; with false, serve refuses an outdated schema.
    #[arg(long, env = "AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,

    /// Largest accepted message payload, in bytes.
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: usize,

    /// Payloads up to this size are written into the database with their message, in the same
    /// transaction, instead of the payload store [default: 4096 with files, 0 with S3].
    #[arg(long, env = "PAYLOAD_INLINE_MAX_BYTES")]
    pub payload_inline_max_bytes: Option<usize>,

    /// Read grants one channel may hold, revoked and expired ones included until they are purged.
    #[arg(long, env = "MAX_GRANTS_PER_CHANNEL", default_value_t = 1000)]
    pub max_grants_per_channel: u64,

    /// Requests per second each client IP may make, per role (0 turns rate limiting off).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 20)]
    pub rate_limit_per_second: u32,

    /// Requests a client IP may make in a burst before the per-second rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,

    /// Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Seconds a non-streaming request may take before it is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a client may take to send a request head (and a keep-alive connection may idle)
    /// before the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a connection's writes may make no progress (a client that stopped reading)
    /// before it is closed.
    #[arg(long, env = "WRITE_TIMEOUT_SECS", default_value_t = 30)]
    pub write_timeout_secs: u64,

    /// Serve Prometheus metrics at /metrics on every role (keep it off the public edge).
    #[arg(long, env = "METRICS_ENABLED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics_enabled: bool,

    /// Seconds between keep-alive comments on open event streams.
    #[arg(long, env = "SSE_KEEPALIVE_SECS", default_value_t = 15)]
    pub sse_keepalive_secs: u64,

    /// Reconnection delay (milliseconds) suggested to SSE clients with `retry:` (0: at once).
    #[arg(long, env = "SSE_RETRY_MS", default_value_t = 3000)]
    pub sse_retry_ms: u64,

    /// Most messages replayed to one resuming reader; older ones are announced with `event: gap`.
    #[arg(long, env = "SSE_REPLAY_MAX", default_value_t = 1000)]
    pub sse_replay_max: u64,

    /// Live events buffered per channel for its readers to share (a channel's
    /// first reader has a ring of its own of 16); a reader further behind
    /// catches up from the database.
    #[arg(long, env = "SSE_BUFFER", default_value_t = 128)]
    pub sse_buffer: usize,

    /// Live frames larger than this (bytes) are not kept in the per-channel
    /// buffer: readers load such a message from the store themselves, through
    /// the replay path and its memory cap (0: every message is loaded so).
    #[arg(long, env = "SSE_LIVE_FRAME_MAX_BYTES", default_value_t = 64 * 1024)]
    pub sse_live_frame_max_bytes: usize,

    /// Bytes of replay frames all readers of this process may hold at once;
    /// a resuming reader that finds no room within seconds is ended (it resumes).
    #[arg(long, env = "SSE_REPLAY_MEMORY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub sse_replay_memory_bytes: u64,

    /// Slowest read rate (bytes/s) a stream may keep: a frame not taken within
    /// max(WRITE_TIMEOUT_SECS, its size / this) ends the stream (it resumes).
    #[arg(long, env = "SSE_MIN_READ_RATE", default_value_t = 16 * 1024)]
    pub sse_min_read_rate: u64,

    /// Answer event streams on the lean connection path (no per-connection
    /// hyper buffers). `false` serves every request through hyper, as every
    /// other role does (incident response); SSE_MIN_READ_RATE then does not apply.
    #[arg(long, env = "LEAN_STREAMS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub lean_streams: bool,

    /// Payload bytes one page of the internal read API (and MCP
    /// read_channel_messages) may carry; a longer page is cut (`truncated`).
    #[arg(long, env = "PAGE_MAX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub page_max_bytes: u64,

    /// Most concurrent event streams this process serves (503 beyond).
    #[arg(long, env = "MAX_STREAMS", default_value_t = 50_000)]
    pub max_streams: usize,

    /// Most concurrent event streams per client IP (429 beyond).
    #[arg(long, env = "MAX_STREAMS_PER_IP", default_value_t = 200)]
    pub max_streams_per_ip: usize,

    /// Origins allowed to read streams from a browser (comma-separated; * for any).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', default_value = "*")]
    pub cors_allowed_origins: Vec<String>,

    /// Seconds to wait for connections to finish after SIGTERM before exiting anyway (0: none).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Public base URL of the rest role, used by the landing pages and the playground.
    /// Unset: the address the rest role binds (0.0.0.0 and :: as localhost).
    #[arg(long, env = "LANDING_REST_URL")]
    pub landing_rest_url: Option<String>,

    /// Public base URL of the mcp role, used in /.well-known/mcp-server and as an allowed host/origin.
    /// Unset: the address the mcp role binds (0.0.0.0 and :: as localhost).
    #[arg(long, env = "MCP_PUBLIC_URL")]
    pub mcp_public_url: Option<String>,

    /// Host names the mcp role answers (comma-separated; DNS-rebinding protection). Loopback
    /// and the host of MCP_PUBLIC_URL are always allowed.
    #[arg(long, env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub mcp_allowed_hosts: Vec<String>,

    /// Browser origins allowed to call the mcp role (comma-separated, e.g. https://app.example.com).
    /// Loopback origins and the origin of MCP_PUBLIC_URL are always allowed.
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Vec<String>,

    /// Most MCP sessions this process holds in memory (initialize beyond: 503 too_many_sessions).
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1000)]
    pub mcp_max_sessions: usize,

    /// Most MCP sessions one client IP holds in this process (initialize beyond: 429 too_many_sessions).
    #[arg(long, env = "MCP_MAX_SESSIONS_PER_IP", default_value_t = 20)]
    pub mcp_max_sessions_per_ip: usize,

    /// Seconds without a request after which an MCP session is closed and its slot freed.
    #[arg(long, env = "MCP_SESSION_IDLE_SECS", default_value_t = 300)]
    pub mcp_session_idle_secs: u64,

    /// Seconds a wait_for_messages call waits when it names no timeout_seconds.
    #[arg(long, env = "MCP_WAIT_DEFAULT_SECS", default_value_t = 50)]
    pub mcp_wait_default_secs: u64,

    /// The longest timeout_seconds a wait_for_messages call may ask for (more is a tool error);
    /// kept below MCP_SESSION_IDLE_SECS.
    #[arg(long, env = "MCP_WAIT_MAX_SECS", default_value_t = 120)]
    pub mcp_wait_max_secs: u64,

    /// Most wait_for_messages calls waiting at once in this process (beyond: tool error server_busy).
    #[arg(long, env = "MCP_MAX_WAITS", default_value_t = 1000)]
    pub mcp_max_waits: usize,

    /// Most wait_for_messages calls waiting at once per client IP (beyond: tool error too_many_streams).
    #[arg(long, env = "MCP_MAX_WAITS_PER_IP", default_value_t = 20)]
    pub mcp_max_waits_per_ip: usize,

    /// Most MCP channel resource subscriptions in this process (beyond: error server_busy).
    #[arg(long, env = "MCP_MAX_SUBSCRIPTIONS", default_value_t = 1000)]
    pub mcp_max_subscriptions: usize,

    /// Most MCP channel resource subscriptions one session holds (beyond: error too_many_subscriptions).
    #[arg(long, env = "MCP_MAX_SUBSCRIPTIONS_PER_SESSION", default_value_t = 20)]
    pub mcp_max_subscriptions_per_session: usize,

    /// Do not run the lifecycle sweeper in this process (run `chantra sweep` elsewhere).
    #[arg(long, env = "NO_SWEEPER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub no_sweeper: bool,

    #[command(flatten)]
    pub lifecycle: LifecycleArgs,

    /// Shared secret for /internal/* between roles (unset: the internal API is off).
    #[arg(long, env = "INTERNAL_API_TOKEN", hide_env_values = true)]
    pub internal_api_token: Option<String>,

    /// Base URL of the channels role's internal API, for an mcp role deployed apart.
    #[arg(long, env = "CHANNELS_INTERNAL_URL")]
    pub channels_internal_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: MigrateAction,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last migration. DESTROYS DATA: the tables it created are dropped.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table and re-apply all migrations. DESTROYS DATA.
    Fresh,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_accept_commas_and_repeats() {
        let cli = Cli::try_parse_from(["chantra", "serve", "--role", "rest,channels", "--role", "rest"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve expected") };
        assert_eq!(RoleArg::expand(&args.roles), vec![Role::Rest, Role::Channels]);
    }

    #[test]
    fn all_expands_to_every_role() {
        let mut each = Role::EACH.to_vec();
        each.sort();
        assert_eq!(RoleArg::expand(&[RoleArg::All]), each);
    }

    #[test]
    fn unknown_role_is_an_error() {
        let err = Cli::try_parse_from(["chantra", "serve", "--role", "bogus"]).unwrap_err();
        assert!(err.to_string().contains("invalid value 'bogus'"), "{err}");
    }
}

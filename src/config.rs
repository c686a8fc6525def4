//! Resolves the command line (flags, env, `.env`) into a checked `Config`.
//!
//! Everything that can be wrong with a deployment's settings is found here,
//! before any listener binds, and reported as one line naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rand::RngCore as _;

use chantra_core::db::{DatabaseConfig, DatabaseKind};
use chantra_core::domain::{DEFAULT_MAX_PAYLOAD_BYTES, Secret};
use chantra_core::payload::{S3Config, StorageConfig};
use chantra_core::service::{ServiceSettings, SweepSettings};
use chantra_nats::{NatsAuth, NatsSettings, NatsTls};

use crate::cli::{DatabaseArgs, FanoutArgs, LifecycleArgs, RoleArg, ServeArgs, StorageArgs, SweepArgs};
use crate::http::landing::LandingSettings;
use crate::http::rate_limit::RateLimit;
use crate::http::serve::ConnectionLimits;
use crate::http::{HttpSettings, SseSettings};
use crate::mcp::{McpSettings, RemoteChannels, SubscriptionSettings, WaitSettings};
use crate::role::Role;

/// PAYLOAD_INLINE_MAX_BYTES with payload files.
pub const DEFAULT_PAYLOAD_INLINE_MAX_BYTES: usize = 4096;

const SECRET_FILE: &str = "token_secret_salt";
const MIN_SECRET_LEN: usize = 16;

/// Bounds GRANT_PURGE_GRACE_SECS so that "now minus the grace" is always a valid time.
const MAX_GRANT_PURGE_GRACE_SECS: u64 = 10 * 365 * 86_400;

/// Everything `serve` needs, each part in the settings type of the
/// component that uses it. `Debug` prints no secret (they are `Secret`s).
#[derive(Debug, Clone)]
pub struct Config {
    pub roles: Vec<Role>,
    pub binds: BTreeMap<Role, SocketAddr>,
    pub backends: Backends,
    pub token_secret: Secret<Vec<u8>>,
    pub service: ServiceSettings,
    pub hub: HubLimits,
    pub http: HttpSettings,
    pub mcp: McpSettings,
    pub landing: LandingSettings,
    /// `None` when this process runs no sweeper.
    pub sweeper: Option<SweepSettings>,
    pub shutdown_grace: Duration,
    /// The public URLs that were configured, and every role's address
    /// (also of roles this process does not run): what [`Config::advertise`]
    /// builds the URLs the API, the pages and MCP discovery give out from.
    pub public: PublicUrls,
    pub addresses: BTreeMap<Role, SocketAddr>,
}

/// The public base URLs set by configuration; `None`: derived from the
/// address the role binds (see [`local_url`]).
#[derive(Debug, Clone, Default)]
pub struct PublicUrls {
    /// CHANNEL_BASE_URL, or https://{CHANNEL_HOSTNAME}.
    pub channel_base: Option<String>,
    /// LANDING_REST_URL.
    pub rest: Option<String>,
    /// MCP_PUBLIC_URL.
    pub mcp: Option<String>,
}

/// The URL a client on this machine opens to reach a socket address: a
/// wildcard bind (0.0.0.0, ::) is reached as `localhost`, any other address as itself.
pub fn local_url(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("http://localhost:{}", addr.port()),
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", addr.port()),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", addr.port()),
    }
}

/// What `chantra sweep` needs: the backends and the lifecycle settings.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub backends: Backends,
    pub service: ServiceSettings,
    pub sweep: SweepSettings,
}

/// The database and the payload store, as every command that serves or sweeps opens them.
#[derive(Debug, Clone)]
pub struct Backends {
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    /// Apply pending migrations at startup (otherwise refuse an outdated schema).
    pub auto_migrate: bool,
    /// Days after which S3 objects expire by a bucket lifecycle rule.
    pub s3_expiry_days: u32,
    /// The NATS notice bus (FANOUT_URL); `None`: LISTEN/NOTIFY, or in-process on SQLite.
    pub nats: Option<NatsSettings>,
}

/// The fan-out hub's bounds, as `Hub::with_limits` takes them.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Live events buffered per channel.
    pub buffer: usize,
    /// Live frames above this many bytes travel through the hub as ids only.
    pub live_frame_max: usize,
    /// Bytes of replay frames held at once by all readers of the process.
    pub replay_memory: u64,
}

/// MCP_PUBLIC_URL when set (checked), else `None`.
fn mcp_public_url(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let Some(value) = args.mcp_public_url.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let public_url = value.trim_end_matches('/').to_owned();
    url::Url::parse(&public_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| anyhow::anyhow!("MCP_PUBLIC_URL must be an http(s) URL such as https://mcp.example.com"))?;
    Ok(Some(public_url))
}

/// The mcp role's settings; `public_url` and the host and origin it adds to
/// the allowed ones are filled by [`Config::advertise`].
fn mcp_settings(args: &ServeArgs, trusted_proxies: &[ipnet::IpNet], roles: &[Role]) -> anyhow::Result<McpSettings> {
    let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].iter().map(|h| h.to_string()).collect();
    allowed_hosts.extend(args.mcp_allowed_hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()));
    allowed_hosts.dedup();
    let mut allowed_origins: Vec<String> =
        ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"].iter().map(|o| o.to_string()).collect();
    for origin in args.mcp_allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        if !origin.contains("://") {
            bail!("MCP_ALLOWED_ORIGINS: `{origin}` needs a scheme, e.g. https://{origin}");
        }
        allowed_origins.push(origin.trim_end_matches('/').to_owned());
    }
    // An mcp role deployed apart from the channels role reads through its internal API.
    let remote_channels = match (&args.channels_internal_url, internal_api_token(args)?) {
        (Some(url), Some(token)) if !roles.contains(&Role::Channels) => {
            Some(RemoteChannels { url: url.clone(), token })
        }
        _ => None,
    };
    Ok(McpSettings {
        public_url: String::new(),
        allowed_hosts,
        allowed_origins,
        max_sessions: at_least_one("MCP_MAX_SESSIONS", args.mcp_max_sessions)?,
        max_sessions_per_ip: at_least_one("MCP_MAX_SESSIONS_PER_IP", args.mcp_max_sessions_per_ip)?,
        session_idle: Duration::from_secs(at_least_one("MCP_SESSION_IDLE_SECS", args.mcp_session_idle_secs)?),
        max_payload_bytes: at_least_one("MAX_PAYLOAD_BYTES", args.max_payload_bytes)?,
        page_max_bytes: at_least_one("PAGE_MAX_BYTES", args.page_max_bytes)?,
        keepalive: Duration::from_secs(at_least_one("SSE_KEEPALIVE_SECS", args.sse_keepalive_secs)?),
        trusted_proxies: trusted_proxies.to_vec(),
        remote_channels,
        waits: wait_settings(args)?,
        subscriptions: SubscriptionSettings {
            max_subscriptions: at_least_one("MCP_MAX_SUBSCRIPTIONS", args.mcp_max_subscriptions)?,
            max_per_session: at_least_one("MCP_MAX_SUBSCRIPTIONS_PER_SESSION", args.mcp_max_subscriptions_per_session)?,
        },
    })
}

/// MCP_WAIT_DEFAULT_SECS ≤ MCP_WAIT_MAX_SECS, MCP_MAX_WAITS, MCP_MAX_WAITS_PER_IP.
fn wait_settings(args: &ServeArgs) -> anyhow::Result<WaitSettings> {
    let default = at_least_one("MCP_WAIT_DEFAULT_SECS", args.mcp_wait_default_secs)?;
    let max = at_least_one("MCP_WAIT_MAX_SECS", args.mcp_wait_max_secs)?;
    if default > max {
        bail!("MCP_WAIT_DEFAULT_SECS ({default}) must not be more than MCP_WAIT_MAX_SECS ({max})");
    }
    // rmcp closes a session that hears nothing for MCP_SESSION_IDLE_SECS,
    // waiting call and all: waits stay shorter than that.
    let max = max.min(args.mcp_session_idle_secs.saturating_sub(1)).max(1);
    let default = default.min(max);
    Ok(WaitSettings {
        default_timeout: Duration::from_secs(default),
        max_timeout: Duration::from_secs(max),
        max_waits: at_least_one("MCP_MAX_WAITS", args.mcp_max_waits)?,
        max_waits_per_ip: at_least_one("MCP_MAX_WAITS_PER_IP", args.mcp_max_waits_per_ip)?,
        replay_max: at_least_one("SSE_REPLAY_MAX", args.sse_replay_max)?,
    })
}

/// INTERNAL_API_TOKEN (empty: unset).
fn internal_api_token(args: &ServeArgs) -> anyhow::Result<Option<Secret<String>>> {
    let token = args.internal_api_token.clone().filter(|t| !t.is_empty());
    if token.as_ref().is_some_and(|t| t.len() < MIN_SECRET_LEN) {
        bail!("INTERNAL_API_TOKEN must be at least {MIN_SECRET_LEN} characters");
    }
    Ok(token.map(Secret::new))
}

/// DATABASE_URL and DB_* as the database layer takes them.
pub fn database_config(args: &DatabaseArgs) -> anyhow::Result<DatabaseConfig> {
    let url = args.database_url.trim().to_owned();
    let kind = DatabaseKind::of(&url)?;
    if kind == DatabaseKind::Sqlite {
        ensure_sqlite_dir(&url)?;
    }
    Ok(DatabaseConfig {
        url,
        acquire_timeout: Duration::from_secs(at_least_one("DB_ACQUIRE_TIMEOUT_SECS", args.db_acquire_timeout_secs)?),
        max_connections: match args.db_max_connections {
            Some(connections) => at_least_one("DB_MAX_CONNECTIONS", connections)?,
            // SQLite writes one transaction at a time; more connections add
            // threads and page caches (up to 2 MB each, filled by channel
            // lookups), not throughput: 10,000 channels × 1 reader cost
            // 10.7 KiB per stream with 16, 8.6 with 4, publishing unchanged.
            None if kind == DatabaseKind::Sqlite => 4,
            None => 16,
        },
    })
}

/// DATA_DIR and S3_* as the payload layer takes them.
pub fn storage_config(args: &StorageArgs) -> anyhow::Result<StorageConfig> {
    let Some(endpoint) = args.s3_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(StorageConfig::Filesystem { root: args.data_dir.join("payloads") });
    };
    let parsed =
        url::Url::parse(endpoint).map_err(|e| anyhow::anyhow!("S3_ENDPOINT is not a valid URL ({e}): {endpoint}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("S3_ENDPOINT must be an http:// or https:// URL (got `{endpoint}`)");
    }
    let access_key = args.s3_access_key.clone().filter(|k| !k.is_empty());
    let secret_key = args.s3_secret_key.clone().filter(|k| !k.is_empty());
    let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
        bail!("S3_ACCESS_KEY and S3_SECRET_KEY are required when S3_ENDPOINT is set");
    };
    if !valid_bucket_name(&args.s3_bucket) {
        bail!(
            "S3_BUCKET `{}` is not a valid bucket name (3-63 lowercase letters, digits, dots, hyphens)",
            args.s3_bucket
        );
    }
    Ok(StorageConfig::S3(S3Config {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        bucket: args.s3_bucket.clone(),
        region: args.s3_region.clone(),
        access_key,
        secret_key: Secret::new(secret_key),
        timeout: Duration::from_secs(at_least_one("S3_TIMEOUT_SECS", args.s3_timeout_secs)?),
    }))
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let roles = RoleArg::expand(&args.roles);
        if roles.is_empty() {
            bail!("--role (CHANTRA_ROLES) names no role; use rest, mcp, channels, landing or all");
        }
        let name = roles.iter().map(|role| role.name()).collect::<Vec<_>>().join("+");
        let backends =
            backends(&args.database, &args.storage, &args.fanout, args.auto_migrate, &args.lifecycle, &name)?;
        let binds = roles.iter().map(|role| (*role, args.binds.addr(*role))).collect();
        let addresses = Role::EACH.iter().map(|role| (*role, args.binds.addr(*role))).collect();
        let public = PublicUrls {
            channel_base: channel_base_url(args)?,
            rest: match args.landing_rest_url.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                Some(url) => Some(public_url("LANDING_REST_URL", url)?),
                None => None,
            },
            mcp: mcp_public_url(args)?,
        };
        let token_secret = resolve_token_secret(args, backends.database.kind())?;
        let service = service_settings(args, &args.lifecycle, &backends.storage)?;
        let rate_limit = match (args.rate_limit_per_second, args.rate_limit_burst) {
            (0, _) => None,
            (_, 0) => bail!("RATE_LIMIT_BURST must be at least 1 (set RATE_LIMIT_PER_SECOND=0 to turn limiting off)"),
            (per_second, burst) => Some(RateLimit { per_second, burst }),
        };
        let keepalive = Duration::from_secs(at_least_one("SSE_KEEPALIVE_SECS", args.sse_keepalive_secs)?);
        let replay_max = at_least_one("SSE_REPLAY_MAX", args.sse_replay_max)?;
        let trusted_proxies = trusted_proxies(&args.trusted_proxies)?;
        if let Some(url) = &args.channels_internal_url {
            url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("CHANNELS_INTERNAL_URL is not a valid URL ({e}): {url}"))?;
        }
        let http = HttpSettings {
            request_timeout: Duration::from_secs(at_least_one("REQUEST_TIMEOUT_SECS", args.request_timeout_secs)?),
            rate_limit,
            trusted_proxies: trusted_proxies.clone(),
            connection: ConnectionLimits {
                header_read_timeout: Duration::from_secs(at_least_one(
                    "HEADER_READ_TIMEOUT_SECS",
                    args.header_read_timeout_secs,
                )?),
                write_timeout: Duration::from_secs(at_least_one("WRITE_TIMEOUT_SECS", args.write_timeout_secs)?),
                lean_streams: args.lean_streams,
            },
            metrics: args.metrics_enabled,
            cors_allowed_origins: cors_origins(&args.cors_allowed_origins)?,
            max_payload_bytes: service.max_payload_bytes,
            internal_api_token: internal_api_token(args)?,
            sse: SseSettings {
                keepalive,
                retry_ms: args.sse_retry_ms,
                replay_max,
                min_read_rate: at_least_one("SSE_MIN_READ_RATE", args.sse_min_read_rate)?,
                max_streams: at_least_one("MAX_STREAMS", args.max_streams)?,
                max_streams_per_ip: at_least_one("MAX_STREAMS_PER_IP", args.max_streams_per_ip)?,
            },
        };
        let hub = HubLimits {
            buffer: at_least_one("SSE_BUFFER", args.sse_buffer)?,
            live_frame_max: args.sse_live_frame_max_bytes,
            replay_memory: at_least_one("SSE_REPLAY_MEMORY_BYTES", args.sse_replay_memory_bytes)?,
        };
        let mcp = mcp_settings(args, &trusted_proxies, &roles)?;
        let landing = LandingSettings {
            landing_url: String::new(),
            rest_url: String::new(),
            channel_base_url: String::new(),
            mcp_public_url: String::new(),
            channel_idle_days: service.channel_idle.num_days(),
            max_payload_bytes: service.max_payload_bytes,
            replay_max,
            keepalive,
        };
        let mut config = Config {
            roles,
            binds,
            backends,
            token_secret,
            service,
            hub,
            http,
            mcp,
            landing,
            sweeper: if args.no_sweeper { None } else { Some(sweep_settings(&args.lifecycle)?) },
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            public,
            addresses,
        };
        let addresses = config.addresses.clone();
        config.advertise(&addresses);
        Ok(config)
    }

    /// Sets the URLs the API (channel URLs), the landing pages (quickstart,
    /// playground) and MCP discovery give out: each configured public URL,
    /// else the address its role listens on (`addresses`: after binding, the
    /// real ports, so `127.0.0.1:0` gives a working URL). A laptop that moves
    /// a role to another port then still gets URLs that work; a deployment
    /// behind an edge proxy sets the public URLs, which always win.
    pub fn advertise(&mut self, addresses: &BTreeMap<Role, SocketAddr>) {
        let url_of = |role: Role, configured: &Option<String>| {
            configured.clone().unwrap_or_else(|| {
                addresses.get(&role).or_else(|| self.addresses.get(&role)).map_or_else(String::new, |a| local_url(*a))
            })
        };
        let channel_base = url_of(Role::Channels, &self.public.channel_base);
        let rest = url_of(Role::Rest, &self.public.rest);
        let mcp = url_of(Role::Mcp, &self.public.mcp);
        let landing = url_of(Role::Landing, &None);
        self.service.channel_base_url = channel_base.clone();
        self.landing.channel_base_url = channel_base;
        self.landing.rest_url = rest;
        self.landing.landing_url = landing;
        self.landing.mcp_public_url = mcp.clone();
        // The mcp role answers requests for its own public host and origin
        // (DNS-rebinding protection); loopback is always allowed, on any port.
        let host = url::Url::parse(&mcp).ok().and_then(|u| Some((u.host_str()?.to_owned(), u.origin())));
        if let Some((host, origin)) = host
            && !["localhost", "127.0.0.1", "[::1]"].contains(&host.as_str())
        {
            let origin = origin.ascii_serialization();
            if !self.mcp.allowed_origins.contains(&origin) {
                self.mcp.allowed_origins.push(origin);
            }
            if !self.mcp.allowed_hosts.contains(&host) {
                self.mcp.allowed_hosts.push(host);
            }
        }
        self.mcp.public_url = mcp;
    }
}

impl SweepConfig {
    pub fn from_args(args: &SweepArgs) -> anyhow::Result<Self> {
        let lifecycle = &args.lifecycle;
        let (grant_purge_grace, channel_idle) = lifecycle_durations(lifecycle)?;
        let service = ServiceSettings {
            // Sweeping publishes nothing, reads no page and mints no URL: only
            // the two lifecycle durations are used; the rest are never read.
            channel_base_url: String::new(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            payload_inline_max_bytes: 0,
            page_max_bytes: u64::MAX,
            max_grants_per_channel: u64::MAX,
            grant_purge_grace,
            channel_idle,
        };
        Ok(Self {
            backends: backends(&args.database, &args.storage, &args.fanout, args.auto_migrate, lifecycle, "sweep")?,
            service,
            sweep: sweep_settings(lifecycle)?,
        })
    }
}

fn backends(
    database: &DatabaseArgs,
    storage: &StorageArgs,
    fanout: &FanoutArgs,
    auto_migrate: bool,
    lifecycle: &LifecycleArgs,
    process: &str,
) -> anyhow::Result<Backends> {
    let database = database_config(database)?;
    let nats = nats_settings(fanout, database.kind(), process)?;
    Ok(Backends {
        database,
        storage: storage_config(storage)?,
        auto_migrate,
        s3_expiry_days: at_least_one("S3_EXPIRY_DAYS", lifecycle.s3_expiry_days)?,
        nats,
    })
}

/// `%xx` escapes of a URL's user or password, decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// FANOUT_URL and FANOUT_NATS_* as the NATS bus takes them; `None` when
/// FANOUT_URL is unset. Error messages never repeat a URL or a secret.
fn nats_settings(args: &FanoutArgs, kind: DatabaseKind, process: &str) -> anyhow::Result<Option<NatsSettings>> {
    let Some(url) = args.fanout_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if kind == DatabaseKind::Sqlite {
        bail!(
            "FANOUT_URL needs PostgreSQL: with SQLite Chantra is one process and fans out in-process \
             (unset FANOUT_URL, or use a postgres:// DATABASE_URL)"
        );
    }
    // Credentials in a URL (`nats://user:password@…`, `nats://token@…`) are
    // taken out of it, so the client never holds (nor logs) them in an address.
    let mut servers = Vec::new();
    let mut url_credentials: Option<(String, Option<String>)> = None;
    for (i, server) in url.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let scheme = server.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("nats" | "tls")) {
            bail!("FANOUT_URL: server {} must be a nats:// or tls:// URL", i + 1);
        }
        let mut parsed = url::Url::parse(server)
            .map_err(|e| anyhow::anyhow!("FANOUT_URL: server {} is not a valid URL ({e})", i + 1))?;
        if !parsed.username().is_empty() {
            let decode = |s: &str| percent_decode(s);
            let found = (decode(parsed.username()), parsed.password().map(decode));
            if url_credentials.as_ref().is_some_and(|known| *known != found) {
                bail!("FANOUT_URL: every server must carry the same credentials");
            }
            url_credentials = Some(found);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        servers.push(parsed.to_string());
    }
    if servers.is_empty() {
        bail!("FANOUT_URL names no NATS server");
    }
    let given = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let (mut user, mut password) = (given(&args.fanout_nats_user), given(&args.fanout_nats_password));
    let (mut token, seed) = (given(&args.fanout_nats_token), given(&args.fanout_nats_nkey_seed));
    match url_credentials {
        Some(_) if user.is_some() || password.is_some() || token.is_some() => {
            bail!("FANOUT_URL carries credentials and FANOUT_NATS_USER/PASSWORD/TOKEN are set too: use one")
        }
        Some((name, Some(secret))) => (user, password) = (Some(name), Some(secret)),
        Some((name, None)) => token = Some(name),
        None => {}
    }
    let creds = args.fanout_nats_creds_file.clone();
    let methods = [user.is_some() || password.is_some(), token.is_some(), seed.is_some(), creds.is_some()];
    if methods.iter().filter(|given| **given).count() > 1 {
        bail!(
            "FANOUT_NATS_USER/PASSWORD, FANOUT_NATS_TOKEN, FANOUT_NATS_NKEY_SEED and FANOUT_NATS_CREDS_FILE \
             are alternatives: set one"
        );
    }
    let auth = match (user, password, token, seed, creds) {
        (Some(user), Some(password), ..) => NatsAuth::UserPassword { user, password: Secret::new(password) },
        (Some(_), None, ..) | (None, Some(_), ..) => {
            bail!("FANOUT_NATS_USER and FANOUT_NATS_PASSWORD go together")
        }
        (_, _, Some(token), ..) => NatsAuth::Token(Secret::new(token)),
        (_, _, _, Some(seed), _) => NatsAuth::NKey(Secret::new(seed)),
        (_, _, _, _, Some(path)) => NatsAuth::CredsFile(path),
        _ => NatsAuth::None,
    };
    let client_cert = match (&args.fanout_nats_tls_cert_file, &args.fanout_nats_tls_key_file) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => bail!("FANOUT_NATS_TLS_CERT_FILE and FANOUT_NATS_TLS_KEY_FILE go together"),
    };
    let prefix = args.fanout_nats_subject_prefix.trim();
    let valid_token = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !prefix.split('.').all(valid_token) {
        bail!("FANOUT_NATS_SUBJECT_PREFIX must be dot-separated tokens of letters, digits, - and _ (got `{prefix}`)");
    }
    let mut settings = NatsSettings::new(servers);
    settings.auth = auth;
    settings.tls =
        NatsTls { required: args.fanout_nats_tls_required, ca_file: args.fanout_nats_tls_ca_file.clone(), client_cert };
    settings.subject_prefix = prefix.to_owned();
    settings.poll_interval = Duration::from_millis(at_least_one("FANOUT_POLL_MS", args.fanout_poll_ms)?);
    settings.outbox = at_least_one("FANOUT_OUTBOX", args.fanout_outbox)?;
    settings.name = format!("chantra-{process}");
    Ok(Some(settings))
}

fn service_settings(
    args: &ServeArgs,
    lifecycle: &LifecycleArgs,
    storage: &StorageConfig,
) -> anyhow::Result<ServiceSettings> {
    let (grant_purge_grace, channel_idle) = lifecycle_durations(lifecycle)?;
    Ok(ServiceSettings {
        // Filled by Config::advertise.
        channel_base_url: String::new(),
        max_payload_bytes: at_least_one("MAX_PAYLOAD_BYTES", args.max_payload_bytes)?,
        payload_inline_max_bytes: payload_inline_max_bytes(args, storage),
        page_max_bytes: at_least_one("PAGE_MAX_BYTES", args.page_max_bytes)?,
        max_grants_per_channel: at_least_one("MAX_GRANTS_PER_CHANNEL", args.max_grants_per_channel)?,
        grant_purge_grace,
        channel_idle,
    })
}

/// PAYLOAD_INLINE_MAX_BYTES, by default 4096 with payload files (the
/// embedded default: SQLite writes them in the commit it makes anyway, one
/// sync for a whole batch instead of a file and two syncs each; ntfy keeps
/// messages up to 4,096 bytes in its SQLite cache the same way) and 0 with
/// S3 (payloads stay in the object store the deployment chose).
fn payload_inline_max_bytes(args: &ServeArgs, storage: &StorageConfig) -> usize {
    args.payload_inline_max_bytes.unwrap_or(match storage {
        StorageConfig::Filesystem { .. } => DEFAULT_PAYLOAD_INLINE_MAX_BYTES,
        StorageConfig::S3(_) => 0,
    })
}

/// GRANT_PURGE_GRACE_SECS and CHANNEL_IDLE_DAYS, the durations the sweeper reads.
fn lifecycle_durations(lifecycle: &LifecycleArgs) -> anyhow::Result<(chrono::Duration, chrono::Duration)> {
    if lifecycle.grant_purge_grace_secs > MAX_GRANT_PURGE_GRACE_SECS {
        bail!("GRANT_PURGE_GRACE_SECS must be at most {MAX_GRANT_PURGE_GRACE_SECS} (ten years)");
    }
    let grant_purge_grace = chrono::Duration::seconds(lifecycle.grant_purge_grace_secs as i64);
    let idle_days = at_least_one("CHANNEL_IDLE_DAYS", lifecycle.channel_idle_days)?;
    Ok((grant_purge_grace, chrono::Duration::days(i64::from(idle_days))))
}

/// IPs or CIDRs; empty entries (an empty variable) mean none.
fn trusted_proxies(values: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow::anyhow!("TRUSTED_PROXIES: `{v}` is not an IP address or CIDR range"))
        })
        .collect()
}

fn public_url(setting: &str, value: &str) -> anyhow::Result<String> {
    let value = value.trim().trim_end_matches('/');
    let valid = url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !valid {
        bail!("{setting} must be an http(s) URL such as https://api.example.com (got `{value}`)");
    }
    Ok(value.to_owned())
}

fn sweep_settings(args: &LifecycleArgs) -> anyhow::Result<SweepSettings> {
    Ok(SweepSettings {
        interval: Duration::from_secs(at_least_one("SWEEP_INTERVAL_SECS", args.sweep_interval_secs)?),
        batch: at_least_one("SWEEP_BATCH", args.sweep_batch)?,
        orphan_grace: chrono::Duration::seconds(args.orphan_grace_secs as i64),
    })
}

/// The one rule for count, size and duration settings where zero would
/// mean nothing works (a 0 s timeout, a 0-byte budget): zero is refused at
/// startup with the setting's name, never silently raised. Settings where
/// 0 has a meaning say so in their --help (RATE_LIMIT_PER_SECOND=0: off).
fn at_least_one<T: PartialEq + Default>(setting: &str, value: T) -> anyhow::Result<T> {
    if value == T::default() {
        bail!("{setting} must be at least 1");
    }
    Ok(value)
}

/// `*` (or nothing) allows any origin; otherwise each entry must be an origin URL.
fn cors_origins(values: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    let values: Vec<String> =
        values.iter().map(|v| v.trim().trim_end_matches('/').to_owned()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() || values.iter().any(|v| v == "*") {
        return Ok(None);
    }
    for origin in &values {
        let valid = url::Url::parse(origin).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.path() == "/");
        if !valid {
            bail!("CORS_ALLOWED_ORIGINS: `{origin}` is not an origin such as https://chantra.example.com");
        }
    }
    Ok(Some(values))
}

/// CHANNEL_BASE_URL, else https://{CHANNEL_HOSTNAME}, else `None` (derived from the bind).
fn channel_base_url(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if let Some(base) = args.channel_base_url.as_deref().filter(|b| !b.is_empty()) {
        let parsed =
            url::Url::parse(base).map_err(|e| anyhow::anyhow!("CHANNEL_BASE_URL is not a valid URL ({e}): {base}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            bail!("CHANNEL_BASE_URL must be an http(s) URL such as http://localhost:8070 (got `{base}`)");
        }
        return Ok(Some(base.trim_end_matches('/').to_owned()));
    }
    if let Some(host) = args.channel_hostname.as_deref().filter(|h| !h.is_empty()) {
        let candidate = format!("https://{host}");
        let valid = !host.contains('/') && url::Url::parse(&candidate).is_ok_and(|u| u.host().is_some());
        if !valid {
            bail!("CHANNEL_HOSTNAME must be a bare host name such as chantra.example.com (got `{host}`)");
        }
        return Ok(Some(candidate));
    }
    Ok(None)
}

/// TOKEN_SECRET_SALT from the environment; in embedded mode a generated one
/// persisted under DATA_DIR (so tokens stay valid across restarts).
fn resolve_token_secret(args: &ServeArgs, kind: DatabaseKind) -> anyhow::Result<Secret<Vec<u8>>> {
    if let Some(secret) = args.token_secret_salt.as_deref().filter(|s| !s.is_empty()) {
        if secret.len() < MIN_SECRET_LEN {
            bail!(
                "TOKEN_SECRET_SALT must be at least {MIN_SECRET_LEN} characters (generate one with `openssl rand -hex 32`)"
            );
        }
        return Ok(Secret::new(secret.as_bytes().to_vec()));
    }
    if kind == DatabaseKind::Postgres {
        bail!(
            "TOKEN_SECRET_SALT is required with a PostgreSQL DATABASE_URL (generate one with `openssl rand -hex 32`)"
        );
    }
    load_or_generate_secret(&args.storage.data_dir).map(Secret::new)
}

fn load_or_generate_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(SECRET_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= MIN_SECRET_LEN {
            return Ok(existing.as_bytes().to_vec());
        }
        bail!("{} is shorter than {MIN_SECRET_LEN} characters; delete it or set TOKEN_SECRET_SALT", path.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("DATA_DIR: cannot create {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    write_private_file(&path, &secret).with_context(|| format!("DATA_DIR: cannot write {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "TOKEN_SECRET_SALT is not set: generated one and saved it; keep this file, or every issued token stops working"
    );
    Ok(secret.into_bytes())
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

/// Creates the directory of a SQLite file URL so `mode=rwc` can create the file.
fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(());
    }
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("DATABASE_URL: cannot create directory {}", dir.display()))?;
    }
    Ok(())
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_database_schemes() {
        let err = DatabaseKind::of("mysql://x").unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        use clap::Parser as _;
        let args = ["chantra", "serve"].iter().chain(extra);
        match crate::cli::Cli::try_parse_from(args).unwrap().command {
            crate::cli::Command::Serve(args) => *args,
            _ => unreachable!("serve was requested"),
        }
    }

    #[test]
    fn debug_prints_no_secret() {
        let (salt, s3_secret, internal) =
            ("salt-0123456789abcdef-salt", "s3-secret-0123456789abcdef", "internal-0123456789abcdef");
        let config = Config::from_args(&serve_args(&[
            "--database-url",
            "sqlite::memory:",
            "--token-secret-salt",
            salt,
            "--s3-endpoint",
            "http://127.0.0.1:1",
            "--s3-access-key",
            "access",
            "--s3-secret-key",
            s3_secret,
            "--internal-api-token",
            internal,
            "--channels-internal-url",
            "http://127.0.0.1:2",
            "--role",
            "mcp",
        ]))
        .unwrap();
        assert!(config.mcp.remote_channels.is_some(), "the mcp role reads through the internal API");
        let printed = format!("{config:?}");
        for secret in [salt, s3_secret, internal] {
            assert!(!printed.contains(secret), "Debug printed a secret:\n{printed}");
        }
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn zero_is_refused_naming_the_setting() {
        for (flag, setting) in [
            ("--max-payload-bytes", "MAX_PAYLOAD_BYTES"),
            ("--mcp-max-sessions", "MCP_MAX_SESSIONS"),
            ("--sse-buffer", "SSE_BUFFER"),
            ("--max-streams", "MAX_STREAMS"),
            ("--channel-idle-days", "CHANNEL_IDLE_DAYS"),
            ("--sweep-batch", "SWEEP_BATCH"),
        ] {
            let salt = "salt-0123456789abcdef-salt";
            let args = serve_args(&["--database-url", "sqlite::memory:", "--token-secret-salt", salt, flag, "0"]);
            let err = Config::from_args(&args).unwrap_err().to_string();
            assert_eq!(err, format!("{setting} must be at least 1"));
        }
    }

    #[test]
    fn small_payloads_are_kept_in_the_database_unless_the_store_is_s3() {
        let base = ["--database-url", "sqlite::memory:", "--token-secret-salt", "salt-0123456789abcdef-salt"];
        let s3 = ["--s3-endpoint", "http://127.0.0.1:1", "--s3-access-key", "a", "--s3-secret-key", "s"];
        let inline = |extra: &[&str]| {
            Config::from_args(&serve_args(&[&base[..], extra].concat())).unwrap().service.payload_inline_max_bytes
        };
        assert_eq!(inline(&[]), DEFAULT_PAYLOAD_INLINE_MAX_BYTES);
        assert_eq!(inline(&s3), 0);
        assert_eq!(inline(&[&s3[..], &["--payload-inline-max-bytes", "512"]].concat()), 512);
        assert_eq!(inline(&["--payload-inline-max-bytes", "0"]), 0);
    }

    #[test]
    fn sqlite_gets_a_smaller_pool_unless_told() {
        let pool = |url: &str, extra: &[&str]| {
            let args = serve_args(&[&["--database-url", url][..], extra].concat());
            database_config(&args.database).unwrap().max_connections
        };
        assert_eq!(pool("postgres://db/chantra", &[]), 16);
        assert_eq!(pool("sqlite::memory:", &[]), 4);
        assert_eq!(pool("sqlite::memory:", &["--db-max-connections", "9"]), 9);
        let args = serve_args(&["--database-url", "sqlite::memory:", "--db-max-connections", "0"]);
        assert_eq!(database_config(&args.database).unwrap_err().to_string(), "DB_MAX_CONNECTIONS must be at least 1");
    }

    #[test]
    fn wait_timeouts_stay_within_bounds() {
        let salt = "salt-0123456789abcdef-salt";
        let base = ["--database-url", "sqlite::memory:", "--token-secret-salt", salt];
        let config = Config::from_args(&serve_args(&base)).unwrap();
        assert_eq!(config.mcp.waits.default_timeout, Duration::from_secs(50));
        assert_eq!(config.mcp.waits.max_timeout, Duration::from_secs(120));
        let args = serve_args(&[&base[..], &["--mcp-wait-default-secs", "200"]].concat());
        let err = Config::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("MCP_WAIT_DEFAULT_SECS (200) must not be more than MCP_WAIT_MAX_SECS (120)"), "{err}");
        // Waits end before rmcp closes the idle session.
        let args = serve_args(&[&base[..], &["--mcp-session-idle-secs", "30"]].concat());
        let waits = Config::from_args(&args).unwrap().mcp.waits;
        assert_eq!((waits.default_timeout, waits.max_timeout), (Duration::from_secs(29), Duration::from_secs(29)));
    }

    #[test]
    fn mcp_answers_the_host_it_advertises() {
        let base = ["--database-url", "sqlite::memory:", "--token-secret-salt", "salt-0123456789abcdef-salt"];
        let config = |extra: &[&str]| Config::from_args(&serve_args(&[&base[..], extra].concat())).unwrap();
        let public = config(&["--mcp-public-url", "https://mcp.example.test/"]).mcp;
        assert_eq!(public.public_url, "https://mcp.example.test");
        assert!(public.allowed_hosts.contains(&"mcp.example.test".to_owned()), "{:?}", public.allowed_hosts);
        assert!(public.allowed_origins.contains(&"https://mcp.example.test".to_owned()));
        // No public URL: the bind address, allowed as a host too (loopback always is).
        let bound = config(&["--mcp-addr", "192.0.2.7:8090"]).mcp;
        assert_eq!(bound.public_url, "http://192.0.2.7:8090");
        assert!(bound.allowed_hosts.contains(&"192.0.2.7".to_owned()), "{:?}", bound.allowed_hosts);
        let loopback = config(&[]).mcp;
        assert_eq!(loopback.public_url, "http://127.0.0.1:8090");
        assert_eq!(loopback.allowed_hosts, ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("chantra"));
        assert!(!valid_bucket_name("Chantra"));
        assert!(!valid_bucket_name("ab"));
    }

    #[test]
    fn fanout_url_selects_nats_on_postgres_only() {
        let pg = ["--database-url", "postgres://u@127.0.0.1/db", "--token-secret-salt", "salt-0123456789abcdef-salt"];
        let with = |extra: &[&str]| Config::from_args(&serve_args(&[&pg[..], extra].concat()));
        let none = with(&[]).unwrap();
        assert!(none.backends.nats.is_none(), "unset FANOUT_URL: LISTEN/NOTIFY");

        let (password, token) = ("nats-password-0123456789", "nats-token-0123456789");
        let url = format!("nats://app:{password}@127.0.0.1:4222, tls://app:{password}@127.0.0.1:4223");
        let config = with(&["--fanout-url", &url, "--role", "channels"]).unwrap();
        let nats = config.backends.nats.as_ref().expect("NATS");
        assert_eq!(nats.servers.len(), 2);
        assert_eq!(nats.servers[0].expose(), "nats://127.0.0.1:4222", "credentials are taken out of the URL");
        assert!(
            matches!(&nats.auth, NatsAuth::UserPassword { user, password: p } if user == "app" && p.expose() == password)
        );
        assert_eq!((nats.subject_prefix.as_str(), nats.name.as_str()), ("chantra", "chantra-channels"));
        let printed = format!("{config:?}");
        assert!(!printed.contains(password), "Debug printed the URL's password:\n{printed}");
        let config = with(&["--fanout-url", "nats://t%40ken@127.0.0.1:4222"]).unwrap();
        let nats = config.backends.nats.as_ref().unwrap();
        assert!(matches!(&nats.auth, NatsAuth::Token(t) if t.expose() == "t@ken"), "a URL's lone user is a token");
        assert_eq!(nats.servers[0].expose(), "nats://127.0.0.1:4222");
        let config = with(&["--fanout-url", "nats://127.0.0.1:4222", "--fanout-nats-token", token]).unwrap();
        assert!(matches!(config.backends.nats.as_ref().unwrap().auth, NatsAuth::Token(_)));
        assert!(!format!("{config:?}").contains(token));

        for (extra, needle) in [
            (vec!["--fanout-url", "http://127.0.0.1:4222"], "nats:// or tls://"),
            (vec!["--fanout-url", "nats://a:b@127.0.0.1", "--fanout-nats-token", "t"], "use one"),
            (vec!["--fanout-url", "nats://a:b@127.0.0.1,nats://a:c@127.0.0.2"], "same credentials"),
            (vec!["--fanout-url", "nats://127.0.0.1", "--fanout-nats-user", "app"], "go together"),
            (
                vec!["--fanout-url", "nats://127.0.0.1", "--fanout-nats-token", "t", "--fanout-nats-nkey-seed", "s"],
                "set one",
            ),
            (vec!["--fanout-url", "nats://127.0.0.1", "--fanout-nats-tls-cert-file", "c.pem"], "go together"),
            (vec!["--fanout-url", "nats://127.0.0.1", "--fanout-nats-subject-prefix", "a.*"], "SUBJECT_PREFIX"),
            (vec!["--fanout-url", "nats://127.0.0.1", "--fanout-poll-ms", "0"], "FANOUT_POLL_MS"),
        ] {
            let err = with(&extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
        let sqlite = serve_args(&["--database-url", "sqlite::memory:", "--fanout-url", "nats://127.0.0.1:4222"]);
        let err = Config::from_args(&sqlite).unwrap_err().to_string();
        assert!(err.contains("FANOUT_URL needs PostgreSQL"), "{err}");
    }
}

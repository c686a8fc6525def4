//! `Application::build` does everything `main` needs before serving: it
//! connects the database, checks or applies the schema, opens the payload
//! store, sets up fan-out, starts the supervised background tasks (all of
//! them, by name, in [`start_tasks`]) and binds one listener per role.
//!
//! Shutdown is one `CancellationToken`: `run` cancels it when its shutdown
//! future resolves, and the servers, MCP sessions and the background tasks
//! all watch it; at the same moment `run` closes the fan-out hub, which ends
//! every open reader stream (a stream does not watch the token itself: on
//! every delivery to every reader, that cost a trip through its lock). Tests call exactly this with `127.0.0.1:0`
//! addresses and read back the bound ports.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Backends, Config, SweepConfig};
use crate::http;
use crate::http::rate_limit::{self, ClientLimiter};
use crate::http::streams::StreamSlots;
use crate::role::Role;
use crate::state::{AppParts, AppState};
use chantra_core::clock::Clock;
use chantra_core::db::DatabaseKind;
use chantra_core::domain::TokenHasher;
use chantra_core::fanout::{Fanout, Hub, NoticeBus, PostgresBus};
use chantra_core::payload::PayloadStore;
use chantra_core::service::{COMMIT_WRITER, Service};
use chantra_core::supervisor::{Job, Tasks};
use chantra_core::{db, payload};
use sea_orm::DatabaseConnection;

pub struct Application {
    state: AppState,
    listeners: BTreeMap<Role, TcpListener>,
    /// SHUTDOWN_GRACE_SECS.
    shutdown_grace: std::time::Duration,
    /// Each bound role's per-client rate limiter (none when RATE_LIMIT is off).
    rate_limits: BTreeMap<Role, ClientLimiter>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Clock::system()).await
    }

    pub async fn build_with_clock(mut config: Config, clock: Clock) -> anyhow::Result<Self> {
        let (db, store) = open_backends(&config.backends).await?;
        let mut listeners = BTreeMap::new();
        for (role, addr) in &config.binds {
            let listener =
                bind(*addr).with_context(|| format!("{}_ADDR: cannot bind {addr}", role.name().to_uppercase()))?;
            listeners.insert(*role, listener);
        }
        // URLs given out follow the ports actually bound (port 0 resolved).
        let mut addresses = config.addresses.clone();
        for (role, listener) in &listeners {
            addresses.insert(*role, listener.local_addr()?);
        }
        config.advertise(&addresses);

        let hub = Hub::with_limits(config.hub.buffer, config.hub.live_frame_max, config.hub.replay_memory);
        let fanout = fanout_for(&config.backends, &db, hub).await?;
        let hasher = TokenHasher::new(config.token_secret.expose());
        let service = Service::new(db, store, hasher, clock, fanout, config.service.clone());
        let shutdown = CancellationToken::new();
        let rate_limits: BTreeMap<Role, ClientLimiter> = match config.http.rate_limit {
            Some(limit) => {
                listeners.keys().map(|role| (*role, ClientLimiter::new(limit, &config.http.trusted_proxies))).collect()
            }
            None => BTreeMap::new(),
        };
        let tasks = start_tasks(&config, &service, &rate_limits, &shutdown);
        let streams =
            StreamSlots::new(stream_capacity(config.http.sse.max_streams), config.http.sse.max_streams_per_ip);
        let state = AppState::new(AppParts {
            http: config.http,
            mcp: config.mcp,
            landing: config.landing,
            service,
            streams,
            shutdown,
            tasks,
        });
        Ok(Self { state, listeners, shutdown_grace: config.shutdown_grace, rate_limits })
    }

    /// The address a role actually bound (port 0 resolved).
    pub fn local_addr(&self, role: Role) -> Option<SocketAddr> {
        self.listeners.get(&role).and_then(|l| l.local_addr().ok())
    }

    /// The base URL of each role this process serves, as clients are told
    /// to reach it: its public URL when configured, else its bound address.
    /// `serve` prints them at startup.
    pub fn urls(&self) -> Vec<(Role, String)> {
        let landing = &self.state.landing;
        let url = |role: &Role| match role {
            Role::Landing => landing.landing_url.clone(),
            Role::Rest => landing.rest_url.clone(),
            Role::Channels => landing.channel_base_url.clone(),
            Role::Mcp => self.state.mcp.public_url.clone(),
        };
        self.listeners.keys().map(|role| (*role, url(role))).collect()
    }

    pub fn service(&self) -> &Service {
        &self.state.service
    }

    /// The supervised background tasks (tests stop them to prove the supervision).
    pub fn tasks(&self) -> &Tasks {
        &self.state.tasks
    }

    /// Serves every role until `shutdown` resolves. Then open streams end
    /// (clients resume elsewhere with Last-Event-ID), in-flight requests
    /// finish, and after SHUTDOWN_GRACE_SECS the servers stop regardless.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let grace = self.shutdown_grace;
        let mut servers = tokio::task::JoinSet::new();
        for (role, listener) in self.listeners {
            let addr = listener.local_addr()?;
            let app = http::router(role, self.state.clone(), self.rate_limits.get(&role));
            let stopping = self.state.shutdown.clone();
            let limits = self.state.http.connection;
            tracing::info!(role = role.name(), %addr, "listening");
            servers.spawn(async move {
                http::serve::serve(listener, app, limits, role == Role::Channels, stopping).await;
                role
            });
        }
        let drain = async {
            while let Some(joined) = servers.join_next().await {
                let role = joined.context("a server task panicked")?;
                tracing::info!(role = role.name(), "stopped");
            }
            Ok::<(), anyhow::Error>(())
        };
        tokio::pin!(drain);
        let bus = self.state.service.fanout().bus().clone();
        tokio::select! {
            result = &mut drain => return result,
            () = shutdown => {
                self.state.shutdown.cancel();
                // Ends every reader stream (SSE, MCP): their feeds close.
                self.state.service.fanout().hub().close();
            }
        }
        let result = match tokio::time::timeout(grace, drain).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(?grace, "connections still open after the grace period; exiting anyway");
                Ok(())
            }
        };
        // Notices of the last commits leave before the process does (NATS).
        bus.drain(std::time::Duration::from_secs(2)).await;
        result
    }
}

/// The service `chantra sweep` runs: the same backends and fan-out as
/// `serve`, but no listener, no background task and no token secret (the
/// sweeper never hashes a token, so a random key that matches nothing is used).
pub async fn sweep_service(config: SweepConfig) -> anyhow::Result<Service> {
    let (db, store) = open_backends(&config.backends).await?;
    // No reader streams from this process: the smallest buffer does.
    let fanout = fanout_for(&config.backends, &db, Hub::new(1)).await?;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    Ok(Service::new(db, store, TokenHasher::new(&key), Clock::system(), fanout, config.service))
}

/// Connects the database, checks or applies the schema and opens the payload store.
async fn open_backends(backends: &Backends) -> anyhow::Result<(DatabaseConnection, Arc<dyn PayloadStore>)> {
    // Before anything records: chantra-core's counters bind to the recorder present then.
    crate::metrics::install();
    let db = db::connect(&backends.database).await?;
    db::prepare_schema(&db, backends.auto_migrate).await?;
    let store = open_store(&backends.storage).await?;
    match store.ensure_expiry_rule(backends.s3_expiry_days).await {
        Ok(payload::ExpiryRule::Created) => {
            tracing::info!(days = backends.s3_expiry_days, "added a bucket lifecycle rule expiring objects")
        }
        Ok(payload::ExpiryRule::AlreadyPresent) => {
            tracing::info!("the bucket already has an expiry lifecycle rule")
        }
        Ok(payload::ExpiryRule::Unsupported(reason)) => {
            tracing::warn!(%reason, "the S3 server refused a lifecycle rule; orphans rely on the sweeper alone")
        }
        Ok(payload::ExpiryRule::NotApplicable) => {}
        Err(err) => tracing::warn!(error = %err, "could not check the bucket lifecycle rule"),
    }
    tracing::info!(database = %backends.database.redacted_url(), payload_store = store.kind(), "backends ready");
    Ok((db, store))
}

/// The notice bus between processes: NATS when FANOUT_URL is set (config
/// refuses it with SQLite), else PostgreSQL LISTEN/NOTIFY; SQLite serves one
/// process, in-process.
async fn fanout_for(backends: &Backends, db: &DatabaseConnection, hub: Arc<Hub>) -> anyhow::Result<Fanout> {
    let bus: Arc<dyn NoticeBus> = match (&backends.nats, backends.database.kind()) {
        (Some(nats), _) => Arc::new(chantra_nats::NatsBus::connect(nats).await?),
        (None, DatabaseKind::Postgres) => Arc::new(PostgresBus::new(db.clone())),
        (None, DatabaseKind::Sqlite) => return Ok(Fanout::local(hub)),
    };
    tracing::info!(bus = bus.kind(), "fan-out between processes");
    Ok(Fanout::new(hub, bus))
}

/// Starts every background task of the process, by name, under
/// supervision (supervisor.rs): one that stops is logged by name, /readyz
/// reports it down and it is started again. Per-connection and per-request
/// tasks (serve.rs, rmcp's session workers) are not here: they end with
/// their connection. MCP sessions need no task of ours: rmcp closes an idle
/// session itself (MCP_SESSION_IDLE_SECS, mcp/sessions.rs) and ends them all
/// on the shutdown token.
///
/// - `commit_writer`: writes every publish (service/publish.rs). It ignores
///   `shutdown`, so publishes in flight during a graceful shutdown commit.
/// - the notice bus's receivers (`notification_listener` on PostgreSQL,
///   `nats_subscriber` on NATS) + `notification_loader` (channels or mcp
///   role): live delivery from every process (service/listener.rs).
/// - `sweeper`: expiry and orphan cleanup (unless --no-sweeper).
/// - `rate_limit_cleanup`: forgets idle clients' buckets (if RATE_LIMIT is on).
fn start_tasks(
    config: &Config,
    service: &Service,
    rate_limits: &BTreeMap<Role, ClientLimiter>,
    shutdown: &CancellationToken,
) -> Tasks {
    let tasks = Tasks::new();
    let writer = service.clone();
    tasks.supervise(shutdown.clone(), move || vec![(COMMIT_WRITER, writer.commit_writer())]);
    // Live readers live in the channels role (SSE) and the mcp role
    // (wait_for_messages): each such process hears every other process's publishes.
    let has_readers = config.roles.contains(&Role::Channels) || config.roles.contains(&Role::Mcp);
    if !service.fanout().bus().in_process() && has_readers {
        let (service, stopping) = (service.clone(), shutdown.clone());
        tasks.supervise(shutdown.clone(), move || {
            chantra_core::service::listener::jobs(service.clone(), stopping.clone())
        });
    }
    if let Some(settings) = config.sweeper.clone() {
        let (service, stopping) = (service.clone(), shutdown.clone());
        tasks.supervise(shutdown.clone(), move || {
            let sweeper = service.clone().run_sweeper(settings.clone(), stopping.clone());
            vec![("sweeper", Box::pin(sweeper) as Job)]
        });
    }
    if !rate_limits.is_empty() {
        let (limiters, stopping): (Vec<ClientLimiter>, _) = (rate_limits.values().cloned().collect(), shutdown.clone());
        tasks.supervise(shutdown.clone(), move || {
            let cleanup = rate_limit::forget_idle_clients(limiters.clone(), stopping.clone());
            vec![("rate_limit_cleanup", Box::pin(cleanup) as Job)]
        });
    }
    tasks
}

/// Connections the kernel queues before we accept them. Tokio's default
/// (1,024, capped by the kernel's somaxconn) is not always what we get: a
/// reconnect storm of thousands of SSE clients overflowed a 128-entry queue
/// and left clients waiting for SYN retries (1, 3, 7 s).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept for everything that is not a stream: database and
/// S3 connections, payload files, API requests, the listeners.
const RESERVED_FDS: u64 = 512;

/// Raises this process's open-file limit to its hard maximum and returns how
/// many streams fit: MAX_STREAMS, or fewer if the descriptors run out first —
/// so a full server answers 503 `server_busy` instead of failing to accept
/// ("too many open files") and starving every other request.
fn stream_capacity(max_streams: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the open-file limit; MAX_STREAMS is used as is");
            return max_streams;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if fits < max_streams {
        tracing::warn!(
            open_file_limit = limit,
            max_streams,
            streams = fits,
            "the open-file limit caps streams below MAX_STREAMS; raise `ulimit -n` (LimitNOFILE / ulimits) for more"
        );
    }
    max_streams.min(fits)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (container stop).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// Opens the configured payload store, creating its bucket or directory if
/// missing, layered as the service uses it (timed, cached).
async fn open_store(config: &payload::StorageConfig) -> anyhow::Result<Arc<dyn payload::PayloadStore>> {
    Ok(match config {
        payload::StorageConfig::Filesystem { root } => payload::layered(payload::FsStore::open(root).await?),
        payload::StorageConfig::S3(s3) => payload::layered(chantra_s3::S3Store::open(s3).await?),
    })
}

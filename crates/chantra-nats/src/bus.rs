//! The publishing side and the connection: [`NatsBus::connect`] returns at
//! once (the client connects, and reconnects, in the background), so a
//! process starts and publishes while NATS is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use async_trait::async_trait;
use chantra_core::domain::ChannelId;
use chantra_core::fanout::{BusHealth, Hub, Notice, NoticeBus, NoticeSink};
use chantra_core::supervisor::Job;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::settings::{NatsAuth, NatsSettings};

/// How long one publish may wait for room in the client's buffer.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);
/// How often the publisher checks whether it owes a resync announcement.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long startup waits for the first connection before going on degraded.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(3);
/// Longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Subject names.
#[derive(Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn channel(&self, channel: ChannelId) -> String {
        format!("{}.ch.{channel}", self.prefix)
    }

    pub(crate) fn resync(&self) -> String {
        format!("{}.resync", self.prefix)
    }
}

/// State shared by the bus, its publisher and its receivers.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    /// Woken when the connection goes up or down.
    pub(crate) connection_changed: Notify,
    pub(crate) poll_interval: Duration,
    /// Notices were dropped (or may have been lost with a broken
    /// connection): announce a resync once connected.
    owes_resync: AtomicBool,
    /// Something was published since the last (re)connect.
    published: AtomicBool,
    /// Notices handed to [`NoticeBus::committed`] and not yet sent or dropped.
    pending: AtomicUsize,
    /// The client dropped messages for a subscription that fell behind:
    /// the receivers resync.
    pub(crate) lost_notices: AtomicBool,
}

impl Shared {
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }
}

pub struct NatsBus {
    shared: Arc<Shared>,
    outbox: mpsc::Sender<Notice>,
}

impl NatsBus {
    /// Starts the client (connecting in the background, retrying forever)
    /// and the publisher task. Fails only on settings it cannot use (a
    /// malformed URL, an unreadable creds file).
    pub async fn connect(settings: &NatsSettings) -> anyhow::Result<Self> {
        let servers = settings
            .servers
            .iter()
            .enumerate()
            .map(|(i, url)| {
                // The parse error never repeats the URL, which may hold a password.
                url.expose()
                    .parse::<ServerAddr>()
                    .map_err(|e| anyhow::anyhow!("FANOUT_URL: server {} is not a NATS URL: {e}", i + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!servers.is_empty(), "FANOUT_URL names no NATS server");
        let shared_slot: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::default();
        let events = shared_slot.clone();
        let mut options = ConnectOptions::new()
            .name(&settings.name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(Duration::from_secs(10))
            .reconnect_delay_callback(|attempts| {
                let exp = u32::try_from(attempts).unwrap_or(u32::MAX).min(10);
                Duration::from_millis(50u64.saturating_mul(1 << exp)).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let shared = events.get().cloned();
                async move { on_event(shared.as_deref(), event) }
            })
            .require_tls(settings.tls.required);
        options = match &settings.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.expose().clone())
            }
            NatsAuth::Token(token) => options.token(token.expose().clone()),
            NatsAuth::NKey(seed) => options.nkey(seed.expose().clone()),
            NatsAuth::CredsFile(path) => options
                .credentials_file(path)
                .await
                .with_context(|| format!("FANOUT_NATS_CREDS_FILE: cannot use {}", path.display()))?,
        };
        if let Some(ca) = &settings.tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &settings.tls.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let client = options.connect(servers).await.context("FANOUT_URL: cannot start the NATS client")?;
        let shared = Arc::new(Shared {
            client,
            subjects: Subjects { prefix: settings.subject_prefix.clone() },
            connection_changed: Notify::new(),
            poll_interval: settings.poll_interval,
            owes_resync: AtomicBool::new(false),
            published: AtomicBool::new(false),
            lost_notices: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
        });
        let _ = shared_slot.set(shared.clone());
        let (outbox, queued) = mpsc::channel(settings.outbox.max(1));
        tokio::spawn(publish(shared.clone(), queued));
        // Notices are dropped while not connected: give the first connection
        // a moment, so a short-lived process (`chantra sweep --once`) sends its own.
        let waited = tokio::time::Instant::now();
        while !shared.connected() && waited.elapsed() < FIRST_CONNECT_WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !shared.connected() {
            tracing::warn!("NATS unreachable at startup; going on degraded and reconnecting in the background");
        }
        Ok(Self { shared, outbox })
    }
}

fn on_event(shared: Option<&Shared>, event: Event) {
    match event {
        Event::Connected => tracing::info!("NATS connected"),
        Event::Disconnected => {
            tracing::warn!("NATS connection lost; reconnecting (readers catch up from the database meanwhile)");
            // Notices handed to the client just before may be gone with the connection.
            if let Some(shared) = shared
                && shared.published.swap(false, Ordering::AcqRel)
            {
                shared.owes_resync.store(true, Ordering::Release);
            }
        }
        Event::SlowConsumer(sid) => {
            tracing::warn!(sid, "NATS: a subscription fell behind and lost notices; catching up");
            if let Some(shared) = shared {
                shared.lost_notices.store(true, Ordering::Release);
            }
        }
        // Each failed reconnection attempt: the loss was already said above.
        Event::ClientError(err) => tracing::debug!(error = %err, "NATS"),
        other => tracing::warn!(event = %other, "NATS"),
    }
    if let Some(shared) = shared {
        shared.connection_changed.notify_one();
    }
}

/// The publisher: sends queued notices while connected, drops them (counted)
/// while not, and then announces `<prefix>.resync` once it can, so readers
/// elsewhere catch up on what their notices would have said.
async fn publish(shared: Arc<Shared>, mut queued: mpsc::Receiver<Notice>) {
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            notice = queued.recv() => {
                let Some(notice) = notice else { return };
                let sent = shared.connected()
                    && send(&shared, shared.subjects.channel(notice.channel()), notice.encode()).await;
                if sent {
                    shared.published.store(true, Ordering::Release);
                } else {
                    dropped(&shared);
                }
                shared.pending.fetch_sub(1, Ordering::AcqRel);
            }
            _ = announce.tick() => {
                if shared.owes_resync.load(Ordering::Acquire)
                    && shared.connected()
                    && send(&shared, shared.subjects.resync(), String::new()).await
                {
                    shared.owes_resync.store(false, Ordering::Release);
                    tracing::info!("NATS: announced a resync for the notices dropped while it was unreachable");
                }
            }
        }
    }
}

async fn send(shared: &Shared, subject: String, payload: String) -> bool {
    matches!(tokio::time::timeout(PUBLISH_WAIT, shared.client.publish(subject, payload.into())).await, Ok(Ok(())))
}

fn dropped(shared: &Shared) {
    chantra_core::metrics::get().notices_dropped.increment(1);
    shared.owes_resync.store(true, Ordering::Release);
}

#[async_trait]
impl NoticeBus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn committed(&self, notices: &[Notice]) {
        for notice in notices {
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            if self.outbox.try_send(*notice).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                dropped(&self.shared);
            }
        }
    }

    async fn drain(&self, limit: Duration) {
        let started = tokio::time::Instant::now();
        while self.shared.pending.load(Ordering::Acquire) > 0 && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if self.shared.connected() {
            let left = limit.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(left, self.shared.client.flush()).await;
        }
    }

    fn receivers(&self, hub: &Arc<Hub>, sink: NoticeSink, shutdown: CancellationToken) -> Vec<(&'static str, Job)> {
        crate::receive::jobs(self.shared.clone(), hub.clone(), sink, shutdown)
    }

    fn health(&self) -> BusHealth {
        if self.shared.connected() {
            BusHealth::Ok
        } else {
            BusHealth::Degraded(format!(
                "NATS unreachable (reconnecting); readers catch up from the database every {:?}",
                self.shared.poll_interval
            ))
        }
    }
}

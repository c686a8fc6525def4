//! What the binary's configuration builds for the NATS bus (FANOUT_URL and
//! the FANOUT_NATS_* settings). Secrets are [`Secret`]s: never printed.

use std::path::PathBuf;
use std::time::Duration;

use chantra_core::domain::Secret;

#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// One or more server URLs (`nats://host:4222`, `tls://…`), comma-separated
    /// in FANOUT_URL. Credentials a URL carried are moved to `auth` by the
    /// configuration (async-nats would log them with the address at debug
    /// level); kept secret anyway.
    pub servers: Vec<Secret<String>>,
    pub auth: NatsAuth,
    pub tls: NatsTls,
    /// Subjects are `<prefix>.ch.<channel id>` and `<prefix>.resync`, so
    /// several deployments can share one NATS.
    pub subject_prefix: String,
    /// While NATS is unreachable, followed channels are caught up (and
    /// readers re-check grants) this often.
    pub poll_interval: Duration,
    /// Notices waiting to be published; when full they are dropped (and
    /// readers catch up after the resync announcement).
    pub outbox: usize,
    /// The connection name the server shows (`chantra-<roles>`).
    pub name: String,
}

/// How the client authenticates, as async-nats allows (at most one).
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: Secret<String>,
    },
    Token(Secret<String>),
    /// An NKey seed (`SU…`).
    NKey(Secret<String>),
    /// A `.creds` file (JWT + NKey seed), as `nsc` writes it.
    CredsFile(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    /// Refuse a server that does not offer TLS (also implied by `tls://` URLs).
    pub required: bool,
    /// PEM file of the CA that signed the server's certificate (else the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsSettings {
    /// Plain settings for `servers` (no credentials, no TLS options).
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers: servers.into_iter().map(Secret::new).collect(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
            subject_prefix: "chantra".into(),
            poll_interval: Duration::from_secs(1),
            outbox: 8192,
            name: "chantra".into(),
        }
    }
}

//! The built `chantra` binary as child processes, on real backends.
//!
//! A `Stack` is the backends of one test — a PostgreSQL database (a fresh one
//! on the shared server, or a private cluster's) and a private garage — and
//! starts `chantra serve --role …` processes on them, configured through the
//! environment exactly as tests/api/sse_multiprocess.rs does. A `Server` is
//! one such process: it can be killed (SIGKILL), terminated (SIGTERM) and
//! started again on the same ports, and is killed when dropped (printing the
//! end of its log if the test is failing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BASE_URL, BIN, TEST_SECRET, TestDatabase, free_port, proc_kib};
use crate::garage::{Garage, signal};

/// How long a process may take to answer /readyz (debug build, busy machine).
const READY_WAIT: Duration = Duration::from_secs(60);

/// The backends of one test. Field order is drop order: garage, then the database.
pub struct Stack {
    pub garage: Garage,
    pub database_url: String,
    _database: Option<TestDatabase>,
    dir: tempfile::TempDir,
}

impl Stack {
    /// A fresh database on the shared PostgreSQL + a private garage.
    pub async fn shared_postgres() -> Self {
        let database = TestDatabase::create().await;
        let url = database.url.clone();
        Self::build(url, Some(database)).await
    }

    /// Another database (a private cluster's) + a private garage.
    pub async fn on_database(url: String) -> Self {
        Self::build(url, None).await
    }

    async fn build(database_url: String, database: Option<TestDatabase>) -> Self {
        let garage = Garage::start().await;
        let dir = tempfile::Builder::new().prefix("chantra-faults").tempdir().expect("temp dir");
        Self { garage, database_url, _database: database, dir }
    }

    /// Starts `chantra serve --role <roles>` on free ports with the common
    /// settings plus `extra`, and waits until it answers /readyz. Only a
    /// process with the rest role applies migrations: start one first.
    pub async fn start(&self, name: &str, roles: &str, extra: &[(&str, &str)]) -> Server {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("RUST_LOG".into(), "info".into()),
            ("NO_COLOR".into(), "1".into()),
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("AUTO_MIGRATE".into(), roles.contains("rest").to_string()),
            ("TOKEN_SECRET_SALT".into(), TEST_SECRET.into()),
            ("S3_ENDPOINT".into(), self.garage.endpoint.clone()),
            ("S3_ACCESS_KEY".into(), self.garage.access_key.clone()),
            ("S3_SECRET_KEY".into(), self.garage.secret_key.clone()),
            ("S3_BUCKET".into(), self.garage.bucket.clone()),
            ("DATA_DIR".into(), self.dir.path().join(format!("data-{name}")).display().to_string()),
            ("RATE_LIMIT_PER_SECOND".into(), "0".into()),
            ("CHANNEL_BASE_URL".into(), BASE_URL.into()),
            ("NO_SWEEPER".into(), "true".into()),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key.to_string(), value.to_string()));
        }
        let mut server = Server {
            name: name.to_owned(),
            roles: roles.to_owned(),
            child: None,
            rest: None,
            channels: None,
            env,
            dir: self.dir.path().to_owned(),
            starts: 0,
        };
        // A free port can be taken before the child binds it: then try others.
        for attempt in 1.. {
            server.rest = roles.contains("rest").then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            server.channels = roles.contains("channels").then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
            if server.launch().await {
                break;
            }
            assert!(attempt < 3, "{name} did not start:\n{}", server.log());
        }
        server
    }
}

/// One `chantra serve` child process.
pub struct Server {
    pub name: String,
    roles: String,
    child: Option<Child>,
    pub rest: Option<SocketAddr>,
    pub channels: Option<SocketAddr>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    starts: usize,
}

impl Server {
    /// Spawns the process on its addresses and waits for /readyz; false if
    /// it exited because a port was taken.
    async fn launch(&mut self) -> bool {
        self.starts += 1;
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&self.dir).env_clear().args(["serve", "--role", &self.roles]);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        if let Some(addr) = self.rest {
            cmd.env("REST_ADDR", addr.to_string());
        }
        if let Some(addr) = self.channels {
            cmd.env("CHANNELS_ADDR", addr.to_string());
        }
        let log = std::fs::File::create(self.log_path()).expect("log file");
        self.child = Some(cmd.stdout(Stdio::null()).stderr(log).spawn().expect("the chantra binary starts"));

        let client = crate::common::api_client(Duration::from_secs(5));
        let ready = format!("http://{}/readyz", self.rest.or(self.channels).expect("a role with an address"));
        let started = Instant::now();
        loop {
            if client.get(&ready).send().await.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = self.log();
                assert!(log.contains("cannot bind"), "{} exited during start ({status}):\n{log}", self.name);
                return false;
            }
            assert!(
                started.elapsed() < READY_WAIT,
                "{ready} did not answer 200 within {READY_WAIT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.starts))
    }

    /// The stderr of the current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name)).id()
    }

    pub fn rest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rest.unwrap_or_else(|| panic!("{} has no rest role", self.name)))
    }

    pub fn channels_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.channels.unwrap_or_else(|| panic!("{} has no channels role", self.name)))
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_kib(self.pid(), "VmRSS").unwrap_or_else(|| panic!("{} has no /proc status", self.name))
    }

    /// Whether the process is still running (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL (`kill -9`), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (`kill -TERM <pid>`): a graceful shutdown.
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Starts it again on the same ports and settings (after `kill` or an exit).
    pub async fn restart(&mut self) {
        self.kill();
        // The old process's port may take a moment to be free again.
        for attempt in 1.. {
            if self.launch().await {
                return;
            }
            assert!(attempt < 50, "{} could not bind its ports again:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Log lines containing `needle`, e.g. warnings, for the printed figures.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("===== {} (run {}) last log lines =====\n{}", self.name, self.starts, tail.join("\n"));
        }
    }
}

//! The one way the tests run the built `chantra` binary.
//!
//! A [`Launcher`] describes a run — working directory, roles, environment
//! (cleared first, so no setting leaks in from the caller), an optional
//! wrapper program such as strace — and either hands out the command for a
//! one-shot run (`--help`, `migrate`) or starts `chantra serve` as a
//! [`Server`]: every role on a free loopback port, stdout and stderr in a log
//! file the test can read, ready once each role answers `/readyz`. A server
//! can be killed (SIGKILL), terminated (SIGTERM) and started again on the
//! same ports; it is killed when dropped, printing the end of its log if the
//! test is failing.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{BASE_URL, TEST_SECRET, free_port, kill_and_reap, proc_kib, signal};

/// How long a process may take to answer /readyz (debug build, busy machine).
const READY_WAIT: Duration = Duration::from_secs(60);
/// The roles `all` stands for.
const EVERY_ROLE: [&str; 4] = ["rest", "channels", "mcp", "landing"];
/// Log lines a failing test prints of each of its servers.
const TAIL_LINES: usize = 60;

/// How to run the binary; see the module documentation.
#[derive(Debug, Clone)]
pub struct Launcher {
    bin: PathBuf,
    dir: PathBuf,
    name: String,
    roles: String,
    /// In order; a later `env` of the same key replaces an earlier one.
    env: Vec<(String, String)>,
    /// Whether DATA_DIR and AUTO_MIGRATE get the test defaults when unset.
    test_settings: bool,
    /// A program the binary runs under (its arguments, then the binary's).
    wrapper: Vec<OsString>,
}

impl Launcher {
    /// The binary as the tests configure it, in `dir`: TOKEN_SECRET_SALT is
    /// [`TEST_SECRET`], CHANNEL_BASE_URL is [`BASE_URL`], no rate limit, no
    /// sweeper (tests that need one turn it on), logs at info without
    /// colours; DATA_DIR is `dir/data-<name>`, and only a process with the
    /// rest role applies migrations (start one first). Any of it can be
    /// overridden with [`env`](Self::env).
    pub fn new(bin: impl Into<PathBuf>, dir: &Path) -> Self {
        let mut launcher = Self::bare(bin, dir)
            .env("NO_COLOR", "1")
            .env("TOKEN_SECRET_SALT", TEST_SECRET)
            .env("CHANNEL_BASE_URL", BASE_URL)
            .env("RATE_LIMIT_PER_SECOND", "0")
            .env("NO_SWEEPER", "true");
        launcher.test_settings = true;
        launcher
    }

    /// The binary as a user runs it with no configuration, in `dir`: only
    /// PATH and `RUST_LOG=info` are set.
    pub fn bare(bin: impl Into<PathBuf>, dir: &Path) -> Self {
        Self {
            bin: bin.into(),
            dir: dir.to_owned(),
            name: "server".into(),
            roles: "all".into(),
            env: Vec::new(),
            test_settings: false,
            wrapper: Vec::new(),
        }
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
    }

    /// Names the server in its log file, data directory and messages.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The roles to serve, as `--role` takes them (`rest`, `rest,channels`, `all`).
    pub fn roles(mut self, roles: &str) -> Self {
        self.roles = roles.to_owned();
        self
    }

    /// Sets an environment variable, replacing an earlier value.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Sets several environment variables (see [`env`](Self::env)).
    pub fn envs<K: AsRef<str>, V: AsRef<str>>(self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        vars.into_iter().fold(self, |launcher, (k, v)| launcher.env(k.as_ref(), v.as_ref()))
    }

    /// DATABASE_URL.
    pub fn database(self, url: &str) -> Self {
        self.env("DATABASE_URL", url)
    }

    /// The S3 payload store.
    pub fn s3(self, s3: &crate::S3Env) -> Self {
        self.env("S3_ENDPOINT", &s3.endpoint)
            .env("S3_ACCESS_KEY", &s3.access_key)
            .env("S3_SECRET_KEY", &s3.secret_key)
            .env("S3_BUCKET", &s3.bucket)
    }

    /// Runs the binary under `program` with `args` (e.g. `strace -f -o ...`);
    /// the server's pid is then the wrapper's.
    pub fn wrapped_in<I: AsRef<std::ffi::OsStr>>(mut self, program: &str, args: impl IntoIterator<Item = I>) -> Self {
        self.wrapper =
            std::iter::once(OsString::from(program)).chain(args.into_iter().map(|a| a.as_ref().to_owned())).collect();
        self
    }

    /// The command for a one-shot run: the binary (or its wrapper) in the
    /// directory with exactly this environment; add the arguments.
    pub fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.current_dir(&self.dir).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts `chantra serve` on free ports and waits until every role
    /// answers /readyz. A port can be taken before the child binds it: then
    /// it tries others.
    pub async fn start(self) -> Server {
        let roles = self.role_names();
        let mut server = Server { launcher: self, child: None, addrs: Vec::new(), starts: 0 };
        for attempt in 1.. {
            server.addrs =
                roles.iter().map(|role| (role.clone(), SocketAddr::from(([127, 0, 0, 1], free_port())))).collect();
            if server.launch().await {
                break;
            }
            assert!(attempt < 3, "{} did not start:\n{}", server.name(), server.log());
        }
        server
    }

    /// The roles `roles` names, `all` expanded.
    fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for role in self.roles.split(',').map(str::trim) {
            let each = if role == "all" { EVERY_ROLE.to_vec() } else { vec![role] };
            for role in each {
                if !names.iter().any(|r| r == role) {
                    names.push(role.to_owned());
                }
            }
        }
        names
    }

    fn has(&self, key: &str) -> bool {
        self.env.iter().any(|(k, _)| k == key)
    }

    /// `serve` on these addresses, with the test defaults where unset.
    fn serve_command(&self, addrs: &[(String, SocketAddr)]) -> Command {
        let mut cmd = self.command();
        cmd.args(["serve", "--role", &self.roles]);
        if self.test_settings && !self.has("DATA_DIR") {
            cmd.env("DATA_DIR", self.dir.join(format!("data-{}", self.name)));
        }
        if self.test_settings && !self.has("AUTO_MIGRATE") {
            cmd.env("AUTO_MIGRATE", addrs.iter().any(|(role, _)| role == "rest").to_string());
        }
        for (role, addr) in addrs {
            cmd.env(format!("{}_ADDR", role.to_uppercase()), addr.to_string());
        }
        cmd
    }
}

/// One `chantra serve` child process; killed when dropped.
pub struct Server {
    launcher: Launcher,
    child: Option<Child>,
    addrs: Vec<(String, SocketAddr)>,
    /// Runs so far: each has its own log file.
    starts: usize,
}

impl Server {
    /// Spawns the process on its addresses and waits for /readyz on each;
    /// false if it exited because a port was taken.
    async fn launch(&mut self) -> bool {
        self.starts += 1;
        let log = File::create(self.log_path()).expect("log file");
        let mut cmd = self.launcher.serve_command(&self.addrs);
        cmd.stdout(log.try_clone().expect("log file")).stderr(log);
        self.child = Some(cmd.spawn().expect("the chantra binary starts"));

        // Idle pooled connections are dropped before the server's header
        // read timeout closes them, so a probe never races that close.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let started = Instant::now();
        for (_, addr) in &self.addrs {
            let ready = format!("http://{addr}/readyz");
            while !client.get(&ready).send().await.is_ok_and(|r| r.status() == 200) {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    self.child = None;
                    let log = self.log();
                    assert!(log.contains("cannot bind"), "{} exited during start ({status}):\n{log}", self.name());
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
        true
    }

    pub fn name(&self) -> &str {
        &self.launcher.name
    }

    /// The log file (stdout and stderr) of the current or last run.
    pub fn log_path(&self) -> PathBuf {
        self.launcher.dir.join(format!("{}-{}.log", self.launcher.name, self.starts))
    }

    /// What the current (or last) run has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// How often `needle` occurs in the log so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Where `role` listens.
    pub fn addr(&self, role: &str) -> SocketAddr {
        let found = self.addrs.iter().find(|(r, _)| r == role);
        found.map(|(_, addr)| *addr).unwrap_or_else(|| panic!("{} has no {role} role", self.name()))
    }

    /// `http://<addr of role><path>`.
    pub fn url(&self, role: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(role))
    }

    pub fn rest_url(&self, path: &str) -> String {
        self.url("rest", path)
    }

    pub fn channels_url(&self, path: &str) -> String {
        self.url("channels", path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name())).id()
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_kib(self.pid(), "VmRSS").unwrap_or_else(|| panic!("{} has no /proc status", self.name()))
    }

    /// Whether the process is still running (it has not exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL (`kill -9`), and reaps it.
    pub fn kill(&mut self) {
        kill_and_reap(self.child.take());
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
            assert!(attempt < 50, "{} could not bind its ports again:\n{}", self.name(), self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
            eprintln!(
                "===== {} (run {}, {}) last log lines =====\n{}",
                self.name(),
                self.starts,
                self.log_path().display(),
                tail.join("\n")
            );
        }
    }
}

//! A nats-server of the test's own, on a free loopback port, that the test
//! can stop (SIGKILL) and start again on the same port to simulate an
//! outage. The program is `nats-server` on PATH, or CHANTRA_TEST_NATS_SERVER;
//! a test that cannot start it fails (it never skips).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, kill_and_reap};

const START_WAIT: Duration = Duration::from_secs(10);

pub struct NatsServer {
    addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    /// Extra arguments (authentication).
    args: Vec<String>,
}

impl NatsServer {
    /// Starts one, logging to `log`, and waits until it accepts connections.
    pub async fn start(log: PathBuf) -> Self {
        Self::start_with(log, &[]).await
    }

    /// Starts one with extra arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub async fn start_with(log: PathBuf, args: &[&str]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut server = Self { addr, child: None, log, args };
        server.launch().await;
        server
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// SIGKILL: clients see the connection drop at once.
    pub fn stop(&mut self) {
        kill_and_reap(self.child.take());
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    async fn launch(&mut self) {
        let program = std::env::var("CHANTRA_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("nats-server log");
        let child = Command::new(&program)
            .args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("nats-server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run `{program}` ({err}): install nats-server (scripts/setup-test-tools.sh) or set CHANTRA_TEST_NATS_SERVER")
            });
        self.child = Some(child);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited ({status}):\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(
                started.elapsed() < START_WAIT,
                "nats-server did not listen on {} within {START_WAIT:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

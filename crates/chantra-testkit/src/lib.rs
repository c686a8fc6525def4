//! What Chantra's integration suites (tests/api, tests/faults) share to run
//! the real thing: the one way to launch the built `chantra` binary
//! ([`Launcher`], [`Server`]), the SSE test client ([`sse`]), the database of
//! one test ([`TestDatabase`]), a TCP proxy that can fail ([`FaultProxy`])
//! and a nats-server the test can stop ([`NatsServer`]).
//!
//! It knows the binary only from the outside (command line, environment,
//! HTTP), so it does not depend on the `chantra` package: the path of the
//! binary comes from the test crate, where cargo defines it ([`bin!`]).

mod database;
mod launcher;
mod nats;
mod proxy;
pub mod sse;

pub use database::{Backend, S3Env, TestDatabase, admin_database_url, s3_env};
pub use launcher::{Launcher, Server};
pub use nats::NatsServer;
pub use proxy::FaultProxy;

/// TOKEN_SECRET_SALT of every server a test starts, in process or as a
/// child (processes of one test must agree on it).
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef";

/// CHANNEL_BASE_URL of launched servers: channel URLs are this + `/channel/v1/...`.
pub const BASE_URL: &str = "http://channels.test";

/// The path of the built `chantra` binary. Cargo defines it only for the
/// chantra package's own integration tests, so this expands there.
#[macro_export]
macro_rules! bin {
    () => {
        env!("CARGO_BIN_EXE_chantra")
    };
}

/// A loopback port that is free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`); `None` once the process is gone.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// SIGKILL (`kill -9`) for a child process, if there is one, then reaps it
/// so that no zombie is left.
pub fn kill_and_reap(child: Option<std::process::Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends a signal (`TERM`, `STOP`, ...) with kill(1): the tests use no libc bindings.
pub fn signal(pid: u32, name: &str) {
    let status =
        std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

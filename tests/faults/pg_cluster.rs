//! A private PostgreSQL cluster for one test, so it can be stopped and
//! started without disturbing the shared server on 127.0.0.1:5432 that other
//! tests use. initdb refuses to run as root, so the cluster lives in a temp
//! dir owned by `postgres` and every tool runs through `runuser -u postgres`.
//! Trust auth, loopback only, a small footprint; removed when dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::free_port;

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The newest installed PostgreSQL's bin directory (/usr/lib/postgresql/<v>/bin).
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL is not installed ({} unreadable: {e})", root.display()))
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| panic!("no initdb under {}", root.display()))
}

impl PgCluster {
    /// initdb + start on a free port.
    pub async fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new().prefix("chantra-faults-pg").tempdir().expect("temp dir");
        let owned =
            std::process::Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("run chown");
        assert!(owned.success(), "chown postgres {} failed (the tests run as root)", dir.path().display());
        let cluster = Self { bin, dir, port: free_port() };
        let data = cluster.data().display().to_string();
        cluster
            .run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
            .await;
        cluster.start_server().await;
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of its `postgres` database (the whole cluster belongs to the test).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub async fn start_server(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c shared_buffers=16MB \
             -c max_connections=60 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data().display().to_string();
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start"]).await;
    }

    /// `pg_ctl stop -m fast`: sessions are terminated, as in a restart of the server.
    pub async fn stop_server(&self) {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"]).await;
    }

    /// Runs a PostgreSQL tool as `postgres`; panics with its output if it fails.
    async fn run(&self, tool: &str, args: &[&str]) {
        let output = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join(tool))
                .args(args)
                .current_dir(self.dir.path())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool} did not finish within 90 s"))
        .unwrap_or_else(|e| panic!("cannot run {tool} through runuser: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: nothing in it is worth a checkpoint. The temp dir goes afterwards.
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

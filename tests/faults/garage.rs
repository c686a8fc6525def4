//! A private garage (the S3 server of the test suite) for one test, so a
//! case can freeze, kill and restart it without touching anyone else's.
//! Same approach as `start_garage` in scripts/test-env.sh: a single-node
//! config in a temp dir on free loopback ports; `--single-node
//! --default-bucket` lays the node out and creates the key and the bucket
//! before the S3 port opens. A restart reuses the data dir and the ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chantra_testkit::{kill_and_reap, signal};

use crate::common::{free_port, random_hex};

/// How long garage may take to open its S3 port (first start or restart).
const START_WAIT: Duration = Duration::from_secs(60);

pub struct Garage {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub endpoint: String,
    s3_port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// Starts so far (1 after `start`).
    starts: usize,
}

/// Where the garage binary is: on PATH, or where `cargo install` puts it.
fn garage_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let installed = cargo_home.map(|home| home.join("bin/garage"));
    on_path.chain(installed).find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "garage is not installed (looked on PATH and in $CARGO_HOME/bin): the fault tests run a \
             private S3 server. Install it once with `bash scripts/setup-test-tools.sh` \
             (it runs `cargo install garage --locked`)"
        )
    })
}

impl Garage {
    pub async fn start() -> Self {
        let bin = garage_bin();
        let dir = tempfile::Builder::new().prefix("chantra-faults-garage").tempdir().expect("temp dir");
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let root = dir.path().display();
        let config = format!(
            r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            secret = random_hex(32)
        );
        std::fs::write(dir.path().join("garage.toml"), config).expect("write garage.toml");
        let mut garage = Self {
            child: None,
            bin,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            s3_port,
            access_key: format!("GK{}", random_hex(12)),
            secret_key: random_hex(32),
            bucket: "chantra-faults".into(),
            dir,
            starts: 0,
        };
        garage.launch().await;
        garage
    }

    /// Starts the server on the existing config and data; waits for the S3 port.
    async fn launch(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("garage log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &self.access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &self.secret_key)
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            // Garage opens the S3 port only once the layout, key and bucket exist.
            if tokio::net::TcpStream::connect(("127.0.0.1", self.s3_port)).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("garage exited during start #{} ({status}); its log:\n{}", self.starts, self.log());
            }
            assert!(
                started.elapsed() < START_WAIT,
                "garage did not open 127.0.0.1:{} within {START_WAIT:?}; its log:\n{}",
                self.s3_port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("garage-{}.log", self.starts))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("garage is running").id()
    }

    /// SIGKILL: the store vanishes mid-request, as in a crash.
    pub fn kill(&mut self) {
        kill_and_reap(self.child.take());
    }

    /// SIGSTOP: the store hangs (connections are accepted by the kernel but never answered).
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after `freeze`.
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// Starts it again after `kill`, on the same ports and data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart follows kill");
        self.launch().await;
    }

    /// A rust-s3 handle on the test bucket, to check objects behind chantra's back.
    pub fn bucket(&self) -> Box<s3::Bucket> {
        let region = s3::Region::Custom { region: "us-east-1".into(), endpoint: self.endpoint.clone() };
        let credentials =
            s3::creds::Credentials::new(Some(&self.access_key), Some(&self.secret_key), None, None, None).unwrap();
        s3::Bucket::new(&self.bucket, region, credentials).unwrap().with_path_style()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process must be thawed to die cleanly; SIGKILL works regardless.
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

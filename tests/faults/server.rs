//! The backends of one fault case and the `chantra serve` processes on them.
//!
//! A `Stack` is a PostgreSQL database (a fresh one on the shared server, or a
//! private cluster's) and a private garage; it starts processes with the
//! testkit's launcher, configured for those backends. Each is a
//! `chantra_testkit::Server`: it can be killed (SIGKILL), terminated
//! (SIGTERM) and started again on the same ports, and is killed when dropped
//! (printing the end of its log if the test is failing).

use chantra_testkit::{Launcher, S3Env, Server, TestDatabase, bin};

use crate::garage::Garage;

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

    /// Starts `chantra serve --role <roles>` on free ports with the test
    /// settings plus `extra`, and waits until it answers /readyz. Only a
    /// process with the rest role applies migrations: start one first.
    pub async fn start(&self, name: &str, roles: &str, extra: &[(&str, &str)]) -> Server {
        let s3 = S3Env {
            endpoint: self.garage.endpoint.clone(),
            access_key: self.garage.access_key.clone(),
            secret_key: self.garage.secret_key.clone(),
            bucket: self.garage.bucket.clone(),
        };
        let launcher = Launcher::new(bin!(), self.dir.path()).name(name).roles(roles);
        launcher.database(&self.database_url).s3(&s3).envs(extra.iter().copied()).start().await
    }
}

//! The backends of one test: its database — a SQLite file in the test's
//! directory, or a fresh database on the shared PostgreSQL, dropped after
//! the test — and the S3 server of the PostgreSQL pair.

use std::path::Path;

use sea_orm::{ConnectionTrait as _, Database};

/// The two backend pairs the suites run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite + filesystem payloads.
    Sqlite,
    /// PostgreSQL + S3 (garage).
    Postgres,
}

/// The shared PostgreSQL's admin URL (scripts/test-env.sh `ensure_postgres`).
pub fn admin_database_url() -> String {
    std::env::var("CHANTRA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test. On PostgreSQL it is dropped when
/// this value is; a SQLite file goes with the test's directory.
pub struct TestDatabase {
    /// The PostgreSQL database name (`chantra` for SQLite: the file's stem).
    pub name: String,
    pub url: String,
    on_postgres: bool,
}

impl TestDatabase {
    /// The test's database on `backend`; a SQLite file is created in `dir`.
    pub async fn for_backend(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(dir),
            Backend::Postgres => Self::create().await,
        }
    }

    /// `dir/chantra.db`, created on first connection.
    pub fn sqlite(dir: &Path) -> Self {
        let url = format!("sqlite://{}/chantra.db?mode=rwc", dir.display());
        Self { name: "chantra".into(), url, on_postgres: false }
    }

    /// A fresh database on the shared PostgreSQL.
    pub async fn create() -> Self {
        let admin = admin_database_url();
        let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}). Start it with \
                 `source scripts/test-env.sh && ensure_postgres` or set CHANTRA_TEST_DATABASE_URL"
            )
        });
        let name = format!("chantra_test_{}", uuid::Uuid::now_v7().simple());
        conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("CHANTRA_TEST_DATABASE_URL must end with /<database>"),
        };
        Self { name, url, on_postgres: true }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.on_postgres {
            return;
        }
        // Drop runs outside async (possibly during a panic): use a thread with its own runtime.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let conn = Database::connect(&admin_database_url()).await.ok()?;
                conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
    }
}

/// Settings of an S3 server: the shared one of the PostgreSQL pair
/// ([`s3_env`]) or a private garage of a fault case.
#[derive(Debug, Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
}

/// The shared S3 server, from the environment scripts/test.sh sets.
pub fn s3_env() -> S3Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the PostgreSQL + S3 tests need a real S3 server. \
                 Run the suite with `bash scripts/test.sh` (it starts garage), or point \
                 CHANTRA_TEST_S3_ENDPOINT, CHANTRA_TEST_S3_ACCESS_KEY and CHANTRA_TEST_S3_SECRET_KEY at one"
            )
        })
    };
    S3Env {
        endpoint: var("CHANTRA_TEST_S3_ENDPOINT"),
        access_key: var("CHANTRA_TEST_S3_ACCESS_KEY"),
        secret_key: var("CHANTRA_TEST_S3_SECRET_KEY"),
        bucket: std::env::var("CHANTRA_TEST_S3_BUCKET").unwrap_or_else(|_| "chantra-test".into()),
    }
}

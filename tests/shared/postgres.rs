//! The shared PostgreSQL of the integration tests: its admin URL and a
//! database per test. Used by tests/api and tests/faults (`#[path]`).

use sea_orm::{ConnectionTrait as _, Database};

/// The shared PostgreSQL's admin URL (scripts/test-env.sh `ensure_postgres`).
pub fn admin_database_url() -> String {
    std::env::var("CHANTRA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database on the shared PostgreSQL that exists for one test (dropped after it).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
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
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
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

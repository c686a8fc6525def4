//! The database: connecting (SQLite or PostgreSQL), schema checks, and the
//! queries, one module per aggregate. This is the only place that speaks
//! SeaORM; the service layer calls these functions.

pub mod channels;
pub mod entity;
pub mod grants;
pub mod mcp_sessions;
pub mod messages;
pub mod notify;
pub mod sweep;

use std::time::Duration;

use anyhow::{Context as _, bail};
use migration::{Migrator, MigratorTrait as _};
use sea_orm::sqlx;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, SqlErr};

/// Where the database is and how the pool behaves (built by the binary's
/// config from DATABASE_URL and DB_*).
#[derive(Clone)]
pub struct DatabaseConfig {
    /// May hold a password: printed only through [`DatabaseConfig::redacted_url`].
    pub url: String,
    pub acquire_timeout: Duration,
    pub max_connections: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DatabaseConfig {
    pub fn kind(&self) -> DatabaseKind {
        // Checked when the config was built; the url cannot change afterwards.
        DatabaseKind::of(&self.url).unwrap_or(DatabaseKind::Sqlite)
    }

    /// The URL with any password replaced, safe for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// The backend a DATABASE_URL names, or why it names none.
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid URL ({e}): {}", redact_url(url)))?;
            Ok(DatabaseKind::Postgres)
        } else {
            bail!("DATABASE_URL must start with sqlite:// or postgres:// (got `{}`)", redact_url(url))
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Opens the pool. SQLite gets WAL (readers don't block the writer), foreign
/// keys (the cascades in the schema) and a busy timeout instead of instant
/// "database is locked" errors, and `synchronous=FULL`: in WAL mode that
/// fsyncs the WAL at every commit, so a committed row (and the 201 sent
/// after it) survives a power loss; NORMAL only syncs at checkpoints and
/// may lose the last commits. One fsync per transaction: group commit
/// (service/commit.rs) shares it among every publish of a batch.
/// PostgreSQL commits durably by default (`synchronous_commit = on`).
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_timeout(config.acquire_timeout)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    let mut db = Database::connect(options)
        .await
        .with_context(|| format!("DATABASE_URL: cannot connect to {}", config.redacted_url()))?;
    db.set_metric_callback(|info| crate::metrics::record_query(info.elapsed, info.failed));
    Ok(db)
}

/// Applies pending migrations, or with `auto_migrate` off refuses to run on
/// a schema that is behind (or ahead of) this binary.
pub async fn prepare_schema(db: &DatabaseConnection, auto_migrate: bool) -> anyhow::Result<()> {
    if auto_migrate {
        Migrator::up(db, None).await.context("applying database migrations")?;
        return Ok(());
    }
    let pending = Migrator::get_pending_migrations(db).await.context("reading the migration table")?;
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|m| m.name()).collect();
        bail!(
            "AUTO_MIGRATE=false and the database schema is not up to date ({} pending: {}); run `chantra migrate up`",
            names.len(),
            names.join(", ")
        );
    }
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    let applied = Migrator::get_applied_migrations(db).await.context("reading the migration table")?;
    if let Some(unknown) = applied.iter().find(|m| !known.iter().any(|k| k == m.name())) {
        bail!(
            "the database has migration {} that this binary does not know: it was migrated by a newer chantra",
            unknown.name()
        );
    }
    Ok(())
}

/// How a database error should reach a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server is down, the pool timed out, the connection broke: 503.
    Unavailable,
    UniqueViolation,
    ForeignKeyViolation,
    /// Anything else is our bug: 500.
    Other,
}

/// Classifies with SeaORM's portable helpers and sqlx's error kinds, so
/// SQLite and PostgreSQL behave alike (no backend error codes).
pub fn classify(err: &DbErr) -> Failure {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => return Failure::UniqueViolation,
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => return Failure::ForeignKeyViolation,
        _ => {}
    }
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Failure::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Failure::Unavailable,
            sqlx::Error::Database(db) if is_transient(db.as_ref()) => Failure::Unavailable,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// Server-side conditions that go away by themselves: shutdown, lock waits,
/// a busy SQLite file.
fn is_transient(err: &dyn sqlx::error::DatabaseError) -> bool {
    let code = err.code().unwrap_or_default();
    // PostgreSQL: 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now,
    // 53xxx insufficient resources, 08xxx connection exception, 40001/40P01 retryable.
    // SQLite: 5 SQLITE_BUSY, 6 SQLITE_LOCKED (extended codes keep the low byte).
    code.starts_with("57P")
        || code.starts_with("53")
        || code.starts_with("08")
        || code == "40001"
        || code == "40P01"
        || (err.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
            && code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:hunter2@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact_url("sqlite://./data/c.db"), "sqlite://./data/c.db");
        let config = DatabaseConfig {
            url: "postgres://u:hunter2@db/x".into(),
            acquire_timeout: Duration::from_secs(1),
            max_connections: 1,
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}

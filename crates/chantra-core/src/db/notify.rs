//! PostgreSQL `NOTIFY` / `LISTEN`: how processes tell each other that
//! something committed (fanout::Notice says what; this module only moves
//! the text).

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// The notification channel all processes listen on.
pub const NOTIFY_CHANNEL: &str = "chantra_events";

/// Sends every payload in one statement; PostgreSQL delivers them when (and
/// only if) `txn` commits, in commit order.
pub async fn send(txn: &impl ConnectionTrait, payloads: Vec<String>) -> Result<(), DbErr> {
    if payloads.is_empty() {
        return Ok(());
    }
    // SELECT pg_notify($1, $2), pg_notify($1, $3), ...
    let calls: Vec<String> = (0..payloads.len()).map(|i| format!("pg_notify($1, ${})", i + 2)).collect();
    let mut values: Vec<sea_orm::Value> = vec![NOTIFY_CHANNEL.into()];
    values.extend(payloads.into_iter().map(Into::into));
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT {}", calls.join(", ")),
        values,
    ))
    .await?;
    Ok(())
}

/// A fresh connection listening on [`NOTIFY_CHANNEL`] (PostgreSQL only).
pub async fn listen(db: &DatabaseConnection) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

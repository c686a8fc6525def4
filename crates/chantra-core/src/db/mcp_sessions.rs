//! Queries on `mcp_sessions`.

use chrono::{DateTime, Utc};
use sea_orm::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait};

use super::entity::mcp_session;

pub async fn load(db: &impl ConnectionTrait, id: &str) -> Result<Option<String>, DbErr> {
    Ok(mcp_session::Entity::find_by_id(id.to_owned()).one(db).await?.map(|row| row.state))
}

/// Inserts or replaces a session's state.
pub async fn store(db: &impl ConnectionTrait, id: &str, state: String, now: DateTime<Utc>) -> Result<(), DbErr> {
    let row = mcp_session::ActiveModel { id: Set(id.to_owned()), state: Set(state), created_at: Set(now) };
    mcp_session::Entity::insert(row)
        .on_conflict(OnConflict::column(mcp_session::Column::Id).update_column(mcp_session::Column::State).to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    mcp_session::Entity::delete_by_id(id.to_owned()).exec(db).await?;
    Ok(())
}

/// Forgets sessions older than `cutoff` (clients re-initialize).
pub async fn delete_older_than(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = mcp_session::Entity::delete_many().filter(mcp_session::Column::CreatedAt.lt(cutoff)).exec(db).await?;
    Ok(result.rows_affected)
}

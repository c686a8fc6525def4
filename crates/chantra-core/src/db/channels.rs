//! Queries on `channels`.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::prelude::*;

use super::entity::channel;
use crate::domain::ChannelId;

pub async fn insert(db: &impl ConnectionTrait, model: channel::Model) -> Result<(), DbErr> {
    channel::Entity::insert(channel::ActiveModel::from(model)).exec_without_returning(db).await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, id: ChannelId) -> Result<Option<channel::Model>, DbErr> {
    channel::Entity::find_by_id(id).one(db).await
}

/// Returns whether a row was deleted; grants and messages go by cascade.
pub async fn delete(db: &impl ConnectionTrait, id: ChannelId) -> Result<bool, DbErr> {
    let result = channel::Entity::delete_by_id(id).exec(db).await?;
    Ok(result.rows_affected > 0)
}

/// Records a publish. Inside a transaction this also locks the channel row
/// (PostgreSQL) or takes the write lock (SQLite), which is what orders
/// concurrent publishes to one channel. Returns false if the channel is gone.
pub async fn set_last_published(db: &impl ConnectionTrait, id: ChannelId, at: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = channel::Entity::update_many()
        .col_expr(channel::Column::LastPublishedAt, Expr::value(at))
        .filter(channel::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Locks the channel row for the rest of the transaction (PostgreSQL), or
/// takes the write lock (SQLite), with a write that changes nothing, so that
/// a count and the insert it allows are not raced by another transaction.
/// Returns false if the channel is gone.
pub async fn lock(db: &impl ConnectionTrait, id: ChannelId) -> Result<bool, DbErr> {
    let result = channel::Entity::update_many()
        .col_expr(channel::Column::Visibility, Expr::col(channel::Column::Visibility))
        .filter(channel::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Builds the row for a new channel (kept here so the column mapping lives in db/).
pub fn new_model(id: ChannelId, visibility: &str, publish_token_hash: String, now: DateTime<Utc>) -> channel::Model {
    channel::Model {
        id,
        visibility: visibility.to_owned(),
        publish_token_hash,
        created_at: now,
        last_published_at: None,
        purged_through: None,
    }
}

/// Deletes the channel only if it is still idle at `cutoff` (a publish may
/// have landed since the sweeper picked it). Returns whether it was deleted.
pub async fn delete_if_idle(db: &impl ConnectionTrait, id: ChannelId, cutoff: DateTime<Utc>) -> Result<bool, DbErr> {
    use sea_orm::Condition;
    let idle = Condition::any().add(channel::Column::LastPublishedAt.lt(cutoff)).add(
        Condition::all().add(channel::Column::LastPublishedAt.is_null()).add(channel::Column::CreatedAt.lt(cutoff)),
    );
    let result = channel::Entity::delete_many().filter(channel::Column::Id.eq(id)).filter(idle).exec(db).await?;
    Ok(result.rows_affected > 0)
}

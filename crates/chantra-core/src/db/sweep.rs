//! The sweeper's queries: bounded batches, each a short statement, so no
//! lock is held for long and an interrupted pass simply resumes.

use chrono::{DateTime, Utc};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder as _, QuerySelect as _};

use super::entity::{channel, message, read_grant};
use crate::domain::{ChannelId, GrantId, MessageId};

/// Up to `limit` expired messages, oldest expiry first.
pub async fn expired_messages(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    message::Entity::find()
        .filter(message::Column::ExpiresAt.lte(now))
        .order_by_asc(message::Column::ExpiresAt)
        .limit(limit)
        .all(db)
        .await
}

/// Raises a channel's purge high-water mark to `through` (never lowers it).
/// Called before the rows go, so no reader can see them gone but unmarked.
pub async fn mark_purged(db: &impl ConnectionTrait, channel: ChannelId, through: MessageId) -> Result<(), DbErr> {
    use sea_orm::Condition;
    channel::Entity::update_many()
        .col_expr(channel::Column::PurgedThrough, Expr::value(through))
        .filter(channel::Column::Id.eq(channel))
        .filter(
            Condition::any()
                .add(channel::Column::PurgedThrough.is_null())
                .add(channel::Column::PurgedThrough.lt(through)),
        )
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_messages(db: &impl ConnectionTrait, ids: Vec<MessageId>) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = message::Entity::delete_many().filter(message::Column::Id.is_in(ids)).exec(db).await?;
    Ok(result.rows_affected)
}

/// Up to `limit` channels whose last activity (last publish, else creation) is before `cutoff`.
pub async fn idle_channels(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<ChannelId>, DbErr> {
    use sea_orm::Condition;
    let idle = Condition::any().add(channel::Column::LastPublishedAt.lt(cutoff)).add(
        Condition::all().add(channel::Column::LastPublishedAt.is_null()).add(channel::Column::CreatedAt.lt(cutoff)),
    );
    channel::Entity::find()
        .select_only()
        .column(channel::Column::Id)
        .filter(idle)
        .order_by_asc(channel::Column::Id)
        .limit(limit)
        .into_tuple::<ChannelId>()
        .all(db)
        .await
}

/// Which of `keys` some message row points at.
pub async fn keys_in_use(db: &impl ConnectionTrait, keys: Vec<String>) -> Result<Vec<String>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    message::Entity::find()
        .select_only()
        .column(message::Column::PayloadObjectKey)
        .filter(message::Column::PayloadObjectKey.is_in(keys))
        .into_tuple::<String>()
        .all(db)
        .await
}

/// A page of (id, object key, created_at) of the messages after `after`
/// whose payload is an object in the store (not `payload_inline`), by id.
pub async fn message_keys_after(
    db: &impl ConnectionTrait,
    after: Option<MessageId>,
    limit: u64,
) -> Result<Vec<(MessageId, String, DateTime<Utc>)>, DbErr> {
    let mut query = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::PayloadObjectKey)
        .column(message::Column::CreatedAt)
        .filter(message::Column::PayloadInline.eq(false))
        .order_by_asc(message::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(message::Column::Id.gt(after));
    }
    query.into_tuple::<(MessageId, String, DateTime<Utc>)>().all(db).await
}

/// Up to `limit` grants revoked or expired before `cutoff`, by id.
pub async fn ended_grants(db: &impl ConnectionTrait, cutoff: DateTime<Utc>, limit: u64) -> Result<Vec<GrantId>, DbErr> {
    use sea_orm::Condition;
    let ended =
        Condition::any().add(read_grant::Column::RevokedAt.lt(cutoff)).add(read_grant::Column::ExpiresAt.lt(cutoff));
    read_grant::Entity::find()
        .select_only()
        .column(read_grant::Column::Id)
        .filter(ended)
        .order_by_asc(read_grant::Column::Id)
        .limit(limit)
        .into_tuple::<GrantId>()
        .all(db)
        .await
}

pub async fn delete_grants(db: &impl ConnectionTrait, ids: Vec<GrantId>) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = read_grant::Entity::delete_many().filter(read_grant::Column::Id.is_in(ids)).exec(db).await?;
    Ok(result.rows_affected)
}

//! Queries on `messages`.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::prelude::*;

use super::entity::{message, message_payload};
use crate::domain::{ChannelId, IdempotencyKey, MessageId};

/// Inserts all `models` with one statement (none: no statement).
pub async fn insert_many(db: &impl ConnectionTrait, models: Vec<message::Model>) -> Result<(), DbErr> {
    if models.is_empty() {
        return Ok(());
    }
    message::Entity::insert_many(models.into_iter().map(message::ActiveModel::from)).exec_without_returning(db).await?;
    Ok(())
}

/// Inserts the payloads kept in the database (`payload_inline` messages,
/// inserted before them in the same transaction), with one statement.
pub async fn insert_payloads(db: &impl ConnectionTrait, payloads: Vec<(MessageId, Vec<u8>)>) -> Result<(), DbErr> {
    if payloads.is_empty() {
        return Ok(());
    }
    let models = payloads.into_iter().map(|(message_id, bytes)| message_payload::ActiveModel {
        message_id: sea_orm::Set(message_id),
        bytes: sea_orm::Set(bytes),
    });
    message_payload::Entity::insert_many(models).exec_without_returning(db).await?;
    Ok(())
}

/// The payload of a `payload_inline` message, if its row is still there.
pub async fn inline_payload(db: &impl ConnectionTrait, message: MessageId) -> Result<Option<Vec<u8>>, DbErr> {
    Ok(message_payload::Entity::find_by_id(message).one(db).await?.map(|row| row.bytes))
}

/// The unexpired message a previous publish with this key created, if any.
pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel))
        .filter(message::Column::IdempotencyKey.eq(key.as_str()))
        .filter(message::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Removes an expired message still holding an idempotency key, so the key
/// can be used again (the sweeper would remove it later anyway).
pub async fn delete_expired_with_key(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Vec<message::Model>, DbErr> {
    let stale = message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel))
        .filter(message::Column::IdempotencyKey.eq(key.as_str()))
        .filter(message::Column::ExpiresAt.lte(now))
        .all(db)
        .await?;
    if let Some(newest) = stale.iter().map(|row| row.id).max() {
        super::sweep::mark_purged(db, channel, newest).await?;
    }
    for row in &stale {
        message::Entity::delete_by_id(row.id).exec(db).await?;
    }
    Ok(stale)
}

pub async fn count_live(db: &impl ConnectionTrait, channel: ChannelId, now: DateTime<Utc>) -> Result<u64, DbErr> {
    message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel))
        .filter(message::Column::ExpiresAt.gt(now))
        .count(db)
        .await
}

/// Unexpired messages after `after` (exclusive), oldest first.
pub async fn page_after(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    after: Option<MessageId>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<message::Model>, DbErr> {
    use sea_orm::{QueryOrder as _, QuerySelect as _};
    let mut query = message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel))
        .filter(message::Column::ExpiresAt.gt(now));
    if let Some(after) = after {
        query = query.filter(message::Column::Id.gt(after));
    }
    query.order_by_asc(message::Column::Id).limit(limit).all(db).await
}

/// The `n`-th newest unexpired message (0 = newest).
pub async fn nth_newest(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    n: u64,
    now: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    use sea_orm::{QueryOrder as _, QuerySelect as _};
    message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel))
        .filter(message::Column::ExpiresAt.gt(now))
        .order_by_desc(message::Column::Id)
        .offset(n)
        .limit(1)
        .one(db)
        .await
}

/// The oldest unexpired message.
pub async fn oldest(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    now: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    page_after(db, channel, None, now, 1).await.map(|mut rows| rows.pop())
}

/// The newest message id of a channel, expired or not: new ids must be above it.
pub async fn newest_id(db: &impl ConnectionTrait, channel: ChannelId) -> Result<Option<MessageId>, DbErr> {
    use sea_orm::{QueryOrder as _, QuerySelect as _};
    message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .filter(message::Column::ChannelId.eq(channel))
        .order_by_desc(message::Column::Id)
        .limit(1)
        .into_tuple::<MessageId>()
        .one(db)
        .await
}

pub async fn find(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    id: MessageId,
) -> Result<Option<message::Model>, DbErr> {
    message::Entity::find_by_id(id).filter(message::Column::ChannelId.eq(channel)).one(db).await
}

/// What a reader resuming after `cursor` needs to know, read in one
/// statement — one snapshot, so the purge mark and the rows agree.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct ResumeState {
    /// The channel's purge mark (sweeper).
    pub purged_through: Option<MessageId>,
    /// The newest message id, expired or not.
    pub newest: Option<MessageId>,
    /// The unexpired message `cap` places after the cursor (0-based): set
    /// when more than `cap` wait, without counting them all.
    pub past_cap: Option<MessageId>,
    /// Whether an expired message (not yet purged) follows the cursor.
    pub expired_after: bool,
}

/// [`ResumeState`] of `channel`; `None` when the channel does not exist.
/// One query where a resume took four (channel row, newest id, a count of
/// everything after the cursor, expired after it).
pub async fn resume_state(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    cursor: MessageId,
    now: DateTime<Utc>,
    cap: u64,
) -> Result<Option<ResumeState>, DbErr> {
    use sea_orm::QuerySelect as _;
    use sea_orm::sea_query::{Expr, Order, Query, QueryStatementBuilder as _, SelectStatement};

    use super::entity::channel as channel_entity;

    let ids = || -> SelectStatement {
        Query::select()
            .column((message::Entity, message::Column::Id))
            .from(message::Entity)
            .and_where(message::Column::ChannelId.eq(channel))
            .to_owned()
    };
    let sub = |query: SelectStatement| Expr::SubQuery(None, Box::new(query.into_sub_query_statement()));
    let newest = ids().order_by((message::Entity, message::Column::Id), Order::Desc).limit(1).to_owned();
    let past_cap = ids()
        .and_where(message::Column::Id.gt(cursor))
        .and_where(message::Column::ExpiresAt.gt(now))
        .order_by((message::Entity, message::Column::Id), Order::Asc)
        .limit(1)
        .offset(cap)
        .to_owned();
    let expired = ids()
        .and_where(message::Column::Id.gt(cursor))
        .and_where(message::Column::ExpiresAt.lte(now))
        .limit(1)
        .to_owned();
    channel_entity::Entity::find_by_id(channel)
        .select_only()
        .column(channel_entity::Column::PurgedThrough)
        .expr_as(sub(newest), "newest")
        .expr_as(sub(past_cap), "past_cap")
        .expr_as(Expr::exists(expired), "expired_after")
        .into_model::<ResumeState>()
        .one(db)
        .await
}

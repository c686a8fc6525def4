//! Queries on `read_grants`.

use chrono::{DateTime, Utc};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder};

use super::entity::read_grant;
use crate::domain::{ChannelId, GrantId, TokenHash};

pub async fn insert(db: &impl ConnectionTrait, model: read_grant::Model) -> Result<(), DbErr> {
    read_grant::Entity::insert(read_grant::ActiveModel::from(model)).exec_without_returning(db).await?;
    Ok(())
}

/// Up to `limit` grants after `after` (exclusive), oldest first (UUIDv7 ids
/// sort by creation), identical on both databases.
pub async fn page_for_channel(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    after: Option<GrantId>,
    limit: u64,
) -> Result<Vec<read_grant::Model>, DbErr> {
    use sea_orm::QuerySelect as _;
    let mut query = read_grant::Entity::find().filter(read_grant::Column::ChannelId.eq(channel));
    if let Some(after) = after {
        query = query.filter(read_grant::Column::Id.gt(after));
    }
    query.order_by_asc(read_grant::Column::Id).limit(limit).all(db).await
}

/// Every grant row of the channel, whatever its state: what the per-channel cap bounds.
pub async fn count_for_channel(db: &impl ConnectionTrait, channel: ChannelId) -> Result<u64, DbErr> {
    read_grant::Entity::find().filter(read_grant::Column::ChannelId.eq(channel)).count(db).await
}

pub async fn find(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    grant: GrantId,
) -> Result<Option<read_grant::Model>, DbErr> {
    read_grant::Entity::find_by_id(grant).filter(read_grant::Column::ChannelId.eq(channel)).one(db).await
}

/// One indexed lookup by the token's hash.
pub async fn find_by_token_hash(
    db: &impl ConnectionTrait,
    hash: &TokenHash,
) -> Result<Option<read_grant::Model>, DbErr> {
    read_grant::Entity::find().filter(read_grant::Column::TokenHash.eq(hash.as_str())).one(db).await
}

/// Sets `revoked_at` unless already set, so repeating a revoke keeps the first time.
pub async fn revoke(db: &impl ConnectionTrait, grant: GrantId, at: DateTime<Utc>) -> Result<(), DbErr> {
    read_grant::Entity::update_many()
        .col_expr(read_grant::Column::RevokedAt, Expr::value(at))
        .filter(read_grant::Column::Id.eq(grant))
        .filter(read_grant::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Builds the row for a new grant (the column mapping lives in db/).
pub fn new_model(
    id: GrantId,
    channel: ChannelId,
    token_hash: TokenHash,
    label: Option<&crate::domain::Label>,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> read_grant::Model {
    read_grant::Model {
        id,
        channel_id: channel,
        token_hash: token_hash.as_str().to_owned(),
        label: label.map(|l| l.as_str().to_owned()).filter(|l| !l.is_empty()),
        created_at: now,
        expires_at,
        revoked_at: None,
    }
}

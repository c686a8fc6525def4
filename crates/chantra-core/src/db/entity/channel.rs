use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, MessageId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ChannelId,
    /// "public" or "private" (see `domain::Visibility`).
    pub visibility: String,
    #[sea_orm(unique)]
    pub publish_token_hash: String,
    pub created_at: DateTimeUtc,
    pub last_published_at: Option<DateTimeUtc>,
    /// The newest id among this channel's messages removed once expired
    /// (the sweeper, a reused idempotency key): a reader resuming before it
    /// missed something, and is told so with `event: gap`.
    pub purged_through: Option<MessageId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::read_grant::Entity")]
    ReadGrant,
    #[sea_orm(has_many = "super::message::Entity")]
    Message,
}

impl Related<super::read_grant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ReadGrant.def()
    }
}

impl Related<super::message::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Message.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

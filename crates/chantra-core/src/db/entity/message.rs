use sea_orm::entity::prelude::*;

use crate::domain::{ChannelId, MessageId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    /// UUIDv7: the cursor readers resume from.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub payload_object_key: String,
    pub payload_size: i64,
    pub content_type: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub idempotency_key: Option<String>,
    /// The payload is a row of `message_payloads` (written with this row),
    /// not an object in the store: small payloads, PAYLOAD_INLINE_MAX_BYTES.
    pub payload_inline: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::channel::Entity",
        from = "Column::ChannelId",
        to = "super::channel::Column::Id",
        on_delete = "Cascade"
    )]
    Channel,
}

impl Related<super::channel::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Channel.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! channels, read_grants and messages (DESIGN §2).
//!
//! Ids are UUIDv7 so that the primary key of `messages` doubles as the
//! time-ordered cursor readers resume from. Token columns hold keyed Argon2id
//! hashes (hex), never tokens, and are unique so a lookup is one indexed query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Channels {
    Table,
    Id,
    Visibility,
    PublishTokenHash,
    CreatedAt,
    LastPublishedAt,
}

#[derive(DeriveIden)]
enum ReadGrants {
    Table,
    Id,
    ChannelId,
    TokenHash,
    Label,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ChannelId,
    PayloadObjectKey,
    PayloadSize,
    ContentType,
    CreatedAt,
    ExpiresAt,
    IdempotencyKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Channels::Table)
                    .col(ColumnDef::new(Channels::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Channels::Visibility).string_len(16).not_null())
                    .col(ColumnDef::new(Channels::PublishTokenHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(Channels::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Channels::LastPublishedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReadGrants::Table)
                    .col(ColumnDef::new(ReadGrants::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ReadGrants::ChannelId).uuid().not_null())
                    .col(ColumnDef::new(ReadGrants::TokenHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(ReadGrants::Label).string_len(200))
                    .col(ColumnDef::new(ReadGrants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ReadGrants::ExpiresAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(ReadGrants::RevokedAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_read_grants_channel")
                            .from(ReadGrants::Table, ReadGrants::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_read_grants_channel")
                    .table(ReadGrants::Table)
                    .col(ReadGrants::ChannelId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(ColumnDef::new(Messages::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Messages::ChannelId).uuid().not_null())
                    .col(ColumnDef::new(Messages::PayloadObjectKey).string_len(255).not_null())
                    .col(ColumnDef::new(Messages::PayloadSize).big_integer().not_null())
                    .col(ColumnDef::new(Messages::ContentType).string_len(255).not_null())
                    .col(ColumnDef::new(Messages::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Messages::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Messages::IdempotencyKey).string_len(255))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_channel")
                            .from(Messages::Table, Messages::ChannelId)
                            .to(Channels::Table, Channels::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_channel_id")
                    .table(Messages::Table)
                    .col(Messages::ChannelId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_expires_at")
                    .table(Messages::Table)
                    .col(Messages::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // NULL keys never collide on either database, so only publishes that
        // carry an Idempotency-Key are constrained.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_idempotency")
                    .table(Messages::Table)
                    .col(Messages::ChannelId)
                    .col(Messages::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Messages::Table).if_exists().to_owned()).await?;
        manager.drop_table(Table::drop().table(ReadGrants::Table).if_exists().to_owned()).await?;
        manager.drop_table(Table::drop().table(Channels::Table).if_exists().to_owned()).await
    }
}

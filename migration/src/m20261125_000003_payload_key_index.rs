//! An index on messages.payload_object_key, so the sweeper's orphan
//! reconciliation looks objects up by key instead of scanning.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    PayloadObjectKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_payload_object_key")
                    .table(Messages::Table)
                    .col(Messages::PayloadObjectKey)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("idx_messages_payload_object_key").table(Messages::Table).to_owned())
            .await
    }
}

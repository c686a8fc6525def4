//! channels.purged_through: the newest id of a channel's messages purged
//! after they expired, so a resuming reader is told of a gap in the middle
//! of what it missed (and a cursor older than the channel is not a gap).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Channels {
    Table,
    PurgedThrough,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Channels::Table)
                    .add_column(ColumnDef::new(Channels::PurgedThrough).uuid().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Channels::Table).drop_column(Channels::PurgedThrough).to_owned()).await
    }
}

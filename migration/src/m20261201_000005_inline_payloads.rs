//! Small payloads kept in the database: `messages.payload_inline` says a
//! message's payload is a row of `message_payloads`, written in the same
//! transaction as the message (the group commit), instead of an object in
//! the store. Its object key stays the message's name everywhere else.
//! The payload row goes with its message (`ON DELETE CASCADE`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    PayloadInline,
}

#[derive(DeriveIden)]
enum MessagePayloads {
    Table,
    MessageId,
    Bytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::PayloadInline).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MessagePayloads::Table)
                    .col(ColumnDef::new(MessagePayloads::MessageId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(MessagePayloads::Bytes).blob().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_message_payloads_message")
                            .from(MessagePayloads::Table, MessagePayloads::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MessagePayloads::Table).if_exists().to_owned()).await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::PayloadInline).to_owned()).await
    }
}

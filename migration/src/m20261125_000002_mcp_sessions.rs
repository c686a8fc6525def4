//! mcp_sessions: the state of MCP sessions (the client's initialize
//! parameters), so that any mcp replica can serve any session.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum McpSessions {
    Table,
    Id,
    State,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(McpSessions::Table)
                    .col(ColumnDef::new(McpSessions::Id).string_len(128).not_null().primary_key())
                    .col(ColumnDef::new(McpSessions::State).text().not_null())
                    .col(ColumnDef::new(McpSessions::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mcp_sessions_created_at")
                    .table(McpSessions::Table)
                    .col(McpSessions::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(McpSessions::Table).if_exists().to_owned()).await
    }
}

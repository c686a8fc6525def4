//! The schema of Chantra: one migration set that runs unchanged on PostgreSQL
//! and SQLite. Each migration lives in its own `mYYYYMMDD_HHMMSS_name.rs` file
//! because `DeriveMigrationName` names a migration after its file.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tables;
mod m20261125_000002_mcp_sessions;
mod m20261125_000003_payload_key_index;
mod m20261130_000004_channel_purged_through;
mod m20261201_000005_inline_payloads;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261125_000002_mcp_sessions::Migration),
            Box::new(m20261125_000003_payload_key_index::Migration),
            Box::new(m20261130_000004_channel_purged_through::Migration),
            Box::new(m20261201_000005_inline_payloads::Migration),
        ]
    }
}

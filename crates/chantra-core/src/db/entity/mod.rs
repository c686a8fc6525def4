//! SeaORM entities, one file per table (schema in `migration/`).

pub mod channel;
pub mod mcp_session;
pub mod message;
pub mod message_payload;
pub mod read_grant;

//! MCP sessions kept in the database, so a session opened on one mcp replica
//! is served by any other (no sticky load balancing needed).

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::{SessionState, SessionStore, SessionStoreError};
use sea_orm::DatabaseConnection;

use chantra_core::clock::Clock;
use chantra_core::db;

pub struct DbSessionStore {
    db: DatabaseConnection,
    clock: Clock,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection, clock: Clock) -> Arc<Self> {
        Arc::new(Self { db, clock })
    }
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match db::mcp_sessions::load(&self.db, session_id).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let json = serde_json::to_string(state)?;
        db::mcp_sessions::store(&self.db, session_id, json, self.clock.now()).await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        db::mcp_sessions::delete(&self.db, session_id).await?;
        Ok(())
    }
}

//! Read grants: who may read a private channel.

use chrono::{DateTime, Utc};

use super::views::{CreatedGrant, GrantState, GrantView};
use sea_orm::TransactionTrait as _;

use super::{Service, visibility_of};
use crate::db;
use crate::db::entity::read_grant;
use crate::domain::{ChannelId, GrantId, Label, PublishToken, ReadToken, Visibility};
use crate::error::AppError;
use crate::fanout::{HubEvent, Notice};

/// A grant may be given a lifetime of up to one year.
pub const MAX_GRANT_SECONDS: i64 = 365 * 24 * 60 * 60;

impl Service {
    pub async fn create_grant(
        &self,
        id: ChannelId,
        token: &PublishToken,
        label: Option<Label>,
        expires_in_seconds: Option<i64>,
    ) -> Result<CreatedGrant, AppError> {
        let channel = self.authorize_publisher(id, token).await?;
        if visibility_of(&channel)? == Visibility::Public {
            return Err(AppError::Conflict {
                code: "channel_is_public",
                message: "public channels are readable by anyone; read grants exist only on private channels".into(),
            });
        }
        let now = self.clock.now();
        let expires_at = match expires_in_seconds {
            None => None,
            Some(secs) if (1..=MAX_GRANT_SECONDS).contains(&secs) => Some(now + chrono::Duration::seconds(secs)),
            Some(secs) => {
                return Err(AppError::bad_request(
                    "invalid_expiry",
                    format!("expires_in_seconds must be between 1 and {MAX_GRANT_SECONDS} (one year), got {secs}"),
                ));
            }
        };
        let read_token = ReadToken::generate();
        let grant_id = GrantId::new();
        let row =
            db::grants::new_model(grant_id, id, self.hasher.hash_read(&read_token), label.as_ref(), now, expires_at);
        let label = row.label.clone();
        db::grants::insert(&self.db, row).await?;
        tracing::info!(channel = %id, grant = %grant_id, "read grant created");
        Ok(CreatedGrant {
            grant_id: grant_id.to_string(),
            read_token: read_token.expose().to_owned(),
            label,
            created_at: now,
            expires_at,
        })
    }

    /// Idempotent: revoking a revoked grant returns it unchanged.
    pub async fn revoke_grant(
        &self,
        id: ChannelId,
        token: &PublishToken,
        grant: GrantId,
    ) -> Result<GrantView, AppError> {
        self.authorize_publisher(id, token).await?;
        let now = self.clock.now();
        if db::grants::find(&self.db, id, grant).await?.is_none() {
            return Err(AppError::GrantNotFound);
        }
        // Spawned, so that a dropped request cannot separate the commit from
        // the disconnection of local readers.
        let this = self.clone();
        tokio::spawn(async move {
            let txn = this.db.begin().await?;
            db::grants::revoke(&txn, grant, now).await?;
            this.fanout.notify(&txn, Notice::Revoked { channel: id.as_uuid(), grant: grant.as_uuid() }).await?;
            txn.commit().await?;
            this.fanout.deliver_local(id.as_uuid(), || HubEvent::GrantRevoked(grant.as_uuid()));
            Ok::<(), AppError>(())
        })
        .await
        .map_err(|_| AppError::Internal)??;
        let row = db::grants::find(&self.db, id, grant).await?.ok_or(AppError::GrantNotFound)?;
        tracing::info!(channel = %id, %grant, "read grant revoked");
        Ok(view(&row, now))
    }
}

pub(super) fn view(row: &read_grant::Model, now: DateTime<Utc>) -> GrantView {
    let state = if row.revoked_at.is_some() {
        GrantState::Revoked
    } else if row.expires_at.is_some_and(|at| at <= now) {
        GrantState::Expired
    } else {
        GrantState::Active
    };
    GrantView {
        grant_id: row.id.hyphenated().to_string(),
        label: row.label.clone(),
        state,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

//! Read grants: who may read a private channel.

use chrono::{DateTime, Utc};

use super::views::{CreatedGrant, GrantPage, GrantState, GrantView};
use sea_orm::TransactionTrait as _;

use super::{Service, visibility_of};
use crate::db;
use crate::db::entity::read_grant;
use crate::domain::{ChannelId, GrantId, Label, PublishToken, ReadToken, Visibility};
use crate::error::AppError;
use crate::fanout::{HubEvent, Notice};

/// A grant may be given a lifetime of up to one year.
pub const MAX_GRANT_SECONDS: i64 = 365 * 24 * 60 * 60;
/// Grants shown in a channel's metadata; the list endpoint pages through the rest.
pub const GRANTS_IN_VIEW: u64 = 100;
/// Largest page of the grant list (a grant's view is about 250 bytes).
pub const MAX_GRANT_PAGE: u64 = 500;

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
        // Counted and inserted under the channel's lock, so concurrent
        // creations cannot overshoot the cap. Revoked and expired grants
        // count until the sweeper purges them: the bound is on rows.
        let txn = self.db.begin().await?;
        if !db::channels::lock(&txn, id).await? {
            return Err(AppError::ChannelNotFound);
        }
        let held = db::grants::count_for_channel(&txn, id).await?;
        let max = self.settings.max_grants_per_channel;
        if held >= max {
            return Err(AppError::Conflict {
                code: "too_many_grants",
                message: format!(
                    "this channel already holds {held} read grants, the limit of {max}; revoked and expired \
                     grants count until they are purged {} s after they end; revoke grants no longer used",
                    self.settings.grant_purge_grace.num_seconds()
                ),
            });
        }
        db::grants::insert(&txn, row).await?;
        txn.commit().await?;
        tracing::info!(channel = %id, grant = %grant_id, "read grant created");
        Ok(CreatedGrant {
            grant_id: grant_id.to_string(),
            read_token: read_token.expose().to_owned(),
            label,
            created_at: now,
            expires_at,
        })
    }

    /// A page of the channel's grants, oldest first, after the grant `after`.
    pub async fn list_grants(
        &self,
        id: ChannelId,
        token: &PublishToken,
        after: Option<GrantId>,
        limit: u64,
    ) -> Result<GrantPage, AppError> {
        self.authorize_publisher(id, token).await?;
        let limit = limit.clamp(1, MAX_GRANT_PAGE);
        let now = self.clock.now();
        // One more than asked for says whether more follow.
        let mut rows = db::grants::page_for_channel(&self.db, id, after, limit + 1).await?;
        let has_more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = rows.last().map(|g| g.id.to_string()).or_else(|| after.map(|a| a.to_string()));
        Ok(GrantPage { read_grants: rows.iter().map(|g| view(g, now)).collect(), next_cursor, has_more })
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
            this.fanout.notify(&txn, Notice::Revoked { channel: id, grant }).await?;
            txn.commit().await?;
            this.fanout.committed(&[Notice::Revoked { channel: id, grant }]);
            this.fanout.deliver_local(id, || HubEvent::GrantRevoked(grant));
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
        grant_id: row.id.to_string(),
        label: row.label.clone(),
        state,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

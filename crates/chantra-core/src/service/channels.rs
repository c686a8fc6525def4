//! Creating, describing and deleting channels.

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait as _;

use super::views::{ChannelView, CreatedChannel};
use super::{Service, visibility_of};
use crate::db;
use crate::domain::{ChannelId, GrantId, Label, PublishToken, ReadToken, Visibility};
use crate::error::AppError;
use crate::fanout::{HubEvent, Notice};
use crate::payload;

/// Label of the grant created with a private channel.
const INITIAL_GRANT_LABEL: &str = "initial";

impl Service {
    /// Creates a channel; a private one gets its first read grant in the same
    /// transaction, so a channel never exists without the token we returned.
    pub async fn create_channel(&self, visibility: Visibility) -> Result<CreatedChannel, AppError> {
        let now = self.clock.now();
        let id = ChannelId::new();
        let publish_token = PublishToken::generate();
        let row = db::channels::new_model(
            id,
            visibility.as_str(),
            self.hasher.hash_publish(&publish_token).as_str().to_owned(),
            now,
        );

        let txn = self.db.begin().await?;
        db::channels::insert(&txn, row).await?;
        let first_grant = match visibility {
            Visibility::Public => None,
            Visibility::Private => {
                let token = ReadToken::generate();
                let label = Label::parse(INITIAL_GRANT_LABEL)?;
                let grant_id = GrantId::new();
                let grant = db::grants::new_model(grant_id, id, self.hasher.hash_read(&token), Some(&label), now, None);
                db::grants::insert(&txn, grant).await?;
                Some((grant_id, token))
            }
        };
        txn.commit().await?;
        tracing::info!(channel = %id, %visibility, "channel created");

        Ok(CreatedChannel {
            channel_id: id.to_string(),
            visibility,
            url: self.channel_url(id, visibility),
            publish_token: publish_token.expose().to_owned(),
            read_token: first_grant.as_ref().map(|(_, token)| token.expose().to_owned()),
            read_grant_id: first_grant.map(|(grant, _)| grant.to_string()),
            created_at: now,
        })
    }

    pub async fn get_channel(&self, id: ChannelId, token: &PublishToken) -> Result<ChannelView, AppError> {
        let channel = self.authorize_publisher(id, token).await?;
        let visibility = visibility_of(&channel)?;
        let now = self.clock.now();
        // The view is the first page of the grant list, so one response stays small.
        let grants = db::grants::page_for_channel(&self.db, id, None, super::grants::GRANTS_IN_VIEW).await?;
        let read_grants_total = db::grants::count_for_channel(&self.db, id).await?;
        let live_messages = db::messages::count_live(&self.db, id, now).await?;
        let last_activity = channel.last_published_at.unwrap_or(channel.created_at);
        Ok(ChannelView {
            channel_id: id.to_string(),
            visibility,
            url: self.channel_url(id, visibility),
            created_at: channel.created_at,
            last_published_at: channel.last_published_at,
            idle_deletion_at: last_activity + self.settings.channel_idle,
            live_messages,
            read_grants_truncated: read_grants_total > grants.len() as u64,
            read_grants: grants.iter().map(|g| super::grants::view(g, now)).collect(),
            read_grants_total,
        })
    }

    /// Deletes the row first (grants and messages go by cascade), so the
    /// channel disappears for every reader at once; then its objects. If the
    /// store is down at that moment the objects are orphans, which the
    /// sweeper's reconciliation and the bucket lifecycle rule remove.
    pub async fn delete_channel(&self, id: ChannelId, token: &PublishToken) -> Result<(), AppError> {
        self.authorize_publisher(id, token).await?;
        if !self.remove_channel(id, None).await? {
            return Err(AppError::ChannelNotFound);
        }
        Ok(())
    }

    /// Deletes a channel without asking for its token (the publisher's
    /// delete, and the sweeper's idle deletion, which passes `idle_before`
    /// so a channel published to meanwhile survives). Returns false if it
    /// was not deleted. Live streams on it end with `event: deleted`.
    pub async fn remove_channel(&self, id: ChannelId, idle_before: Option<DateTime<Utc>>) -> Result<bool, AppError> {
        self.publish_auth.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        let this = self.clone();
        // Spawned, so that a client hanging up or a request timeout cannot
        // stop it between the commit and the delivery to local readers.
        let removed = tokio::spawn(async move {
            let txn = this.db.begin().await?;
            let deleted = match idle_before {
                None => db::channels::delete(&txn, id).await?,
                Some(cutoff) => db::channels::delete_if_idle(&txn, id, cutoff).await?,
            };
            if !deleted {
                return Ok::<bool, AppError>(false);
            }
            this.fanout.notify(&txn, Notice::Deleted { channel: id }).await?;
            txn.commit().await?;
            this.fanout.committed(&[Notice::Deleted { channel: id }]);
            this.fanout.deliver_local(id, || HubEvent::Deleted);
            Ok(true)
        })
        .await
        .map_err(|_| AppError::Internal)??;
        if !removed {
            return Ok(false);
        }
        tracing::info!(channel = %id, "channel deleted");
        if let Err(err) = self.store.delete_prefix(&payload::channel_prefix(id)).await {
            tracing::warn!(channel = %id, error = %err, "channel deleted but its payload objects remain; the sweeper will remove them");
        }
        Ok(true)
    }
}

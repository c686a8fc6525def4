//! Payloads in an S3-compatible bucket through rust-s3 (rustls, path-style
//! addressing so MinIO and garage work without wildcard DNS).

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::serde_types::{BucketLifecycleConfiguration, Expiration, LifecycleFilter, LifecycleRule, ObjectIdentifier};
use s3::{Bucket, BucketConfiguration, Region};

use chantra_core::payload::{ExpiryRule, PayloadStore, S3Config, StoreError, StoredObject};

/// S3's DeleteObjects takes at most 1,000 keys per call.
const DELETE_BATCH: usize = 1000;

pub struct S3Store {
    bucket: Box<Bucket>,
}

impl S3Store {
    /// Connects and creates the bucket when it does not exist yet.
    pub async fn open(config: &S3Config) -> anyhow::Result<Self> {
        let region = Region::Custom { region: config.region.clone(), endpoint: config.endpoint.clone() };
        let credentials =
            Credentials::new(Some(&config.access_key), Some(config.secret_key.expose()), None, None, None)
                .context("S3_ACCESS_KEY/S3_SECRET_KEY: invalid credentials")?;
        let mut bucket = Bucket::new(&config.bucket, region.clone(), credentials.clone())
            .context("S3_BUCKET: invalid bucket settings")?
            .with_path_style();
        bucket.set_request_timeout(Some(config.timeout));

        let store = Self { bucket };
        let exists = match store.probe().await {
            Ok(()) => true,
            Err(S3Error::HttpFailWithBody(404, _)) => false,
            Err(e) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("S3_ENDPOINT: cannot reach {} (bucket {})", config.endpoint, config.bucket)
                });
            }
        };
        if !exists {
            Bucket::create_with_path_style(&config.bucket, region, credentials, BucketConfiguration::default())
                .await
                .with_context(|| format!("S3_BUCKET: bucket {} is missing and could not be created", config.bucket))?;
            tracing::info!(bucket = %config.bucket, "created S3 bucket");
        }
        Ok(store)
    }

    /// Lists at most one key: proves the endpoint answers, the credentials
    /// sign correctly and the bucket exists (404 when it does not).
    async fn probe(&self) -> Result<(), S3Error> {
        self.bucket.list_page("chantra-probe/".to_owned(), None, None, None, Some(1)).await?;
        Ok(())
    }
}

fn unavailable(action: &str, key: &str, err: S3Error) -> StoreError {
    StoreError::Unavailable(format!("s3 {action} {key}: {err}"))
}

#[async_trait]
impl PayloadStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.bucket
            .put_object_with_content_type(key, &bytes, content_type)
            .await
            .map_err(|e| unavailable("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        match self.bucket.get_object(key).await {
            Ok(response) => Ok(response.into_bytes()),
            Err(S3Error::HttpFailWithBody(404, _)) => Err(StoreError::NotFound),
            Err(e) => Err(unavailable("get", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.bucket.delete_object(key).await {
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(unavailable("delete", key, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let pages = self.bucket.list(prefix.to_owned(), None).await.map_err(|e| unavailable("list", prefix, e))?;
        let keys: Vec<ObjectIdentifier> = pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|object| ObjectIdentifier { key: object.key, version_id: None })
            .collect();
        for batch in keys.chunks(DELETE_BATCH) {
            self.bucket.delete_objects(batch.to_vec()).await.map_err(|e| unavailable("delete", prefix, e))?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StoreError> {
        let pages = self.bucket.list(prefix.to_owned(), None).await.map_err(|e| unavailable("list", prefix, e))?;
        Ok(pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|object| StoredObject {
                modified: chrono::DateTime::parse_from_rfc3339(&object.last_modified)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_else(|_| chrono::Utc::now()),
                key: object.key,
            })
            .collect())
    }

    async fn ensure_expiry_rule(&self, days: u32) -> Result<ExpiryRule, StoreError> {
        match self.bucket.get_bucket_lifecycle().await {
            Ok(config)
                if config
                    .rules
                    .iter()
                    .any(|r| r.status == "Enabled" && r.expiration.as_ref().is_some_and(|e| e.days.is_some())) =>
            {
                return Ok(ExpiryRule::AlreadyPresent);
            }
            Ok(_) | Err(S3Error::HttpFailWithBody(404, _)) => {}
            Err(S3Error::HttpFailWithBody(code, body)) if (400..500).contains(&code) => {
                return Ok(ExpiryRule::Unsupported(format!(
                    "HTTP {code}: {}",
                    body.chars().take(200).collect::<String>()
                )));
            }
            Err(e) => return Err(unavailable("get lifecycle", &self.bucket.name(), e)),
        }
        let rule = LifecycleRule::builder("Enabled")
            .id("chantra-expire-orphans")
            .filter(LifecycleFilter { prefix: Some("channels/".into()), ..Default::default() })
            .expiration(Expiration::new(None, Some(days), None))
            .build();
        match self.bucket.put_bucket_lifecycle(BucketLifecycleConfiguration::new(vec![rule])).await {
            Ok(_) => Ok(ExpiryRule::Created),
            Err(S3Error::HttpFailWithBody(code, body)) if (400..500).contains(&code) => {
                Ok(ExpiryRule::Unsupported(format!("HTTP {code}: {}", body.chars().take(200).collect::<String>())))
            }
            Err(e) => Err(unavailable("put lifecycle", &self.bucket.name(), e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.probe().await.map_err(|e| unavailable("list", &self.bucket.name(), e))
    }
}

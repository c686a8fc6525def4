//! Domain types parsed once at the edge ("parse, don't validate"): ids,
//! visibility, TTLs and tokens. Every constructor that takes outside input
//! returns a `Result`, so a value of one of these types is always valid.

mod base64;
mod ids;
mod limits;
mod secret;
mod token;
mod visibility;

pub use base64::decode_base64;
pub use ids::{ChannelId, GrantId, MessageId, ParseIdError};
pub use limits::{
    ContentType, DEFAULT_CHANNEL_IDLE_DAYS, DEFAULT_MAX_PAYLOAD_BYTES, IdempotencyKey, Label, MAX_TTL_SECONDS, Ttl,
    ValidationError,
};
pub use secret::Secret;
pub use token::{PublishToken, ReadToken, TokenError, TokenFingerprint, TokenHash, TokenHasher};
pub use visibility::Visibility;

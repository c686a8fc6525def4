//! Typed UUIDv7 identifiers. A `MessageId` is also the cursor readers resume
//! from: UUIDv7 sorts by creation time, so `id > cursor` means "newer".
//!
//! Each id is a SeaORM value type (`DeriveValueType`): entity columns, query
//! filters and fan-out notices carry the typed id, stored as the same UUID
//! column as before, so a channel id cannot be passed where a grant id is meant.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {what} (expected a UUID such as 0192f3c4-8b7a-7cde-9f01-23456789abcd)")]
pub struct ParseIdError {
    what: &'static str,
    input: String,
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, sea_orm::DeriveValueType)]
        pub struct $name(Uuid);

        /// Required of a primary key's type; ids are never auto-incremented.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn parse(input: &str) -> Result<Self, ParseIdError> {
                // Uuid::parse_str accepts braces and URNs; ids on our wire are
                // always the plain hyphenated form, so ask for exactly that.
                let shown: String = input.chars().take(64).collect();
                if input.len() != 36 {
                    return Err(ParseIdError { what: $what, input: shown });
                }
                Uuid::try_parse(input).map(Self).map_err(|_| ParseIdError { what: $what, input: shown })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(ChannelId, "channel id");
id_type!(MessageId, "message id");
id_type!(GrantId, "grant id");

impl MessageId {
    /// A fresh id strictly greater than `newest`, so a channel's ids grow in
    /// commit order even if another host's clock runs ahead of ours.
    pub fn next_after(newest: Option<MessageId>) -> Self {
        let candidate = Uuid::now_v7();
        match newest {
            Some(Self(newest)) if newest >= candidate => Self(Uuid::from_u128(newest.as_u128().wrapping_add(1))),
            _ => Self(candidate),
        }
    }

    /// The smallest possible id at `unix_millis`: every message created at or
    /// after that moment sorts above it (for `?since=`).
    pub fn floor_at(unix_millis: u64) -> Self {
        Self(Uuid::from_u128(u128::from(unix_millis & 0xFFFF_FFFF_FFFF) << 80))
    }

    /// The smallest possible id of the moment `ago` before now, by this
    /// host's clock (the clock `Uuid::now_v7` reads).
    pub fn floor_ago(ago: std::time::Duration) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::floor_at(u64::try_from(now.saturating_sub(ago).as_millis()).unwrap_or(u64::MAX))
    }

    /// Below every id: the cursor of a channel with no messages yet.
    pub const MIN: Self = Self(Uuid::nil());

    /// The cursor right before this id, so a replay after it starts with this message.
    pub fn just_before(self) -> Self {
        Self(Uuid::from_u128(self.0.as_u128().wrapping_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hyphenated_uuid() {
        let id = ChannelId::new();
        assert_eq!(ChannelId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in ["", "abc", "not-a-uuid-at-all-not-a-uuid-at-all", "{0192f3c4-8b7a-7cde-9f01-23456789abcd}"] {
            let err = MessageId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("not a valid message id"), "{err}");
        }
        let simple = Uuid::now_v7().simple().to_string();
        assert!(GrantId::parse(&simple).is_err());
    }

    #[test]
    fn next_after_stays_above_a_future_id() {
        let future = MessageId(Uuid::from_u128(MessageId::floor_at(u64::MAX >> 16).0.as_u128() | 0x7000 << 64));
        assert!(MessageId::next_after(Some(future)) > future);
        let past = MessageId::new();
        assert!(MessageId::next_after(Some(past)) > past);
        assert_eq!(MessageId::next_after(None).0.get_version_num(), 7);
    }

    #[test]
    fn floor_sorts_below_ids_of_that_millisecond() {
        let id = Uuid::now_v7();
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(MessageId::floor_at(millis) < MessageId(id));
        assert!(MessageId::floor_at(millis + 1) > MessageId(id));
    }

    #[test]
    fn floor_ago_is_the_floor_of_that_moment() {
        let floor = MessageId::floor_ago(std::time::Duration::ZERO);
        assert!(floor <= MessageId::new(), "an id made after it sorts above it");
        let ago = MessageId::floor_ago(std::time::Duration::from_secs(5));
        let gap_millis = (floor.0.as_u128() - ago.0.as_u128()) >> 80;
        assert!((5_000..5_100).contains(&gap_millis), "{gap_millis} ms");
    }

    #[test]
    fn just_before_is_the_cursor_that_replays_an_id() {
        let id = MessageId::new();
        assert!(id.just_before() < id);
        assert_eq!(id.just_before().0.as_u128() + 1, id.0.as_u128());
        assert!(MessageId::MIN <= MessageId::floor_at(0));
    }

    #[test]
    fn ids_are_stored_as_plain_uuids() {
        use sea_orm::sea_query::{ColumnType, ValueType};
        let id = GrantId::new();
        assert_eq!(sea_orm::Value::from(id), sea_orm::Value::from(id.0));
        assert_eq!(<ChannelId as ValueType>::column_type(), ColumnType::Uuid);
        assert_eq!(<MessageId as ValueType>::try_from(sea_orm::Value::from(id.0)).ok(), Some(MessageId(id.0)));
    }

    #[test]
    fn message_ids_sort_by_creation() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
    }
}

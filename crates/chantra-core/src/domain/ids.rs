//! Typed UUIDv7 identifiers. A `MessageId` is also the cursor readers resume
//! from: UUIDv7 sorts by creation time, so `id > cursor` means "newer".

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
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

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
    pub fn next_after(newest: Option<Uuid>) -> Self {
        let candidate = Uuid::now_v7();
        match newest {
            Some(newest) if newest >= candidate => Self(Uuid::from_u128(newest.as_u128().wrapping_add(1))),
            _ => Self(candidate),
        }
    }

    /// The smallest possible id at `unix_millis`: every message created at or
    /// after that moment sorts above it (for `?since=`).
    pub fn floor_at(unix_millis: u64) -> Uuid {
        Uuid::from_u128(u128::from(unix_millis & 0xFFFF_FFFF_FFFF) << 80)
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
        let future = Uuid::from_u128(MessageId::floor_at(u64::MAX >> 16).as_u128() | 0x7000 << 64);
        assert!(MessageId::next_after(Some(future)).as_uuid() > future);
        let past = MessageId::new().as_uuid();
        assert!(MessageId::next_after(Some(past)).as_uuid() > past);
        assert_eq!(MessageId::next_after(None).as_uuid().get_version_num(), 7);
    }

    #[test]
    fn floor_sorts_below_ids_of_that_millisecond() {
        let id = Uuid::now_v7();
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
        assert!(MessageId::floor_at(millis) < id);
        assert!(MessageId::floor_at(millis + 1) > id);
    }

    #[test]
    fn message_ids_sort_by_creation() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
    }
}

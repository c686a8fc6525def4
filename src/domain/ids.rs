//! Typed UUIDv7 identifiers. A `MessageId` is also the cursor readers resume
//! from: UUIDv7 sorts by creation time, so `id > cursor` means "newer".

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a valid {what} (expected a UUID such as 0192f3c4-8b7a-7cde-9f01-23456789abcd)"
)]
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
                    return Err(ParseIdError {
                        what: $what,
                        input: shown,
                    });
                }
                Uuid::try_parse(input).map(Self).map_err(|_| ParseIdError {
                    what: $what,
                    input: shown,
                })
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
        for bad in [
            "",
            "abc",
            "not-a-uuid-at-all-not-a-uuid-at-all",
            "{0192f3c4-8b7a-7cde-9f01-23456789abcd}",
        ] {
            let err = MessageId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("not a valid message id"), "{err}");
        }
        let simple = Uuid::now_v7().simple().to_string();
        assert!(GrantId::parse(&simple).is_err());
    }

    #[test]
    fn message_ids_sort_by_creation() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
    }
}

//! Ids and cursors: `ChannelId`, `MessageId` and `GrantId` accept exactly the
//! hyphenated UUID form (any case) and print it back in lower case; errors
//! never echo more than a bounded piece of the input; the `?since=` floor
//! sorts below every id of its millisecond; `next_after` keeps a channel's
//! ids growing; NOTIFY payloads round-trip.

use chantra_core::domain::{ChannelId, GrantId, MessageId};
use chantra_core::fanout::Notice;
use proptest::prelude::*;
use uuid::Uuid;

use crate::cases;

/// The accepted shape, written independently of the parser.
fn hyphenated(input: &str) -> bool {
    let groups: Vec<&str> = input.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        // One character off: a non-hex digit, a missing or extra character, other UUID spellings.
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-fg-z]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}",
        "[0-9a-f]{32}",
        "\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}",
        "urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[ \t]?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[ \t]?",
        "[0-9a-f]{8}[-_+][0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        any::<String>(),
        ".{30,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn every_uuid_round_trips(bits in any::<u128>()) {
        let uuid = Uuid::from_u128(bits);
        let text = uuid.hyphenated().to_string();
        prop_assert_eq!(ChannelId::parse(&text).map(|id| id.as_uuid()), Ok(uuid));
        prop_assert_eq!(MessageId::parse(&text.to_uppercase()).map(|id| id.to_string()), Ok(text.clone()));
        prop_assert_eq!(GrantId::parse(&text).map(|id| id.to_string()), Ok(text));
    }

    #[test]
    fn only_the_hyphenated_form_is_accepted(input in id_like()) {
        let parsed = MessageId::parse(&input);
        prop_assert_eq!(parsed.is_ok(), hyphenated(&input), "{:?}", input);
        prop_assert_eq!(ChannelId::parse(&input).is_ok(), parsed.is_ok());
        prop_assert_eq!(GrantId::parse(&input).is_ok(), parsed.is_ok());
        match parsed {
            Ok(id) => prop_assert_eq!(id.to_string(), input.to_ascii_lowercase()),
            Err(err) => {
                // The message names the kind and quotes at most 64 characters of the input.
                let message = err.to_string();
                prop_assert!(message.contains("is not a valid message id"), "{}", message);
                prop_assert!(message.chars().count() <= 64 + 120, "{} chars", message.chars().count());
            }
        }
    }

    #[test]
    fn since_floor_sorts_below_its_millisecond(millis in 0u64..(1 << 48), rand in any::<u128>()) {
        // Any v7 id created at `millis`, whatever its random bits.
        let id = Uuid::from_u128((u128::from(millis) << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1)));
        let id = MessageId::from_uuid(id);
        prop_assert!(MessageId::floor_at(millis) <= id);
        if millis + 1 < 1 << 48 {
            prop_assert!(MessageId::floor_at(millis + 1) > id);
            prop_assert!(MessageId::floor_at(millis) < MessageId::floor_at(millis + 1));
        }
    }

    #[test]
    fn next_after_is_always_newer(newest in 0..u128::MAX) {
        let newest = MessageId::from_uuid(Uuid::from_u128(newest));
        let next = MessageId::next_after(Some(newest));
        prop_assert!(next > newest, "{} after {}", next, newest);
    }

    #[test]
    fn notices_round_trip(channel in any::<u128>(), other in any::<u128>(), kind in 0..3u8) {
        let (channel, other) = (ChannelId::from_uuid(Uuid::from_u128(channel)), Uuid::from_u128(other));
        let notice = match kind {
            0 => Notice::Message { channel, message: MessageId::from_uuid(other) },
            1 => Notice::Deleted { channel },
            _ => Notice::Revoked { channel, grant: GrantId::from_uuid(other) },
        };
        let encoded = notice.encode();
        prop_assert!(encoded.len() < 8000, "NOTIFY payloads stay under PostgreSQL's limit");
        prop_assert_eq!(Notice::parse(&encoded), Some(notice));
        prop_assert_eq!(notice.channel(), channel);
        // Anything appended or cut off is refused, never misread.
        prop_assert_eq!(Notice::parse(&format!("{encoded} x")), None);
        prop_assert_eq!(Notice::parse(&encoded[..encoded.len() - 1]), None);
    }

    #[test]
    fn arbitrary_notify_payloads_never_panic(payload in prop_oneof![
        any::<String>(),
        "[mdrx] [0-9a-f-]{30,40}( [0-9a-f-]{30,40})?( .*)?",
    ]) {
        if let Some(notice) = Notice::parse(&payload) {
            // What parses re-encodes to something that parses to the same notice.
            prop_assert_eq!(Notice::parse(&notice.encode()), Some(notice));
        }
    }
}

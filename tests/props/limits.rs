//! Bounded client values: TTLs (`?ttl=` and `ttl_seconds`), content types,
//! idempotency keys and grant labels. Each is accepted exactly when it is
//! within the documented limits, keeps what the client meant, and refuses
//! everything else with its stable error code — never a panic.

use chantra_core::domain::{ContentType, IdempotencyKey, Label, MAX_TTL_SECONDS, Ttl};
use proptest::prelude::*;

use crate::cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn ttl_from_any_number_of_seconds(seconds in prop_oneof![any::<i64>(), -5i64..172_810, Just(i64::MIN), Just(i64::MAX)]) {
        let in_range = (1..=MAX_TTL_SECONDS as i64).contains(&seconds);
        match Ttl::from_seconds(seconds) {
            Ok(ttl) => {
                prop_assert!(in_range, "{}", seconds);
                prop_assert_eq!(ttl.seconds(), seconds as u64);
                prop_assert_eq!(ttl.as_duration().as_secs(), seconds as u64);
            }
            Err(err) => {
                prop_assert!(!in_range, "{}", seconds);
                prop_assert_eq!(err.code, "invalid_ttl");
            }
        }
    }

    #[test]
    fn ttl_query_values(input in prop_oneof![
        any::<String>(),
        "[ \t]{0,2}[+-]?[0-9]{1,25}[ \t]{0,2}",
        "[0-9]{1,6}(s|h|\\.0|e3| 1)",
    ]) {
        let expected = input.trim().parse::<i64>().ok().filter(|s| (1..=MAX_TTL_SECONDS as i64).contains(s));
        match Ttl::parse(&input) {
            Ok(ttl) => prop_assert_eq!(Some(ttl.seconds() as i64), expected, "{:?}", input),
            Err(err) => {
                prop_assert_eq!(expected, None, "{:?}", input);
                prop_assert_eq!(err.code, "invalid_ttl");
            }
        }
    }

    #[test]
    fn content_types(input in prop_oneof![
        any::<String>(),
        "[ ]?[a-z]{1,20}/[a-z0-9.+-]{1,20}(; ?charset=[a-z0-9-]{1,10})?[ ]?",
        "[a-z]{1,10}/[\\x00-\\x7f\u{e9}]{0,300}",
    ]) {
        let value = input.trim();
        let valid = !value.is_empty()
            && value.len() <= 255
            && value.contains('/')
            && value.chars().all(|c| (' '..='~').contains(&c));
        match ContentType::parse(&input) {
            Ok(ct) => {
                prop_assert!(valid, "{:?}", input);
                prop_assert_eq!(ct.as_str(), value);
            }
            Err(err) => {
                prop_assert!(!valid, "{:?}", input);
                prop_assert_eq!(err.code, "invalid_content_type");
            }
        }
    }

    #[test]
    fn idempotency_keys(input in prop_oneof![any::<String>(), "[!-~]{1,255}", "[!-~]{250,260}", "[!-~ ]{0,20}"]) {
        let valid = (1..=255).contains(&input.len()) && input.chars().all(|c| c.is_ascii_graphic());
        match IdempotencyKey::parse(&input) {
            Ok(key) => {
                prop_assert!(valid, "{:?}", input);
                prop_assert_eq!(key.as_str(), input.as_str(), "kept verbatim, never trimmed");
            }
            Err(err) => {
                prop_assert!(!valid, "{:?}", input);
                prop_assert_eq!(err.code, "invalid_idempotency_key");
            }
        }
    }

    #[test]
    fn labels(input in prop_oneof![any::<String>(), "\\PC{0,200}", "\\PC{195,205}", "[ ]{0,3}\\PC{0,10}[\n\t\r\u{7f}\u{85}]\\PC{0,10}"]) {
        let value = input.trim();
        let valid = value.chars().count() <= 200 && !value.chars().any(char::is_control);
        match Label::parse(&input) {
            Ok(label) => {
                prop_assert!(valid, "{:?}", input);
                prop_assert_eq!(label.as_str(), value);
            }
            Err(err) => {
                prop_assert!(!valid, "{:?}", input);
                prop_assert_eq!(err.code, "invalid_label");
            }
        }
    }
}

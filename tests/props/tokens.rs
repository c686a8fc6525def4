//! Publish and read tokens: every well-formed token parses back to itself,
//! anything else is refused without a panic, the two kinds never stand in for
//! each other, and neither `Debug` nor the stored hash reveals the secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chantra_core::domain::{PublishToken, ReadToken, TokenError, TokenHasher};
use proptest::prelude::*;

use crate::cases;

/// The documented shape, written independently of the parser: a prefix and
/// 43 characters of the URL-safe base64 alphabet.
fn well_formed(input: &str, prefix: &str) -> bool {
    let Some(body) = input.trim().strip_prefix(prefix) else { return false };
    body.chars().count() == 43 && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Strings that are near misses of a token: right prefix, wrong body.
fn near_misses() -> impl Strategy<Value = String> {
    prop_oneof![
        "ch[pr]_[A-Za-z0-9_-]{0,60}",
        "ch[pr]_[A-Za-z0-9_-]{42}[^A-Za-z0-9_-]",
        "ch[pr]_[A-Za-z0-9+/=]{43}",
        "(Bearer |CHP_|chp-|chr_ )[A-Za-z0-9_-]{43}",
        "[ \t\n]{0,2}ch[pr]_[A-Za-z0-9_-]{43}[ \t\n\r]{0,2}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn any_32_bytes_make_a_token_that_round_trips(bytes in any::<[u8; 32]>()) {
        let body = URL_SAFE_NO_PAD.encode(bytes);
        let publish = PublishToken::parse(&format!("chp_{body}")).unwrap();
        prop_assert_eq!(publish.expose(), format!("chp_{body}"));
        let read = ReadToken::parse(&format!("chr_{body}")).unwrap();
        prop_assert_eq!(read.expose(), format!("chr_{body}"));
        // The kinds are not interchangeable.
        prop_assert_eq!(ReadToken::parse(publish.expose()), Err(TokenError::Malformed));
        prop_assert_eq!(PublishToken::parse(read.expose()), Err(TokenError::Malformed));
    }

    #[test]
    fn arbitrary_strings_are_refused_unless_well_formed(input in near_misses()) {
        let publish = PublishToken::parse(&input);
        let read = ReadToken::parse(&input);
        prop_assert_eq!(publish.is_ok(), well_formed(&input, "chp_"), "publish {:?}", input);
        prop_assert_eq!(read.is_ok(), well_formed(&input, "chr_"), "read {:?}", input);
        // Surrounding whitespace is dropped: what is kept is exactly the token.
        if let Ok(token) = publish {
            prop_assert_eq!(token.expose(), input.trim());
        }
        if let Ok(token) = read {
            prop_assert_eq!(token.expose(), input.trim());
        }
    }

    #[test]
    fn generated_tokens_parse_and_never_show_in_debug(_seed in any::<u8>()) {
        let publish = PublishToken::generate();
        let read = ReadToken::generate();
        prop_assert_eq!(PublishToken::parse(publish.expose()), Ok(publish.clone()));
        prop_assert_eq!(ReadToken::parse(read.expose()), Ok(read.clone()));
        prop_assert!(well_formed(publish.expose(), "chp_") && well_formed(read.expose(), "chr_"));
        for (shown, secret) in [(format!("{publish:?}"), publish.expose()), (format!("{read:?}"), read.expose())] {
            prop_assert!(!shown.contains(&secret[4..]), "{}", shown);
            prop_assert!(!shown.contains(&secret[4..12]), "{}", shown);
        }
    }
}

proptest! {
    // Each case hashes (Argon2id, 64 KiB): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn hashes_are_deterministic_keyed_and_opaque(
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        secret in proptest::collection::vec(any::<u8>(), 16..64),
    ) {
        let hasher = TokenHasher::new(&secret);
        let token_a = PublishToken::parse(&format!("chp_{}", URL_SAFE_NO_PAD.encode(a))).unwrap();
        let token_b = PublishToken::parse(&format!("chp_{}", URL_SAFE_NO_PAD.encode(b))).unwrap();
        let hash = hasher.hash_publish(&token_a);
        prop_assert_eq!(&hash, &hasher.hash_publish(&token_a));
        prop_assert_eq!(hash.as_str().len(), 64);
        prop_assert!(hash.as_str().bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        prop_assert!(hash.matches(hash.as_str()));
        prop_assert!(!hash.as_str().contains(&token_a.expose()[4..12]));
        if a != b {
            prop_assert!(!hash.matches(hasher.hash_publish(&token_b).as_str()));
        }
        // A read token with the same body hashes differently (the prefix is hashed too).
        let read = ReadToken::parse(&format!("chr_{}", URL_SAFE_NO_PAD.encode(a))).unwrap();
        prop_assert!(!hash.matches(hasher.hash_read(&read).as_str()));
        // Another key, another hash; a truncated or empty stored hash never matches.
        let mut other = secret.clone();
        other[0] ^= 1;
        prop_assert!(!hash.matches(TokenHasher::new(&other).hash_publish(&token_a).as_str()));
        prop_assert!(!hash.matches(&hash.as_str()[..63]));
        prop_assert!(!hash.matches(""));
    }
}

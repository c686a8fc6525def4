//! Client base64 (`payload` of a JSON publish, MCP's `payload_base64`):
//! whatever the `base64` crate's encoders produce — standard or URL-safe,
//! padded or not, with surrounding whitespace — decodes to the same bytes;
//! anything else is `invalid_payload`, and what is accepted is canonical (one
//! byte string per accepted text, up to alphabet and padding).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chantra_core::domain::decode_base64;
use proptest::prelude::*;

use crate::cases;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    #[test]
    fn every_encoder_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300), ws in "[ \t\r\n]{0,2}") {
        for encoded in [STANDARD.encode(&bytes), STANDARD_NO_PAD.encode(&bytes), URL_SAFE.encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes)] {
            prop_assert_eq!(decode_base64(&encoded, "payload"), Ok(bytes.clone()), "{}", encoded);
            let padded = format!("{ws}{encoded}{ws}");
            prop_assert_eq!(decode_base64(&padded, "payload"), Ok(bytes.clone()));
        }
    }

    #[test]
    fn arbitrary_text_is_canonical_or_refused(input in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/]{0,40}={0,3}",
        "[A-Za-z0-9_-]{0,40}={0,3}",
        "[A-Za-z0-9+/_-]{1,40}",
        "[A-Za-z0-9+/]{1,20}[ .%*][A-Za-z0-9+/]{1,20}",
    ], field in "payload|payload_base64") {
        match decode_base64(&input, &field) {
            Ok(bytes) => {
                // Accepted text is exactly an encoding of the bytes, modulo alphabet and padding.
                let canonical = input.trim().trim_end_matches('=').replace('-', "+").replace('_', "/");
                prop_assert_eq!(STANDARD_NO_PAD.encode(&bytes), canonical, "{:?}", input);
            }
            Err(err) => {
                prop_assert_eq!(err.code, "invalid_payload");
                prop_assert!(err.message.starts_with(&format!("{field} must be base64")), "{}", err.message);
                // The payload itself is never echoed back.
                prop_assert!(err.message.len() < 100, "{}", err.message);
            }
        }
    }
}

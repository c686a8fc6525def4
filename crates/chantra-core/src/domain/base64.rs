//! Base64 payloads from clients: the standard or URL-safe alphabet, padding
//! optional — what REST and MCP callers both send.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::ValidationError;

const STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a client's base64; `field` names the argument in the error.
pub fn decode_base64(input: &str, field: &str) -> Result<Vec<u8>, ValidationError> {
    let input = input.trim();
    STANDARD.decode(input).or_else(|_| URL_SAFE.decode(input)).map_err(|_| ValidationError {
        code: "invalid_payload",
        message: format!("{field} must be base64 (RFC 4648, standard or URL-safe alphabet)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_alphabets_and_optional_padding() {
        assert_eq!(decode_base64("aGk+Pz8/", "payload").unwrap(), b"hi>???");
        assert_eq!(decode_base64("aGk-Pz8_", "payload").unwrap(), b"hi>???");
        assert_eq!(decode_base64("aGk", "payload").unwrap(), b"hi");
        assert_eq!(decode_base64(" aGk= ", "payload").unwrap(), b"hi");
        let err = decode_base64("%%%", "payload_base64").unwrap_err();
        assert_eq!(err.code, "invalid_payload");
        assert!(err.message.starts_with("payload_base64 must be base64"));
    }
}

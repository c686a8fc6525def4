//! Bounded values that come from clients: TTLs, content types, idempotency
//! keys and grant labels. The limits here are the product's limits; the docs
//! and the OpenAPI document read these constants rather than repeating them.

use std::time::Duration;

/// Messages live at most 48 hours; this is also the default TTL.
pub const MAX_TTL_SECONDS: u64 = 48 * 60 * 60;
/// Default payload limit (configurable): 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Channels with no publish for this many days are deleted (configurable).
pub const DEFAULT_CHANNEL_IDLE_DAYS: u32 = 30;

const MAX_CONTENT_TYPE_LEN: usize = 255;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_LABEL_CHARS: usize = 200;

/// A client value that breaks one of the limits above; the message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Time to live of a message: 1 second to 48 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u64);

impl Ttl {
    pub const MAX: Ttl = Ttl(MAX_TTL_SECONDS);

    pub fn from_seconds(seconds: i64) -> Result<Self, ValidationError> {
        if seconds < 1 || seconds as u64 > MAX_TTL_SECONDS {
            return Err(ValidationError::new(
                "invalid_ttl",
                format!("ttl must be between 1 and {MAX_TTL_SECONDS} seconds (48 hours), got {seconds}"),
            ));
        }
        Ok(Ttl(seconds as u64))
    }

    /// Parses the `?ttl=` query value (whole seconds).
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        match input.trim().parse::<i64>() {
            Ok(seconds) => Self::from_seconds(seconds),
            Err(_) => Err(ValidationError::new(
                "invalid_ttl",
                format!("ttl must be a whole number of seconds between 1 and {MAX_TTL_SECONDS}"),
            )),
        }
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl::MAX
    }
}

/// A MIME type as given by the publisher, kept verbatim for readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

impl ContentType {
    pub const DEFAULT: &'static str = "application/octet-stream";

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim();
        let valid = !value.is_empty()
            && value.len() <= MAX_CONTENT_TYPE_LEN
            && value.contains('/')
            && value.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !valid {
            return Err(ValidationError::new(
                "invalid_content_type",
                format!(
                    "content_type must be a MIME type such as text/plain, printable ASCII, at most {MAX_CONTENT_TYPE_LEN} characters"
                ),
            ));
        }
        Ok(ContentType(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ContentType {
    fn default() -> Self {
        ContentType(Self::DEFAULT.to_owned())
    }
}

/// The `Idempotency-Key` header of a publish: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let valid =
            !input.is_empty() && input.len() <= MAX_IDEMPOTENCY_KEY_LEN && input.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(ValidationError::new(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            ));
        }
        Ok(IdempotencyKey(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A human label on a read grant, e.g. "dashboard"; at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim();
        if value.chars().count() > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "invalid_label",
                format!("label must be at most {MAX_LABEL_CHARS} characters without control characters"),
            ));
        }
        Ok(Label(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert!(Ttl::from_seconds(0).is_err());
        assert!(Ttl::from_seconds(-5).is_err());
        assert_eq!(Ttl::from_seconds(1).unwrap().seconds(), 1);
        assert_eq!(Ttl::from_seconds(172_800).unwrap(), Ttl::MAX);
        assert_eq!(Ttl::from_seconds(172_801).unwrap_err().code, "invalid_ttl");
        assert_eq!(Ttl::parse(" 60 ").unwrap().seconds(), 60);
        assert!(Ttl::parse("1h").is_err());
        assert!(Ttl::parse("99999999999999999999999").is_err());
    }

    #[test]
    fn content_type_rules() {
        assert_eq!(ContentType::parse("text/plain; charset=utf-8").unwrap().as_str(), "text/plain; charset=utf-8");
        assert!(ContentType::parse("").is_err());
        assert!(ContentType::parse("plain").is_err());
        assert!(ContentType::parse("text/pl\u{e9}in").is_err());
        assert!(ContentType::parse(&format!("a/{}", "b".repeat(300))).is_err());
    }

    #[test]
    fn idempotency_key_rules() {
        assert!(IdempotencyKey::parse("order-42").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn label_rules() {
        assert_eq!(Label::parse("  dashboard ").unwrap().as_str(), "dashboard");
        assert!(Label::parse(&"x".repeat(201)).is_err());
        assert!(Label::parse("line\nbreak").is_err());
    }
}

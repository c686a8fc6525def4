//! Bearer tokens and their stored hashes (DESIGN §3).
//!
//! A token is `chp_` (publish) or `chr_` (read) followed by 32 random bytes in
//! URL-safe base64: 256 bits of entropy. Only a keyed Argon2id hash is stored.
//! The salt is fixed so the hash is deterministic and can be looked up through
//! a unique index; the secret (`TOKEN_SECRET_SALT`) keys the hash so a leaked
//! database alone does not let anyone test candidate tokens. Because the
//! tokens are full-entropy, the cheapest Argon2 parameters are enough: the
//! work factor protects low-entropy passwords, which these are not.

use std::fmt;
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

const TOKEN_BYTES: usize = 32;
/// Length of the base64 part: 32 bytes → 43 characters without padding.
const TOKEN_BODY_LEN: usize = 43;
const HASH_BYTES: usize = 32;
/// Fixed salt: determinism is the point (see the module comment).
const FIXED_SALT: &[u8] = b"chantra-token-hash-v1";
/// Argon2id cost: 64 KiB, one pass, one lane (≈ 26 µs in release here).
const ARGON2_M_KIB: u32 = 64;
const ARGON2_T: u32 = 1;
const ARGON2_P: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
}

macro_rules! token_type {
    ($name:ident, $prefix:literal) => {
        /// A bearer secret. `Debug` never prints it, so it cannot leak into logs.
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                let mut bytes = [0u8; TOKEN_BYTES];
                rand::rng().fill_bytes(&mut bytes);
                Self(format!("{}{}", $prefix, URL_SAFE_NO_PAD.encode(bytes)))
            }

            /// Checks the shape only; whether it is a live token is the database's call.
            pub fn parse(input: &str) -> Result<Self, TokenError> {
                let input = input.trim();
                let body = input.strip_prefix($prefix).ok_or(TokenError::Malformed)?;
                let well_formed = body.len() == TOKEN_BODY_LEN
                    && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !well_formed {
                    return Err(TokenError::Malformed);
                }
                Ok(Self(input.to_owned()))
            }

            /// The secret itself, to hand to the client exactly once.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(\"{}…\")", stringify!($name), $prefix)
            }
        }
    };
}

token_type!(PublishToken, "chp_");
token_type!(ReadToken, "chr_");

/// Hex of the keyed Argon2id hash, as stored in the `*_hash` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time equality, so a timing side channel cannot reveal how
    /// much of a stored hash a guess matched.
    pub fn matches(&self, stored: &str) -> bool {
        self.0.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

/// A fast keyed digest of a token, for remembering in memory that a token
/// was already checked against its stored hash (see
/// [`TokenHasher::fingerprint_publish`]). Never stored or sent anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenFingerprint([u8; 64]);

impl TokenFingerprint {
    /// Constant-time equality.
    pub fn matches(&self, other: &TokenFingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenFingerprint(<redacted>)")
    }
}

/// Computes token hashes with the deployment's secret.
#[derive(Clone)]
pub struct TokenHasher {
    secret: Arc<[u8]>,
    /// Random per process: fingerprints mean nothing outside it.
    fingerprint_key: [u8; 32],
    /// Argon2's working memory (64 KiB), kept between hashes: allocating
    /// and zeroing it for every hash was about a tenth of the CPU time of a
    /// publish (perf, 64 concurrent publishers). One buffer per hash running
    /// at the same time, at most [`MAX_SCRATCH`] kept.
    scratch: Arc<Mutex<Vec<Box<[Block]>>>>,
}

/// Buffers kept for reuse: one per runtime thread is plenty.
const MAX_SCRATCH: usize = 16;

impl TokenHasher {
    pub fn new(secret: &[u8]) -> Self {
        let mut fingerprint_key = [0u8; 32];
        rand::rng().fill_bytes(&mut fingerprint_key);
        Self { secret: secret.into(), fingerprint_key, scratch: Arc::default() }
    }

    /// BLAKE2b of the token keyed with this process's random key: well under
    /// a microsecond, against ~30 µs for the Argon2 hash. A process that has
    /// checked a token once remembers its fingerprint and compares that
    /// (constant-time) next time; a token it has not seen still gets the full
    /// check, so forging costs what it did.
    pub fn fingerprint_publish(&self, token: &PublishToken) -> TokenFingerprint {
        use blake2::digest::{KeyInit as _, Mac as _};
        let mac = blake2::Blake2bMac512::new_from_slice(&self.fingerprint_key)
            .expect("a 32-byte key is within BLAKE2b's limits")
            .chain_update(token.expose().as_bytes());
        TokenFingerprint(mac.finalize().into_bytes().into())
    }

    pub fn hash_publish(&self, token: &PublishToken) -> TokenHash {
        self.hash(token.expose())
    }

    pub fn hash_read(&self, token: &ReadToken) -> TokenHash {
        self.hash(token.expose())
    }

    fn hash(&self, token: &str) -> TokenHash {
        // Constant parameters that are valid by construction (argon2's own
        // minimums are m ≥ 8·p, t ≥ 1, salt ≥ 8 bytes), so these cannot fail.
        let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(HASH_BYTES))
            .expect("constant Argon2 parameters are valid");
        let argon = Argon2::new_with_secret(&self.secret, Algorithm::Argon2id, Version::V0x13, params)
            .expect("a secret of any length up to 2^32 bytes is accepted");
        // Every block is written before it is read, so a used buffer needs no zeroing.
        let taken = self.scratch.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut memory = taken.unwrap_or_else(|| vec![Block::new(); argon.params().block_count()].into_boxed_slice());
        let mut out = [0u8; HASH_BYTES];
        argon
            .hash_password_into_with_memory(token.as_bytes(), FIXED_SALT, &mut out, &mut memory[..])
            .expect("fixed salt, output length and memory size are within Argon2's limits");
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if scratch.len() < MAX_SCRATCH {
            scratch.push(memory);
        }
        TokenHash(hex::encode(out))
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher { secret: <redacted> }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = PublishToken::generate();
        let b = PublishToken::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("chp_"));
        assert_eq!(a.expose().len(), 4 + TOKEN_BODY_LEN);
        assert_eq!(PublishToken::parse(a.expose()).unwrap(), a);
        let r = ReadToken::generate();
        assert!(r.expose().starts_with("chr_"));
    }

    #[test]
    fn prefixes_are_not_interchangeable() {
        let publish = PublishToken::generate();
        assert_eq!(ReadToken::parse(publish.expose()), Err(TokenError::Malformed));
        let read = ReadToken::generate();
        assert_eq!(PublishToken::parse(read.expose()), Err(TokenError::Malformed));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "chp_",
            "chp_short",
            "Bearer chp_x",
            &format!("chp_{}", "!".repeat(43)),
            &format!("chp_{}", "a".repeat(44)),
        ] {
            assert!(PublishToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = ReadToken::generate();
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.expose()[4..]), "{shown}");
    }

    #[test]
    fn fingerprints_tell_tokens_apart_and_are_per_process() {
        let hasher = TokenHasher::new(b"secret-0123456789");
        let (a, b) = (PublishToken::generate(), PublishToken::generate());
        assert!(hasher.fingerprint_publish(&a).matches(&hasher.fingerprint_publish(&a)));
        assert!(!hasher.fingerprint_publish(&a).matches(&hasher.fingerprint_publish(&b)));
        // Another process (hasher) with the same secret has its own key.
        let other = TokenHasher::new(b"secret-0123456789");
        assert!(!other.fingerprint_publish(&a).matches(&hasher.fingerprint_publish(&a)));
        assert_eq!(format!("{:?}", hasher.fingerprint_publish(&a)), "TokenFingerprint(<redacted>)");
    }

    #[test]
    fn reused_memory_gives_the_hash_of_fresh_memory() {
        let secret = b"secret-0123456789";
        let hasher = TokenHasher::new(secret);
        let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(HASH_BYTES)).unwrap();
        let argon = Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params).unwrap();
        // Each hash after the first runs in the buffer the previous one left dirty.
        for _ in 0..5 {
            let token = PublishToken::generate();
            let mut fresh = [0u8; HASH_BYTES];
            argon.hash_password_into(token.expose().as_bytes(), FIXED_SALT, &mut fresh).unwrap();
            assert_eq!(hasher.hash_publish(&token).as_str(), hex::encode(fresh));
        }
        assert_eq!(hasher.scratch.lock().unwrap().len(), 1, "one buffer, reused");
    }

    #[test]
    fn hash_is_deterministic_and_keyed() {
        let token = PublishToken::generate();
        let one = TokenHasher::new(b"secret-one");
        let two = TokenHasher::new(b"secret-two");
        assert_eq!(one.hash_publish(&token), one.hash_publish(&token));
        assert_ne!(one.hash_publish(&token), two.hash_publish(&token));
        assert_eq!(one.hash_publish(&token).as_str().len(), 64);
        assert!(one.hash_publish(&token).matches(one.hash_publish(&token).as_str()));
        assert!(!one.hash_publish(&token).matches(two.hash_publish(&token).as_str()));
    }
}

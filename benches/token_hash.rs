//! Cost of one token hash (keyed Argon2id, m = 64 KiB, t = 1, p = 1): the
//! price of every authenticated request, and of every forged token.
//!
//! Run: `cargo bench --bench token_hash` (release profile). Prints the mean
//! and the best of several rounds, in microseconds per hash, and the same for
//! the fingerprint that repeat publishes are checked by.

use std::time::Instant;

use chantra_core::domain::{PublishToken, TokenHasher};

const ROUNDS: usize = 5;
const HASHES_PER_ROUND: usize = 2_000;

fn main() {
    let hasher = TokenHasher::new(b"benchmark-secret-0123456789");
    let tokens: Vec<PublishToken> = (0..HASHES_PER_ROUND).map(|_| PublishToken::generate()).collect();
    // Warm up caches and the allocator.
    for token in tokens.iter().take(200) {
        std::hint::black_box(hasher.hash_publish(token));
    }
    let (mean, best) = measure(
        |token| {
            std::hint::black_box(hasher.hash_publish(token));
        },
        &tokens,
    );
    println!(
        "token hash (keyed Argon2id m=64KiB t=1 p=1): mean {mean:.1} µs, best {best:.1} µs over {ROUNDS}×{HASHES_PER_ROUND} hashes"
    );
    // A token this process already checked is recognised by its fingerprint instead.
    let (mean, best) = measure(
        |token| {
            std::hint::black_box(hasher.fingerprint_publish(token));
        },
        &tokens,
    );
    println!(
        "token fingerprint (keyed BLAKE2b, repeat publishes): mean {mean:.2} µs, best {best:.2} µs over {ROUNDS}×{HASHES_PER_ROUND}"
    );
}

/// Microseconds per call of `check`: the mean and the best of the rounds.
fn measure(check: impl Fn(&PublishToken), tokens: &[PublishToken]) -> (f64, f64) {
    let mut per_call = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for token in tokens {
            check(token);
        }
        per_call.push(started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64);
    }
    let mean = per_call.iter().sum::<f64>() / per_call.len() as f64;
    (mean, per_call.iter().copied().fold(f64::INFINITY, f64::min))
}

//! Cost of one token hash (keyed Argon2id, m = 64 KiB, t = 1, p = 1): the
//! price of every authenticated request, and of every forged token.
//!
//! Run: `cargo bench --bench token_hash` (release profile). Prints the mean
//! and the best of several rounds, in microseconds per hash.

use std::time::Instant;

use chantra::domain::{PublishToken, TokenHasher};

const ROUNDS: usize = 5;
const HASHES_PER_ROUND: usize = 2_000;

fn main() {
    let hasher = TokenHasher::new(b"benchmark-secret-0123456789");
    let tokens: Vec<PublishToken> = (0..HASHES_PER_ROUND).map(|_| PublishToken::generate()).collect();
    // Warm up caches and the allocator.
    for token in tokens.iter().take(200) {
        std::hint::black_box(hasher.hash_publish(token));
    }
    let mut per_hash = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for token in &tokens {
            std::hint::black_box(hasher.hash_publish(token));
        }
        per_hash.push(started.elapsed().as_secs_f64() * 1e6 / HASHES_PER_ROUND as f64);
    }
    let mean = per_hash.iter().sum::<f64>() / per_hash.len() as f64;
    let best = per_hash.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "token hash (keyed Argon2id m=64KiB t=1 p=1): mean {mean:.1} µs, best {best:.1} µs over {ROUNDS}×{HASHES_PER_ROUND} hashes"
    );
}

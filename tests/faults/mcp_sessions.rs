//! Case 7: one client cannot fill a server with MCP sessions.
//!
//! - `initialize_storm_is_capped_per_client`: one client sends 2,000
//!   `initialize` requests (16 at a time) to an mcp role with the default
//!   MCP_MAX_SESSIONS_PER_IP (20): 20 sessions are made, every other request
//!   is answered 429 `too_many_sessions`, and the server's RSS grows by a few
//!   MiB instead of ~62 KB per request.
//! - `initialize_storm_uncapped_baseline` (ignored; run it by name for the
//!   "before" figure): the same storm with the caps lifted, as the code
//!   before them behaved.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{RssSampler, proc_kib};
use crate::server::Stack;

const ATTEMPTS: usize = 2000;
const CONCURRENCY: usize = 16;
/// The default MCP_MAX_SESSIONS_PER_IP.
const PER_IP: usize = 20;
/// RSS growth allowed for the capped storm (debug build, allocator slack);
/// uncapped, the same storm grows the process by over 100 MiB.
const GROWTH_CEILING_KIB: u64 = 32 * 1024;

struct Storm {
    made: usize,
    refused: usize,
    before_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    took: Duration,
}

async fn initialize_storm(extra: &[(&str, &str)]) -> Storm {
    let stack = Stack::shared_postgres().await;
    let server = stack.start("mcp", "rest,mcp", extra).await;
    let url = server.url("mcp", "/mcp");
    let client = crate::common::api_client(Duration::from_secs(30));
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "storm", "version": "1" } } });
    let initialize = {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        move || {
            let request = client.post(&url).header("accept", "application/json, text/event-stream").json(&body);
            async move {
                let response = request.send().await.expect("initialize");
                let status = response.status().as_u16();
                let made = response.headers().contains_key("mcp-session-id");
                let text = response.text().await.unwrap_or_default();
                (status, made, text)
            }
        }
    };
    // One session first, so lazily built state is not counted as growth.
    let (status, made, text) = initialize().await;
    assert!(status == 200 && made, "the first initialize: {status} {text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = server.rss_kib();
    let sampler = RssSampler::start(server.pid());

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(1));
    let made = Arc::new(AtomicUsize::new(1));
    let refused = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (next, made, refused, initialize) = (next.clone(), made.clone(), refused.clone(), initialize.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < ATTEMPTS {
                    match initialize().await {
                        (200, true, _) => made.fetch_add(1, Ordering::Relaxed),
                        (429, false, text) => {
                            assert!(text.contains("too_many_sessions"), "{text}");
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        (status, _, text) => panic!("initialize answered {status}: {text}"),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a storm worker");
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_kib = server.rss_kib();
    let peak_kib = sampler.peak_kib().max(after_kib);
    let storm = Storm {
        made: made.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        before_kib,
        peak_kib,
        after_kib,
        took,
    };
    println!(
        "mcp initialize storm {extra:?}: {ATTEMPTS} attempts in {took:.1?}: {} sessions, {} refused; \
         RSS {} KiB before, {} KiB peak, {} KiB after (+{} KiB), VmHWM {} KiB",
        storm.made,
        storm.refused,
        storm.before_kib,
        storm.peak_kib,
        storm.after_kib,
        storm.peak_kib.saturating_sub(storm.before_kib),
        proc_kib(server.pid(), "VmHWM").unwrap_or(0),
    );
    storm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_storm_is_capped_per_client() {
    let storm = initialize_storm(&[]).await;
    assert_eq!(storm.made, PER_IP, "sessions made");
    assert_eq!(storm.refused, ATTEMPTS - PER_IP, "initializes refused");
    let growth = storm.peak_kib.saturating_sub(storm.before_kib);
    assert!(growth < GROWTH_CEILING_KIB, "RSS grew by {growth} KiB (ceiling {GROWTH_CEILING_KIB} KiB)");
    assert!(storm.took < Duration::from_secs(60), "the storm took {:?}", storm.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the before figure: run by name with --run-ignored"]
async fn initialize_storm_uncapped_baseline() {
    let storm = initialize_storm(&[("MCP_MAX_SESSIONS", "1000000"), ("MCP_MAX_SESSIONS_PER_IP", "1000000")]).await;
    assert_eq!(storm.made, ATTEMPTS);
}

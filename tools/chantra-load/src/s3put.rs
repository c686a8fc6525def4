//! The s3put scenario: a plain PUT loop against an S3-compatible server at
//! the publish scenario's concurrency, payload size and duration — the
//! store's own rate, measured in the same run as Chantra's publishes on it
//! (issue 18: PostgreSQL + S3 publish ≥ 80 % of the raw rate). Objects go
//! under `chantra-load/<run>/` and stay there (the benchmark's garage is a
//! temporary one, deleted with its folder). Same client as
//! Chantra's store (rust-s3, path-style, one `Bucket`), so the figure is
//! what the store allows this client, not a different library's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use s3::creds::Credentials;
use s3::{Bucket, Region};
use serde_json::{Value, json};

use crate::publish::check_loopback_url;
use crate::stats::{Histogram, Tally};

/// Where to PUT: from S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY,
/// S3_REGION (Chantra's own variables).
fn bucket() -> Result<Box<Bucket>, String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("s3put needs {name}"));
    let endpoint = var("S3_ENDPOINT")?;
    check_loopback_url(&endpoint)?;
    let region = Region::Custom { region: var("S3_REGION").unwrap_or_else(|_| "us-east-1".into()), endpoint };
    let credentials = Credentials::new(Some(&var("S3_ACCESS_KEY")?), Some(&var("S3_SECRET_KEY")?), None, None, None)
        .map_err(|e| format!("S3 credentials: {e}"))?;
    let mut bucket =
        Bucket::new(&var("S3_BUCKET")?, region, credentials).map_err(|e| format!("S3 bucket: {e}"))?.with_path_style();
    bucket.set_request_timeout(Some(Duration::from_secs(30)));
    Ok(bucket)
}

/// PUTs `payload_bytes` objects from `concurrency` workers for `duration`;
/// the report has the publish scenario's `publish` shape.
pub async fn run(concurrency: usize, payload_bytes: usize, duration: Duration) -> Result<Value, String> {
    let bucket = Arc::new(bucket()?);
    let run = format!("{:016x}", rand::random::<u64>());
    let body: Arc<Vec<u8>> = Arc::new(vec![b'x'; payload_bytes.max(1)]);
    let (next, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latency = Arc::new(Histogram::default());
    let statuses = Arc::new(std::sync::Mutex::new(Tally::new()));
    let started = Instant::now();
    let stop_at = started + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (bucket, run, body) = (bucket.clone(), run.clone(), body.clone());
        let (next, ok, latency, statuses) = (next.clone(), ok.clone(), latency.clone(), statuses.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let outcome = bucket.put_object(format!("chantra-load/{run}/{index}"), &body).await;
                let label = match outcome {
                    Ok(response) => {
                        if response.status_code() == 200 {
                            ok.fetch_add(1, Ordering::Relaxed);
                            latency.record(sent.elapsed().as_micros() as u64);
                        }
                        response.status_code().to_string()
                    }
                    Err(err) => format!("error: {err}"),
                };
                *statuses.lock().unwrap().entry(label).or_default() += 1;
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| format!("PUT worker: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().unwrap().clone();
    // Every index taken was PUT once (the deadline is checked before taking one).
    let (attempted, ok) = (next.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
    let mut problems = Vec::new();
    if ok < attempted {
        problems.push(format!("{} of {attempted} PUTs failed: {statuses:?}", attempted - ok));
    }
    if ok == 0 {
        problems.push("no PUT succeeded".to_owned());
    }
    Ok(json!({
        // Reported as a publish run of its own target (bench.sh names it "garage"),
        // so the publish table shows the store's raw rate beside Chantra's.
        "scenario": "publish",
        "what": "raw S3 PUT loop, no Chantra",
        "ok": problems.is_empty(),
        "problems": problems,
        "sizes": { "publishers": concurrency, "payload_bytes": payload_bytes, "duration_s": duration.as_secs() },
        "elapsed_s": (elapsed * 10.0).round() / 10.0,
        "publish": {
            "attempted": attempted,
            "ok": ok,
            "errors": attempted - ok,
            "statuses": statuses,
            "elapsed_s": (elapsed * 100.0).round() / 100.0,
            "per_s": if elapsed > 0.0 { (ok as f64 / elapsed).round() } else { 0.0 },
            "latency_ms": latency.data().summary_ms(),
        },
    }))
}

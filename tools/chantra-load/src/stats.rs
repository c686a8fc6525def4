//! What the tool measures with: a mergeable latency histogram, and the
//! server's memory read from /proc (sampled in the background for the peak).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Values below this are their own bucket; above, 64 buckets per power of
/// two keep every figure within 1.6 % of the truth.
const LINEAR: u64 = 128;
const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = (LINEAR + (64 - 7) * SUB_BUCKETS) as usize;

/// A log-linear histogram of microseconds. Lock-free to record into, so every
/// subscriber task of a process shares one; sparse when sent between processes.
pub struct Histogram {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
}

/// A histogram as it travels between processes: (bucket, count) pairs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistogramData {
    pub buckets: Vec<(u32, u64)>,
    pub max: u64,
}

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let exponent = 63 - u64::from(micros.leading_zeros()); // >= 7
    let mantissa = (micros >> (exponent - 6)) & (SUB_BUCKETS - 1);
    (LINEAR + (exponent - 7) * SUB_BUCKETS + mantissa) as usize
}

/// The middle of a bucket, in microseconds.
fn value_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let exponent = (bucket - LINEAR) / SUB_BUCKETS + 7;
    let mantissa = (bucket - LINEAR) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + mantissa) << (exponent - 6);
    low + (1 << (exponent - 6)) / 2
}

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(), max: AtomicU64::new(0) }
    }
}

impl Histogram {
    pub fn record(&self, micros: u64) {
        self.counts[bucket_of(micros).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn data(&self) -> HistogramData {
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.load(Ordering::Relaxed);
                (c > 0).then_some((i as u32, c))
            })
            .collect();
        HistogramData { buckets, max: self.max.load(Ordering::Relaxed) }
    }
}

impl HistogramData {
    pub fn merge(&mut self, other: &HistogramData) {
        let mut all: BTreeMap<u32, u64> = self.buckets.iter().copied().collect();
        for (bucket, count) in &other.buckets {
            *all.entry(*bucket).or_default() += count;
        }
        self.buckets = all.into_iter().collect();
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, c)| c).sum()
    }

    /// The p-th quantile (0.0–1.0) in microseconds; None when empty.
    pub fn quantile(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        if p >= 1.0 {
            return Some(self.max);
        }
        let rank = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(value_of(*bucket as usize).min(self.max));
            }
        }
        Some(self.max)
    }

    /// `{"count", "p50", "p99", "max"}` in milliseconds.
    pub fn summary_ms(&self) -> serde_json::Value {
        let ms = |v: Option<u64>| v.map(|us| (us as f64 / 10.0).round() / 100.0);
        serde_json::json!({
            "count": self.count(),
            "p50": ms(self.quantile(0.50)),
            "p99": ms(self.quantile(0.99)),
            "max": ms(self.quantile(1.0)),
        })
    }
}

/// Memory of a server process and its descendants (nginx's workers), in KiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    /// Sum of VmRSS from /proc/<pid>/status.
    pub rss_kib: u64,
    /// Sum of Pss from /proc/<pid>/smaps_rollup: shared pages (nginx's shared
    /// memory zone) counted once across the processes instead of once each.
    pub pss_kib: u64,
}

fn status_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// The pid and every descendant of it, found through /proc/*/stat.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The command name may hold spaces; the parent pid is the second field after ')'.
            let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        index += 1;
    }
    tree
}

/// Current memory of the server; None when the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let rss = status_field(pid, "status", "VmRSS:")?;
    let mut total = Memory::default();
    for member in process_tree(pid) {
        let rss = status_field(member, "status", "VmRSS:").unwrap_or(0);
        total.rss_kib += rss;
        total.pss_kib += status_field(member, "smaps_rollup", "Pss:").unwrap_or(rss);
    }
    total.rss_kib = total.rss_kib.max(rss);
    Some(total)
}

/// CPU time (user + system) the server and its descendants have used, in
/// seconds; None when the process is gone. /proc counts it in ticks of
/// 1/100 s (USER_HZ, 100 on every Linux architecture that matters here).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let ticks = |member: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{member}/stat")).ok()?;
        // utime and stime are fields 14 and 15: the 12th and 13th after the ')' closing the name.
        let mut after = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        Some(after.next()?.parse::<u64>().ok()? + after.next()?.parse::<u64>().ok()?)
    };
    ticks(pid)?;
    let total: u64 = process_tree(pid).into_iter().filter_map(ticks).sum();
    Some(total as f64 / 100.0)
}

/// Samples the server's memory every interval and keeps the peak.
pub struct Sampler {
    peak_rss: Arc<AtomicU64>,
    peak_pss: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let (peak_rss, peak_pss) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (rss, pss) = (peak_rss.clone(), peak_pss.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Some(m) = tokio::task::spawn_blocking(move || memory(pid)).await.ok().flatten() {
                    rss.fetch_max(m.rss_kib, Ordering::Relaxed);
                    pss.fetch_max(m.pss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        });
        Self { peak_rss, peak_pss, task }
    }

    pub fn peak(&self) -> Memory {
        Memory { rss_kib: self.peak_rss.load(Ordering::Relaxed), pss_kib: self.peak_pss.load(Ordering::Relaxed) }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts by label ("200", "429", "connect: refused", …), mergeable.
pub type Tally = BTreeMap<String, u64>;

pub fn merge_tally(into: &mut Tally, from: &Tally) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).expect("this process exists");
        // Busy until /proc counts 0.2 s more (a busy machine gives this
        // thread less than all of the wall time), for at most 20 s.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.2 && started.elapsed() < Duration::from_secs(20) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = cpu_seconds(pid).unwrap();
        }
        assert!(after - before >= 0.2, "{before} -> {after} in {:?}", started.elapsed());
        assert!(after - before <= started.elapsed().as_secs_f64() + 0.05, "more CPU than wall time on one thread");
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn buckets_round_trip_within_two_percent() {
        for v in [0u64, 1, 127, 128, 129, 1000, 12_345, 1_000_000, 123_456_789] {
            let back = value_of(bucket_of(v));
            assert!((back as f64 - v as f64).abs() <= v as f64 * 0.016 + 1.0, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let (a, b) = (Histogram::default(), Histogram::default());
        for v in 1..=100 {
            a.record(v * 1000);
        }
        b.record(5_000_000);
        let mut data = a.data();
        data.merge(&b.data());
        assert_eq!(data.count(), 101);
        let p50 = data.quantile(0.5).unwrap();
        assert!((50_000..=52_000).contains(&p50), "{p50}");
        assert_eq!(data.quantile(1.0), Some(5_000_000));
    }
}

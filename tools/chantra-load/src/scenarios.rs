//! The six scenarios: each sets up channels and subscribers, drives the
//! publishers, checks what arrived and returns its JSON report (with `ok` and
//! the list of `problems`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fleet::{ConnectReport, Fleet, FleetConfig, Outcome, SubSpec};
use crate::publish::{self, Channel, Plan, Published, Target};
use crate::s3put;
use crate::stats::{self, Memory, Sampler};
use crate::{Args, Scenario};

/// The sizes of a run: the flags, or the scenario's defaults.
#[derive(Debug)]
struct Sizes {
    channels: usize,
    subscribers: usize,
    messages: u64,
    rate: Option<f64>,
    publishers: usize,
    payload_bytes: usize,
    duration: Option<Duration>,
}

impl Sizes {
    fn of(args: &Args) -> Self {
        use Scenario::*;
        let s = args.scenario;
        let channels = args.channels.unwrap_or(if s == Channels { 10_000 } else { 1 }).max(1);
        let subscribers = args.subscribers.unwrap_or(match s {
            Fanout => 1_000,
            Publish | S3put => 0,
            Channels => channels,
            Idle => 20_000,
            Resume => 5_000,
            Wait => 1_000,
        });
        let messages = args.messages.unwrap_or(match s {
            Fanout => 100,
            Publish | S3put => 1_000_000,
            Channels => 3 * channels as u64,
            Idle => 1,
            Resume => 10,
            Wait => 20,
        });
        let rate = args.rate.unwrap_or(match s {
            Fanout => 10.0,
            Channels => 1_000.0,
            Resume => 20.0,
            Wait => 2.0,
            Publish | Idle | S3put => 0.0,
        });
        let publishers = args.publishers.unwrap_or(match s {
            Publish | S3put => 64,
            Channels => 16,
            _ => 1,
        });
        // Without a count, the throughput run is bounded by time.
        let duration = match (s, args.duration_secs, args.messages) {
            (_, Some(secs), _) => Some(Duration::from_secs(secs)),
            (Publish | S3put, None, None) => Some(Duration::from_secs(10)),
            _ => None,
        };
        Self {
            channels,
            subscribers,
            messages,
            rate: (rate > 0.0).then_some(rate),
            publishers: publishers.max(1),
            payload_bytes: args.payload_bytes.unwrap_or(if matches!(s, Publish | S3put) { 1024 } else { 0 }),
            duration,
        }
    }

    fn json(&self) -> Value {
        json!({
            "channels": self.channels,
            "subscribers": self.subscribers,
            "messages": self.messages,
            "rate_per_s": self.rate,
            "publishers": self.publishers,
            "payload_bytes": self.payload_bytes,
            "duration_s": self.duration.map(|d| d.as_secs()),
        })
    }
}

/// What every scenario shares: the target, the publishers' HTTP client, the
/// source addresses, and the server's memory.
struct Context<'a> {
    args: &'a Args,
    sizes: Sizes,
    target: Target,
    client: reqwest::Client,
    sources: Vec<IpAddr>,
    idle: Option<Memory>,
    sampler: Option<Sampler>,
    /// The server's CPU time (its process tree) at each mark, in order.
    cpu_marks: std::sync::Mutex<Vec<(String, f64)>>,
    started: Instant,
    problems: Vec<String>,
}

fn log(started: Instant, text: &str) {
    eprintln!("chantra-load [{:>7.1}s] {text}", started.elapsed().as_secs_f64());
}

impl<'a> Context<'a> {
    fn new(args: &'a Args) -> Result<Self, String> {
        let sizes = Sizes::of(args);
        let sources = args.source_ips.as_ref().map(|s| s.0.clone()).unwrap_or_default();
        let target = Target {
            create_url: args.create_url.clone(),
            channel_name: args.channel.clone(),
            subscribe_url: args.subscribe_url.clone().unwrap_or_default(),
            publish_url: args.publish_url.clone().unwrap_or_default(),
            publish_headers: args.publish_header.clone(),
        };
        let client = publish::client(sources.first().copied(), sizes.publishers + 8)?;
        // Memory before anything is opened: the baseline of "per stream".
        let idle = args.server_pid.and_then(stats::memory);
        if args.server_pid.is_some() && idle.is_none() {
            return Err(format!("no process {} to sample", args.server_pid.unwrap_or_default()));
        }
        let sampler =
            args.server_pid.map(|pid| Sampler::start(pid, Duration::from_millis(args.rss_interval_ms.max(10))));
        let cpu_marks = std::sync::Mutex::new(Vec::new());
        let cx = Self {
            args,
            sizes,
            target,
            client,
            sources,
            idle,
            sampler,
            cpu_marks,
            started: Instant::now(),
            problems: Vec::new(),
        };
        cx.mark_cpu("start");
        Ok(cx)
    }

    fn log(&self, text: &str) {
        log(self.started, text);
    }

    /// Writes one `<event> <unix ms>` line to --mark-file, if given.
    /// Notes the server's CPU time so far (reported as `server_cpu_s`).
    fn mark_cpu(&self, event: &str) {
        if let Some(seconds) = self.args.server_pid.and_then(stats::cpu_seconds) {
            self.cpu_marks.lock().unwrap().push((event.to_owned(), seconds));
        }
    }

    fn mark(&self, event: &str) -> Result<(), String> {
        use std::io::Write as _;
        self.mark_cpu(event);
        let Some(path) = &self.args.mark_file else { return Ok(()) };
        let millis = crate::message::now_micros() / 1000;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| writeln!(file, "{event} {millis}"))
            .map_err(|e| format!("--mark-file {}: {e}", path.display()))
    }

    async fn channels(&mut self) -> Result<(Vec<Channel>, u64), String> {
        let started = Instant::now();
        let channels = self.target.channels(&self.client, self.sizes.channels, 32).await?;
        let ms = started.elapsed().as_millis() as u64;
        if self.target.create_url.is_some() {
            self.log(&format!("created {} channels in {ms} ms", channels.len()));
        }
        Ok((channels, ms))
    }

    /// The subscribers, spread round-robin over channels and source addresses.
    async fn fleet(&self, channels: &[Channel]) -> Result<Fleet, String> {
        let templates: Vec<&str> = self.target.subscribe_url.split_whitespace().collect();
        if templates.is_empty() {
            return Err("--subscribe-url is empty".into());
        }
        let specs: Vec<SubSpec> = (0..self.sizes.subscribers)
            .map(|i| SubSpec {
                url: publish::fill(templates[i % templates.len()], &channels[i % channels.len()]),
                channel: (i % channels.len()) as u32,
                source: (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()]),
            })
            .collect();
        if let Some(first) = specs.first() {
            crate::sse::Endpoint::parse(&first.url)?;
        }
        let config = FleetConfig {
            format: self.args.format,
            channels: channels.len(),
            attempt_timeout_secs: self.args.attempt_timeout_secs,
            deadline_secs: self.args.connect_deadline_secs,
            max_retries: self.args.max_retries,
            resume_on_close: true,
        };
        Fleet::new(config, specs, self.args.per_process).await
    }

    async fn open(&mut self, fleet: &mut Fleet, concurrency: usize, what: &str) -> Result<ConnectReport, String> {
        self.log(&format!("{what}: {} subscribers, {concurrency} at a time per process", self.sizes.subscribers));
        let report = fleet.open(concurrency).await?;
        self.log(&format!(
            "{what}: {} connected, {} failed, {} pending in {} ms; {:?}",
            report.connected, report.failed, report.pending, report.all_ms, report.statuses
        ));
        if report.connected < report.requested {
            self.problems.push(format!(
                "{what}: {} of {} subscribers did not connect ({} failed, {} still trying)",
                report.requested - report.connected,
                report.requested,
                report.failed,
                report.pending
            ));
        }
        Ok(report)
    }

    async fn publish(&mut self, channels: &[Channel], plan: Plan, what: &str) -> Result<Published, String> {
        self.log(&format!(
            "{what}: up to {} messages, {} at a time, rate {}",
            plan.total,
            plan.publishers,
            plan.rate.map_or("unlimited".to_owned(), |r| format!("{r}/s"))
        ));
        let published = publish::publish(&self.client, &self.target, channels, &plan).await?;
        self.log(&format!(
            "{what}: {} of {} published in {:.1} s; {:?}",
            published.ok,
            published.attempted,
            published.elapsed.as_secs_f64(),
            published.statuses
        ));
        if published.ok < published.attempted {
            self.problems.push(format!(
                "{what}: {} of {} publishes failed: {:?}",
                published.attempted - published.ok,
                published.attempted,
                published.statuses
            ));
        }
        if published.ok == 0 && plan.total > 0 {
            self.problems.push(format!("{what}: nothing was published"));
        }
        Ok(published)
    }

    fn plan(&self, total: u64, first_seq: u64) -> Plan {
        Plan {
            total,
            rate: self.sizes.rate,
            duration: self.sizes.duration,
            publishers: self.sizes.publishers,
            payload_bytes: self.sizes.payload_bytes,
            first_seq,
        }
    }

    /// Waits for every expected delivery (or --drain-secs), then stops the fleet.
    async fn drain_and_finish(&mut self, mut fleet: Fleet, expected_by_channel: Vec<u64>) -> Result<Outcome, String> {
        let per_channel = subscribers_per_channel(self.sizes.subscribers, expected_by_channel.len());
        let expected: u64 = expected_by_channel.iter().zip(&per_channel).map(|(m, s)| m * s).sum();
        let progress = fleet.wait_for(expected, Duration::from_secs(self.args.drain_secs)).await?;
        self.log(&format!("{} of {expected} deliveries, {} streams open", progress.delivered, progress.open));
        fleet.finish(expected_by_channel).await
    }

    fn check_outcome(&mut self, outcome: &Outcome, order_matters: bool) {
        if outcome.missing > 0 {
            self.problems.push(format!("{} of {} deliveries missing", outcome.missing, outcome.expected));
        }
        if outcome.duplicates > 0 {
            self.problems.push(format!("{} duplicate deliveries", outcome.duplicates));
        }
        if order_matters && outcome.out_of_order > 0 {
            self.problems.push(format!("{} deliveries out of order", outcome.out_of_order));
        }
        if outcome.unparsed > 0 {
            self.problems.push(format!("{} events whose data was not a load-test payload", outcome.unparsed));
        }
    }

    /// The report every scenario shares, plus its own fields.
    fn report(&self, open: Option<Memory>, streams: u64, extra: Value) -> Value {
        let peak = self.sampler.as_ref().map(|s| {
            let p = s.peak();
            let floor = open.or(self.idle).unwrap_or_default();
            Memory { rss_kib: p.rss_kib.max(floor.rss_kib), pss_kib: p.pss_kib.max(floor.pss_kib) }
        });
        let per_stream = |f: fn(&Memory) -> u64| match (self.idle, open) {
            (Some(idle), Some(open)) if streams > 0 => {
                Some(((f(&open) as f64 - f(&idle) as f64) / streams as f64 * 100.0).round() / 100.0)
            }
            _ => None,
        };
        let mut report = json!({
            "scenario": format!("{:?}", self.args.scenario).to_lowercase(),
            "ok": self.problems.is_empty(),
            "problems": self.problems,
            "sizes": self.sizes.json(),
            "server_rss_kib": {
                "idle": self.idle.map(|m| m.rss_kib),
                "streams_open": open.map(|m| m.rss_kib),
                "peak": peak.map(|m| m.rss_kib),
            },
            "server_pss_kib": {
                "idle": self.idle.map(|m| m.pss_kib),
                "streams_open": open.map(|m| m.pss_kib),
                "peak": peak.map(|m| m.pss_kib),
            },
            "rss_per_stream_kib": per_stream(|m| m.rss_kib),
            "pss_per_stream_kib": per_stream(|m| m.pss_kib),
            // CPU seconds the server's processes had used at each mark since
            // the tool started: differences give a phase's cost.
            "server_cpu_s": self.cpu_since_start(),
            "elapsed_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        if let (Some(report), Value::Object(extra)) = (report.as_object_mut(), extra) {
            report.extend(extra);
        }
        report
    }

    fn cpu_since_start(&self) -> Option<Value> {
        self.mark_cpu("report");
        let marks = self.cpu_marks.lock().unwrap();
        let (_, start) = marks.first()?;
        let phases = marks.iter().map(|(name, at)| (name.clone(), json!(((at - start) * 100.0).round() / 100.0)));
        Some(Value::Object(phases.collect()))
    }

    async fn memory_after(&self, settle: Duration) -> Option<Memory> {
        tokio::time::sleep(settle).await;
        self.args.server_pid.and_then(stats::memory)
    }
}

fn subscribers_per_channel(subscribers: usize, channels: usize) -> Vec<u64> {
    (0..channels).map(|c| (subscribers / channels + usize::from(c < subscribers % channels)) as u64).collect()
}

fn connect_json(report: &ConnectReport) -> Value {
    json!({
        "requested": report.requested,
        "connected": report.connected,
        "failed": report.failed,
        "pending": report.pending,
        "all_ms": report.all_ms,
        "last_connected_ms": report.last_connected_ms,
        "time_ms": report.time.summary_ms(),
        "statuses": report.statuses,
        "retries": report.retries,
    })
}

fn outcome_json(outcome: &Outcome) -> Value {
    json!({
        "subscribers": outcome.subscribers,
        "expected": outcome.expected,
        "delivered": outcome.delivered,
        "missing": outcome.missing,
        "duplicates": outcome.duplicates,
        "out_of_order": outcome.out_of_order,
        "exact_subscribers": outcome.exact,
        "open_at_end": outcome.open_at_end,
        "closes": outcome.closes,
        "resume_statuses": outcome.resume_statuses,
        "gap_events": outcome.gap_events,
        "other_events": outcome.other_events,
        "keepalives": outcome.keepalives,
        "unparsed": outcome.unparsed,
    })
}

pub async fn run(args: Args) -> Result<Value, String> {
    if args.scenario != Scenario::S3put && (args.subscribe_url.is_none() || args.publish_url.is_none()) {
        return Err("--subscribe-url and --publish-url are required".to_owned());
    }
    let context = Context::new(&args)?;
    context.log(&format!("{:?}: {:?}", args.scenario, context.sizes));
    match args.scenario {
        Scenario::Fanout | Scenario::Publish | Scenario::Channels => pubsub(context).await,
        Scenario::Idle => idle(context).await,
        Scenario::Resume => resume(context).await,
        Scenario::Wait => wait(context).await,
        Scenario::S3put => {
            let sizes = &context.sizes;
            let duration = sizes.duration.unwrap_or(Duration::from_secs(10));
            context.mark("publish_start")?;
            let mut report = s3put::run(sizes.publishers, sizes.payload_bytes, duration).await?;
            context.mark("publish_end")?;
            // The S3 server's CPU (--server-pid), for its CPU per PUT.
            report["server_cpu_s"] = context.cpu_since_start().unwrap_or(Value::Null);
            Ok(report)
        }
    }
}

/// fanout, publish and channels: subscribers (if any) open, messages
/// published, every delivery checked.
async fn pubsub(mut cx: Context<'_>) -> Result<Value, String> {
    let (channels, create_ms) = cx.channels().await?;
    let mut fleet = if cx.sizes.subscribers > 0 { Some(cx.fleet(&channels).await?) } else { None };
    let (mut connect, mut open) = (None, cx.idle);
    if let Some(fleet) = &mut fleet {
        connect = Some(cx.open(fleet, cx.args.connect_concurrency, "connect").await?);
        open = cx.memory_after(Duration::from_millis(500)).await;
    }
    cx.mark("publish_start")?;
    let published = cx.publish(&channels, cx.plan(cx.sizes.messages, 0), "publish").await?;
    cx.mark("publish_end")?;
    let outcome = match fleet {
        Some(fleet) => Some(cx.drain_and_finish(fleet, published.ok_by_channel.clone()).await?),
        None => None,
    };
    cx.mark("drain_end")?;
    // With several publishers on one channel, the order they publish in is not defined.
    let order_matters = cx.sizes.publishers <= cx.sizes.channels;
    if let Some(outcome) = &outcome {
        cx.check_outcome(outcome, order_matters);
    }
    let streams = connect.as_ref().map_or(0, |c| c.connected);
    Ok(cx.report(
        open,
        streams,
        json!({
            "channels": { "count": channels.len(), "create_ms": create_ms },
            "connect": connect.as_ref().map(connect_json),
            "connect_all_ms": connect.as_ref().map(|c| c.last_connected_ms),
            "publish": published.report(),
            "deliveries": outcome.as_ref().map(outcome_json),
            "order_checked": order_matters,
            "latency_ms": outcome.as_ref().map(|o| o.latency.summary_ms()),
        }),
    ))
}

/// idle: N streams held open for --hold-secs; memory per stream; then one
/// message each, to show every stream still works.
async fn idle(mut cx: Context<'_>) -> Result<Value, String> {
    let (channels, create_ms) = cx.channels().await?;
    let mut fleet = cx.fleet(&channels).await?;
    let connect = cx.open(&mut fleet, cx.args.connect_concurrency, "connect").await?;
    let open = cx.memory_after(Duration::from_secs(2)).await;
    cx.log(&format!("holding {} streams for {} s", connect.connected, cx.args.hold_secs));
    let mut min_open = u64::MAX;
    let hold_until = Instant::now() + Duration::from_secs(cx.args.hold_secs);
    loop {
        min_open = min_open.min(fleet.progress().await?.open);
        if Instant::now() >= hold_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1).min(hold_until - Instant::now())).await;
    }
    let after_hold = fleet.progress().await?.open;
    cx.log(&format!("after the hold: {after_hold} open (fewest during it: {min_open})"));
    if after_hold < connect.requested || min_open < connect.requested {
        cx.problems.push(format!(
            "{} of {} streams open after the hold (fewest during it: {min_open})",
            after_hold, connect.requested
        ));
    }
    let published = cx.publish(&channels, cx.plan(cx.sizes.messages, 0), "publish after the hold").await?;
    let outcome = cx.drain_and_finish(fleet, published.ok_by_channel.clone()).await?;
    cx.check_outcome(&outcome, true);
    if !outcome.closes.is_empty() {
        cx.problems.push(format!("streams closed: {:?}", outcome.closes));
    }
    Ok(cx.report(
        open,
        connect.connected,
        json!({
            "channels": { "count": channels.len(), "create_ms": create_ms },
            "connect": connect_json(&connect),
            "connect_all_ms": connect.last_connected_ms,
            "hold": { "secs": cx.args.hold_secs, "open_after_hold": after_hold, "fewest_open": min_open },
            "publish": published.report(),
            "deliveries": outcome_json(&outcome),
            "latency_ms": outcome.latency.summary_ms(),
        }),
    ))
}

/// resume: subscribers connected and receiving; all dropped at once; messages
/// published in the gap; all reconnected at once with Last-Event-ID; more
/// messages; every subscriber must hold every message exactly once, in order.
async fn resume(mut cx: Context<'_>) -> Result<Value, String> {
    let (channels, create_ms) = cx.channels().await?;
    let mut fleet = cx.fleet(&channels).await?;
    let connect = cx.open(&mut fleet, cx.args.connect_concurrency, "connect").await?;
    let open = cx.memory_after(Duration::from_millis(500)).await;

    let before = cx.publish(&channels, cx.plan(cx.sizes.messages, 0), "publish before the drop").await?;
    let per_channel = subscribers_per_channel(cx.sizes.subscribers, channels.len());
    let expected_before: u64 = before.ok_by_channel.iter().zip(&per_channel).map(|(m, s)| m * s).sum();
    let received = fleet.wait_for(expected_before, Duration::from_secs(cx.args.drain_secs)).await?;
    cx.log(&format!("before the drop: {} of {expected_before} deliveries", received.delivered));

    fleet.drop_all().await?;
    cx.log("dropped every subscriber");
    let gap_plan = Plan {
        total: cx.args.gap_messages,
        rate: None,
        publishers: cx.sizes.publishers.min(channels.len()),
        ..cx.plan(0, before.next_seq)
    };
    let gap = cx.publish(&channels, gap_plan, "publish in the gap").await?;

    let storm = match cx.args.storm_concurrency {
        0 => cx.sizes.subscribers.min(cx.args.per_process),
        n => n,
    };
    let reconnect = cx.open(&mut fleet, storm, "reconnect storm").await?;
    let after = cx.publish(&channels, cx.plan(cx.sizes.messages, gap.next_seq), "publish after the reconnect").await?;

    let expected_by_channel: Vec<u64> =
        (0..channels.len()).map(|c| before.ok_by_channel[c] + gap.ok_by_channel[c] + after.ok_by_channel[c]).collect();
    let outcome = cx.drain_and_finish(fleet, expected_by_channel).await?;
    cx.check_outcome(&outcome, true);
    if outcome.exact < outcome.subscribers {
        cx.problems.push(format!(
            "{} of {} subscribers did not get every message exactly once in order",
            outcome.subscribers - outcome.exact,
            outcome.subscribers
        ));
    }
    Ok(cx.report(
        open,
        connect.connected,
        json!({
            "channels": { "count": channels.len(), "create_ms": create_ms },
            "connect": connect_json(&connect),
            "connect_all_ms": connect.last_connected_ms,
            "publish_before": before.report(),
            "publish_gap": gap.report(),
            "reconnect": connect_json(&reconnect),
            "publish_after": after.report(),
            "deliveries": outcome_json(&outcome),
            "latency_ms": outcome.latency.summary_ms(),
        }),
    ))
}

/// wait: N MCP sessions each looping wait_for_messages on one channel while
/// messages are published through REST; see wait.rs.
async fn wait(mut cx: Context<'_>) -> Result<Value, String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::wait::{self, Shared, WaiterReport};

    let url = cx.args.mcp_url.clone().ok_or("the wait scenario needs --mcp-url")?;
    let (channels, create_ms) = cx.channels().await?;
    let channel = channels[0].clone();
    // The seed: every waiter's first cursor, so none misses a message however late it starts.
    let seed_url = publish::fill(cx.target.publish_templates().first().ok_or("--publish-url is empty")?, &channel);
    let mut request = cx.client.post(&seed_url).header("content-type", "text/plain").body("seed");
    for (name, value) in cx.target.publish_headers.iter().filter_map(|h| h.split_once(':')) {
        request = request.header(name.trim(), publish::fill(value.trim(), &channel));
    }
    let seed: Value = request
        .send()
        .await
        .map_err(|e| format!("seed publish: {e}"))?
        .json()
        .await
        .map_err(|e| format!("seed publish: {e}"))?;
    let seed = seed["message_id"].as_str().ok_or("seed publish: no message_id")?.to_owned();

    let n = cx.sizes.subscribers;
    let started = Instant::now();
    let (sessions, session_failures) = wait::open_sessions(&url, &cx.sources, n, cx.args.connect_concurrency).await?;
    let sessions_ms = wait::elapsed_ms(started);
    cx.log(&format!("{} of {n} MCP sessions open in {sessions_ms} ms; failures {session_failures:?}", sessions.len()));
    if sessions.len() < n {
        cx.problems.push(format!("{} of {n} sessions did not open: {session_failures:?}", n - sessions.len()));
    }
    let with_sessions = cx.memory_after(Duration::from_secs(1)).await;

    let messages = cx.sizes.messages;
    let shared = Arc::new(Shared {
        latency: stats::Histogram::default(),
        slowest: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        waiting: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let waiters = sessions.len() as u64;
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| tokio::spawn(wait::waiter(session, channel.clone(), seed.clone(), messages, shared.clone())))
        .collect();
    // Every first call sent, then time for the server to hold them all.
    while shared.waiting.load(Ordering::Relaxed) < waiters {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle = Duration::from_millis(2000 + waiters);
    let waiting = cx.memory_after(settle).await;
    cx.log(&format!("{waiters} calls waiting; server memory {waiting:?} (sessions only: {with_sessions:?})"));

    let published = cx.publish(&channels, cx.plan(messages, 0), "publish").await?;
    let drain_until = Instant::now() + Duration::from_secs(cx.args.drain_secs);
    while shared.done.load(Ordering::Relaxed) < waiters && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut total = WaiterReport::default();
    let mut exact = 0u64;
    for task in tasks {
        let report = task.await.map_err(|e| format!("waiter task: {e}"))?;
        if report.missing == 0 && report.duplicates == 0 && report.out_of_order == 0 {
            exact += 1;
        }
        total.merge(&report);
    }
    cx.log(&format!("{} of {} deliveries; {exact} of {waiters} waiters exact", total.delivered, waiters * messages));
    let expected = waiters * messages;
    if total.missing > 0 {
        cx.problems.push(format!("{} of {expected} deliveries missing", total.missing));
    }
    if total.duplicates > 0 {
        cx.problems.push(format!("{} duplicate deliveries", total.duplicates));
    }
    if total.out_of_order > 0 {
        cx.problems.push(format!("{} deliveries out of order", total.out_of_order));
    }
    if total.unparsed > 0 {
        cx.problems.push(format!("{} messages that were not a load-test payload", total.unparsed));
    }
    if !total.errors.is_empty() {
        cx.problems.push(format!("failed calls: {:?}", total.errors));
    }
    let per = |a: Option<Memory>, b: Option<Memory>, f: fn(&Memory) -> u64| match (a, b) {
        (Some(a), Some(b)) if waiters > 0 => {
            Some(((f(&b) as f64 - f(&a) as f64) / waiters as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let slowest = wait::slowest(&shared);
    Ok(cx.report(
        waiting,
        waiters,
        json!({
            "channels": { "count": 1, "create_ms": create_ms },
            "sessions": { "requested": n, "opened": waiters, "failures": session_failures, "open_all_ms": sessions_ms },
            "server_rss_kib_sessions_open": with_sessions.map(|m| m.rss_kib),
            "rss_per_session_kib": per(cx.idle, with_sessions, |m| m.rss_kib),
            "rss_per_wait_over_session_kib": per(with_sessions, waiting, |m| m.rss_kib),
            "publish": published.report(),
            "deliveries": {
                "subscribers": waiters,
                "expected": expected,
                "delivered": total.delivered,
                "missing": total.missing,
                "duplicates": total.duplicates,
                "out_of_order": total.out_of_order,
                "exact_subscribers": exact,
                "unparsed": total.unparsed,
            },
            "calls": {
                "total": total.calls,
                "with_messages": total.with_messages,
                "empty": total.empty,
                "errors": total.errors,
                "timeout_seconds": 20,
            },
            "latency_ms": shared.latency.data().summary_ms(),
            "all_returned_ms": slowest.summary_ms(),
        }),
    ))
}

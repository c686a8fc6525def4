//! chantra-load: a load generator for Server-Sent Events pub/sub servers.
//!
//! Scenarios (`--scenario`), each reporting JSON on stdout:
//! - `fanout` (default): N subscribers on one channel, M messages at R/s;
//! - `publish`: publish throughput — P concurrent publishers, as fast as
//!   possible, for a count or a duration (subscribers optional);
//! - `channels`: many channels, one subscriber each, messages round-robin;
//! - `idle`: N streams held open; memory per stream, and every stream still
//!   alive (and delivering) after the hold;
//! - `resume`: N subscribers dropped at once and reconnected with
//!   Last-Event-ID while messages were published in the gap;
//! - `wait`: N MCP sessions each looping `wait_for_messages` on one channel
//!   while messages are published through REST (Chantra only, `--mcp-url`).
//!
//! Deliveries are checked per subscriber (missing, duplicate, out of order)
//! from a sequence number inside the payload, latency from a timestamp inside
//! it; the server's memory is read from /proc (`--server-pid`). URLs are
//! templates (`{channel}`, `{token}`), so another server (nchan) is measured
//! the same way. The exit status is 2 when a check fails, 1 on a setup error.
//! See docs/BENCHMARKS.md and scripts/bench.sh.

mod fleet;
mod message;
mod publish;
mod s3put;
mod scenarios;
mod sse;
mod stats;
mod wait;

use std::net::IpAddr;

use clap::Parser;

use crate::message::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Publish,
    Channels,
    Idle,
    Resume,
    Wait,
    /// Not Chantra: a plain PUT loop against the S3 server in S3_ENDPOINT
    /// (S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY), the publish scenario's sizes.
    S3put,
}

#[derive(Debug, Parser)]
#[command(
    about = "Load generator for SSE pub/sub servers: fan-out, publish throughput, many channels, idle streams, resume storms"
)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "fanout")]
    pub scenario: Scenario,
    /// Subscribers in all, spread round-robin over the channels. Default:
    /// fanout 1000, publish 0, channels one per channel, idle 20000, resume 5000, wait 1000.
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Messages to publish (all channels together). Default: fanout 100,
    /// publish 1000000 (or until --duration-secs), channels 3 per channel,
    /// idle 1 (after the hold), resume 10 before the drop and 10 after, wait 20.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Publish rate, messages per second; 0 = as fast as possible. Default:
    /// fanout 10, publish 0, channels 1000, idle 0, resume 20, wait 2.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Channels to create (or name). Default: channels 10000, others 1.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Concurrent publish requests. Default: publish 64, channels 16, others 1
    /// (one channel's messages then leave in order).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Payload size in bytes (padded after the sequence number and timestamp).
    /// Default: publish 1024, others as small as possible.
    #[arg(long)]
    pub payload_bytes: Option<usize>,
    /// publish: stop after this many seconds even if --messages were not all sent.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// idle: seconds to hold the streams open before checking them.
    #[arg(long, default_value_t = 30)]
    pub hold_secs: u64,
    /// resume: messages published while every subscriber is disconnected.
    #[arg(long, default_value_t = 10)]
    pub gap_messages: u64,
    /// resume: reconnects in flight at once per process; 0 = all at once.
    #[arg(long, default_value_t = 0)]
    pub storm_concurrency: usize,
    /// Creates each channel first (POST, Chantra API) and fills {channel} and {token} from the answer.
    #[arg(long)]
    pub create_url: Option<String>,
    /// Channel name when not created (e.g. for nchan); `{run}` becomes a random
    /// run id, and several channels get `-<index>` appended.
    #[arg(long, default_value = "load-{run}")]
    pub channel: String,
    /// Subscribe URL template, e.g. http://127.0.0.1:8070/v1/public/{channel}. Several,
    /// separated by spaces, spread the subscribers round-robin (e.g. two channels processes).
    #[arg(long)]
    pub subscribe_url: Option<String>,
    /// wait: the MCP endpoint (streamable HTTP), e.g. http://127.0.0.1:8090/mcp.
    #[arg(long)]
    pub mcp_url: Option<String>,
    /// Publish URL template, e.g. http://127.0.0.1:8081/v1/channels/{channel}/publish. Several,
    /// separated by spaces, spread the publishes round-robin (e.g. two rest processes).
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Extra publish header template, e.g. "X-Publish-Token: {token}".
    #[arg(long)]
    pub publish_header: Vec<String>,
    /// How the payload arrives: base64 inside Chantra's JSON data, or the raw data line (nchan).
    #[arg(long, value_enum, default_value = "chantra")]
    pub format: Format,
    /// Server process whose memory is reported (idle, all streams open, peak);
    /// its child processes (nginx workers) are added in.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// How often the server's memory is sampled for the peak, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub rss_interval_ms: u64,
    /// Concurrent connection attempts (per process).
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Seconds to wait for the last deliveries after the last publish.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Local addresses to connect from, round-robin: a list ("127.0.0.1,127.0.0.2")
    /// or a range ("127.0.0.1-127.0.0.8"). Each gives ~28,000 ephemeral ports.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    /// Subscribers per process: more are spread over worker processes of this
    /// binary (each process may hold at most `ulimit -n` sockets).
    #[arg(long, default_value_t = 15_000)]
    pub per_process: usize,
    /// Retries per subscriber after a 429/503 (honouring Retry-After) or an I/O
    /// error, and resumes after the server closed a stream.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Seconds one connection attempt may take.
    #[arg(long, default_value_t = 30)]
    pub attempt_timeout_secs: u64,
    /// Seconds opening (or reconnecting) every subscriber may take in all.
    #[arg(long, default_value_t = 300)]
    pub connect_deadline_secs: u64,
    /// Appends `<event> <unix ms>` lines to this file (publish_start,
    /// publish_end, drain_end in fanout, publish and channels), so a profiler
    /// running beside the tool (bench/scaleout_probe.py) can cut its samples
    /// to the measured window, leaving out channel creation and connects.
    #[arg(long)]
    pub mark_file: Option<std::path::PathBuf>,
    /// Internal: run as a worker process holding subscribers for a parent.
    #[arg(long, hide = true)]
    pub worker: bool,
}

#[derive(Clone, Debug)]
pub struct SourceIps(pub Vec<IpAddr>);

fn parse_source_ips(text: &str) -> Result<SourceIps, String> {
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (
                    first.parse().map_err(|e| format!("{first}: {e}"))?,
                    last.parse().map_err(|e| format!("{last}: {e}"))?,
                );
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first || last - first > 255 {
                    return Err(format!("{part}: a range of 1 to 256 addresses"));
                }
                ips.extend((first..=last).map(|ip| IpAddr::from(std::net::Ipv4Addr::from(ip))));
            }
            None => ips.push(part.parse().map_err(|e| format!("{part}: {e}"))?),
        }
    }
    if let Some(ip) = ips.iter().find(|ip| !ip.is_loopback()) {
        return Err(format!("{ip}: only loopback source addresses"));
    }
    if ips.is_empty() {
        return Err("no address".to_owned());
    }
    Ok(SourceIps(ips))
}

fn main() -> std::process::ExitCode {
    // Parsing happens before the runtime, so --help and errors need no threads.
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chantra-load: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if args.worker {
        return match runtime.block_on(fleet::worker_main()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chantra-load worker: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    match runtime.block_on(scenarios::run(args)) {
        Ok(report) => {
            let ok = report["ok"].as_bool().unwrap_or(false);
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            if ok {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("chantra-load: check failed: {}", report["problems"]);
                std::process::ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("chantra-load: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

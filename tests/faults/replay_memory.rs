//! Case 7: slow resuming readers cannot make the server hold their replays.
//!
//! `slow_resuming_readers_hold_bounded_replay_memory`: a channel holds
//! `MESSAGES` × 1 MiB; `SLOW` streams resume from
//! `Last-Event-ID: 00000000-…` and then read 512 bytes every 250 ms (tiny
//! SO_RCVBUF). The server may hold at most one replay frame per reader and
//! at most SSE_REPLAY_MEMORY_BYTES for all of them; a reader that cannot get
//! room in time, or takes a frame slower than SSE_MIN_READ_RATE (or stalls
//! for the write timeout), is ended so it can resume. Peak RSS (VmRSS sampled, and VmHWM) stays under a bound computed
//! from those settings — before the bound, each reader queued 32 encoded
//! frames (~45 MB) — and a reader that does read, resuming the same way,
//! receives every message once, in order.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{RssSampler, create_channel, proc_kib, stream_path};
use crate::server::Stack;
use crate::traffic::{Outcome, Subscriber, assert_exactly, publish_once, wait_delivered};

const MESSAGES: usize = 24;
const MESSAGE_BYTES: usize = 1024 * 1024;
const SLOW: usize = 40;
/// SSE_REPLAY_MEMORY_BYTES of the server under test.
const REPLAY_MEMORY: u64 = 16 * 1024 * 1024;
/// SSE_MIN_READ_RATE: a 1 MiB message's frame (~1.4 MB) must be taken within
/// ~21 s, longer than WRITE_TIMEOUT_SECS (10).
const MIN_READ_RATE: u64 = 64 * 1024;
/// How long the slow readers keep reading (and RSS is sampled) before they hang up.
const PRESSURE: Duration = Duration::from_secs(15);
const LIMIT: Duration = Duration::from_secs(90);
const ORIGIN: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_resuming_readers_hold_bounded_replay_memory() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let memory = REPLAY_MEMORY.to_string();
    let rate = MIN_READ_RATE.to_string();
    let settings = [
        ("WRITE_TIMEOUT_SECS", "10"),
        ("SSE_REPLAY_MEMORY_BYTES", memory.as_str()),
        ("SSE_MIN_READ_RATE", rate.as_str()),
        ("METRICS_ENABLED", "true"),
    ];
    let server = stack.start("server", "rest,channels", &settings).await;
    let client = crate::common::api_client(Duration::from_secs(30));
    let channel = create_channel(&client, &server.rest_url(""), "public").await;
    let path = stream_path(&channel);
    let channels = server.addr("channels");

    let publish_url = server.rest_url(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let mut acked = Vec::new();
    for i in 0..MESSAGES {
        let mut body = vec![b'a' + (i % 26) as u8; MESSAGE_BYTES];
        body[..8].copy_from_slice(format!("{i:08}").as_bytes());
        match publish_once(&client, &publish_url, token, body.clone(), None).await {
            Outcome::Created(id) => acked.push((id, body)),
            other => panic!("publish {i}: {other:?}"),
        }
    }
    let rss_before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());

    // The slow readers: resume from the origin, then 512 bytes every 250 ms.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {channels}\r\nAccept: text/event-stream\r\nLast-Event-ID: {ORIGIN}\r\n\r\n"
    );
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                let mut stream = socket.connect(channels).await.expect("connect");
                stream.write_all(request.as_bytes()).await.unwrap();
                let until = Instant::now() + PRESSURE;
                let (mut bytes, mut ended) = (0usize, false);
                let mut buf = [0u8; 512];
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            ended = true;
                            break;
                        }
                        Ok(Ok(n)) => bytes += n,
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (bytes, ended)
            })
        })
        .collect();

    // A reader that does read, resuming the same way while the slow ones press.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reader = Subscriber::spawn(reqwest::Client::new(), server.channels_url(&path), Some(ORIGIN.into()), LIMIT);

    let mut slow_ends = 0;
    let mut slow_bytes = Vec::new();
    for task in slow {
        let (bytes, ended) = task.await.unwrap();
        slow_bytes.push(bytes);
        slow_ends += usize::from(ended);
    }
    let delivered = wait_delivered(std::slice::from_ref(&reader), MESSAGES, LIMIT).await;
    let peak = sampler.peak_kib().max(proc_kib(server.pid(), "VmHWM").unwrap_or(0));
    let log = reader.stop().await;
    let metrics = client.get(server.channels_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counter = |name: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let (no_room, too_slow) =
        (counter("chantra_replay_memory_ends_total"), counter("chantra_slow_reader_disconnects_total"));

    // One frame per slow reader at most, all of them within the process cap: the
    // bound is the cap twice over (a frame being encoded beside its payload),
    // plus the allocator's slack, on top of the server before the readers came.
    let bound = rss_before + 2 * REPLAY_MEMORY / 1024 + 96 * 1024;
    let per_reader = MESSAGES.min(32) as u64 * MESSAGE_BYTES as u64 * 4 / 3 / 1024;
    eprintln!(
        "[case 7] {SLOW} streams resuming from {ORIGIN} over {MESSAGES} x {} KiB, reading 512 B per 250 ms for \
         {PRESSURE:?} (WRITE_TIMEOUT_SECS=10, SSE_REPLAY_MEMORY_BYTES={REPLAY_MEMORY}, SSE_MIN_READ_RATE={MIN_READ_RATE}): server RSS \
         {rss_before} KiB before, peak {peak} KiB (bound {bound} KiB; unbounded replays queue ~{per_reader} KiB \
         per reader); streams ended for want of replay room: {no_room}, cut below the minimum read rate: \
         {too_slow}; {slow_ends}/{SLOW} slow readers saw their end within {PRESSURE:?}, having read (min, max) \
         {:?} bytes; a reading subscriber resuming the same way got {}/{MESSAGES} ({delivered:?} after the slow readers \
         stopped) over {} streams; test took {:?}",
        MESSAGE_BYTES / 1024,
        (slow_bytes.iter().min(), slow_bytes.iter().max()),
        log.received.len(),
        log.streams,
        started.elapsed()
    );
    assert!(peak < bound, "server RSS peaked at {peak} KiB (bound {bound} KiB, {rss_before} KiB before)");
    assert!(no_room > 0.0, "the replay budget never turned a reader away ({SLOW} readers, {REPLAY_MEMORY} bytes)");
    assert_exactly("the reading subscriber", &log, &acked);
}

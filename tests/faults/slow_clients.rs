//! Case 6: slow clients cannot hold a server's resources.
//!
//! - `slowloris_connections_are_closed_by_the_header_timeout`: 100
//!   connections send a request line and then one header byte per second;
//!   HEADER_READ_TIMEOUT_SECS=2 must close each of them, while normal
//!   requests keep being answered promptly.
//! - `never_reading_subscriber_is_cut_by_the_write_timeout`: five
//!   subscribers from one address send the SSE request and never read (tiny
//!   SO_RCVBUF) while 40 messages of 256 KiB are published; with
//!   WRITE_TIMEOUT_SECS=2 the server closes them — their address's stream
//!   slots (MAX_STREAMS_PER_IP=5) come free again — memory stays bounded and
//!   the subscribers that do read receive everything.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{RssSampler, create_channel, proc_kib, spread, stream_path, streams_active};
use crate::server::Stack;
use crate::sse_client::try_connect;
use crate::traffic::{Outcome, Subscriber, assert_exactly, publish_once, wait_delivered};

const HEADER_TIMEOUT_SECS: u64 = 2;
const WRITE_TIMEOUT_SECS: u64 = 2;
/// Closing may take the timeout plus this (timer granularity, a busy machine).
const MARGIN: Duration = Duration::from_secs(3);
const SLOW_CONNECTIONS: usize = 100;
const STUCK: usize = 5;
const READERS: usize = 3;
const MESSAGES: usize = 40;
const MESSAGE_BYTES: usize = 256 * 1024;
const RSS_CEILING_KIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_header_timeout() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let timeout = HEADER_TIMEOUT_SECS.to_string();
    let server = stack.start("server", "rest,channels", &[("HEADER_READ_TIMEOUT_SECS", timeout.as_str())]).await;
    let client = crate::common::api_client(Duration::from_secs(10));
    let channel = create_channel(&client, &server.rest_url(""), "public").await;

    // Half on each role's port.
    let targets = [server.addr("rest"), server.addr("channels")];
    let slow: Vec<_> = (0..SLOW_CONNECTIONS)
        .map(|i| {
            let target = targets[i % 2];
            tokio::spawn(async move {
                let mut socket = tokio::net::TcpStream::connect(target).await.expect("connect");
                let opened = Instant::now();
                socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow.test\r\nX-Trickle: ").await.expect("write");
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut answer = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    tokio::select! {
                        read = socket.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return Ok((opened.elapsed(), answer)),
                            Ok(n) => answer.extend_from_slice(&buf[..n]),
                        },
                        _ = tick.tick() => {
                            if socket.write_all(b"a").await.is_err() {
                                return Ok((opened.elapsed(), answer));
                            }
                        }
                    }
                    if opened.elapsed() > Duration::from_secs(20) {
                        return Err(format!("still open after {:?}", opened.elapsed()));
                    }
                }
            })
        })
        .collect();

    // Normal traffic meanwhile: a health check on each role and a publish, every 100 ms.
    let publish_url = server.rest_url(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let mut normal = Vec::new();
    let mut n = 0;
    while !slow.iter().all(|t| t.is_finished()) {
        assert!(started.elapsed() < LIMIT + LIMIT, "slow connections still open");
        for url in [server.rest_url("/healthz"), server.channels_url("/healthz")] {
            let sent = Instant::now();
            let status = client.get(&url).send().await.map(|r| r.status().as_u16());
            assert_eq!(status.as_ref().ok(), Some(&200), "{url} during the slowloris: {status:?}");
            normal.push(sent.elapsed());
        }
        let sent = Instant::now();
        let outcome = publish_once(&client, &publish_url, token, format!("normal {n}").into(), None).await;
        assert!(matches!(outcome, Outcome::Created(_)), "publish during the slowloris: {outcome:?}");
        normal.push(sent.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed = Vec::new();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for task in slow {
        let (after, answer) = task.await.unwrap().unwrap_or_else(|e| {
            panic!("a slowloris connection was not closed by the server (HEADER_READ_TIMEOUT_SECS={HEADER_TIMEOUT_SECS}): {e}")
        });
        let first_line = String::from_utf8_lossy(&answer).lines().next().unwrap_or("(nothing)").to_owned();
        assert!(!first_line.contains(" 200 "), "a slow request was answered as if complete: {first_line}");
        *answers.entry(first_line).or_default() += 1;
        closed.push(after);
    }
    let (c_min, c_med, c_max) = spread(&closed);
    let limit = Duration::from_secs(HEADER_TIMEOUT_SECS) + MARGIN;
    assert!(c_max <= limit, "a slowloris connection stayed open {c_max:?} (limit {limit:?})");
    let (_, n_med, n_max) = spread(&normal);
    // Generous for a busy machine; a server tied up by slow clients would not answer at all.
    assert!(n_max < Duration::from_secs(5), "a normal request took {n_max:?} during the slowloris");
    eprintln!(
        "[case 6a] {SLOW_CONNECTIONS} slowloris connections (one header byte per second) closed after \
         min/median/max {c_min:?}/{c_med:?}/{c_max:?} (HEADER_READ_TIMEOUT_SECS={HEADER_TIMEOUT_SECS}); \
         they were told {answers:?}; meanwhile {} normal requests all succeeded (median {n_med:?}, max \
         {n_max:?}); test took {:?}",
        normal.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_subscriber_is_cut_by_the_write_timeout() {
    let started = Instant::now();
    let stack = Stack::shared_postgres().await;
    let timeout = WRITE_TIMEOUT_SECS.to_string();
    let per_ip = STUCK.to_string();
    let settings = [
        ("WRITE_TIMEOUT_SECS", timeout.as_str()),
        ("MAX_STREAMS_PER_IP", per_ip.as_str()),
        // The probes' own closed streams free their slots within a second.
        ("SSE_KEEPALIVE_SECS", "1"),
        ("METRICS_ENABLED", "true"),
    ];
    let server = stack.start("server", "rest,channels", &settings).await;
    let client = crate::common::api_client(Duration::from_secs(30));
    let channel = create_channel(&client, &server.rest_url(""), "public").await;
    let path = stream_path(&channel);
    let url = server.channels_url(&path);
    let channels = server.addr("channels");

    let readers: Vec<Subscriber> =
        (0..READERS).map(|_| Subscriber::spawn(reqwest::Client::new(), url.clone(), None, LIMIT)).collect();
    // The never-readers: their own address, a tiny receive buffer, the request and then nothing.
    let stuck_ip: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    let mut stuck = Vec::new();
    for _ in 0..STUCK {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind((stuck_ip, 0).into()).unwrap();
        let mut stream = socket.connect(channels).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {channels}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        stuck.push(stream);
    }
    // Each got its stream (they read the response head, and nothing after it).
    for stream in &mut stuck {
        let head = read_head(stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "a never-reader's stream was refused: {head}");
    }
    // Their address's five slots are all taken.
    assert_eq!(probe(&url, stuck_ip).await, 0, "a stream from the never-readers' address was let in");
    crate::common::wait_until("the readers' streams", LIMIT, Duration::from_millis(50), || {
        readers.iter().all(|r| r.streams() == 1)
    })
    .await;

    let open_before = streams_active(&server.channels_url("")).await;
    assert_eq!(open_before as usize, STUCK + READERS, "the server counts every open stream");
    let sampler = RssSampler::start(server.pid());
    let rss_before = server.rss_kib();
    let publish_url = server.rest_url(&format!("/v1/channels/{}/publish", channel["channel_id"].as_str().unwrap()));
    let token = channel["publish_token"].as_str().unwrap();
    let mut acked = Vec::new();
    let publishing = Instant::now();
    for i in 0..MESSAGES {
        let mut body = vec![b'a' + (i % 26) as u8; MESSAGE_BYTES];
        body[..8].copy_from_slice(format!("{i:08}").as_bytes());
        match publish_once(&client, &publish_url, token, body.clone(), None).await {
            Outcome::Created(id) => acked.push((id, body)),
            other => panic!("publish {i}: {other:?}"),
        }
    }
    let published = Instant::now();

    // The server cuts the never-readers: their address gets a stream again.
    let released = loop {
        let let_in = probe(&url, stuck_ip).await;
        if let_in == STUCK {
            break published.elapsed();
        }
        assert!(
            published.elapsed() < Duration::from_secs(30),
            "30 s after the last publish the server still held the {STUCK} never-reading streams \
             (WRITE_TIMEOUT_SECS={WRITE_TIMEOUT_SECS})"
        );
        // A probe that got in holds its slots until the server notices it left (next keep-alive).
        let pause = if let_in == 0 { 250 } else { 2500 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    };
    // The server's own count: only the readers' streams are left (the probes' go at the next keep-alive).
    let counting = Instant::now();
    let open_after = loop {
        let open = streams_active(&server.channels_url("")).await;
        if open as usize == READERS {
            break open;
        }
        assert!(counting.elapsed() < LIMIT, "the server still counts {open} open streams ({READERS} readers)");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let delivered = wait_delivered(&readers, MESSAGES, LIMIT).await;
    let peak = sampler.peak_kib().max(proc_kib(server.pid(), "VmHWM").unwrap_or(0));
    let mut logs = Vec::new();
    for reader in readers {
        logs.push(reader.stop().await);
    }
    for (i, log) in logs.iter().enumerate() {
        assert_exactly(&format!("reader {i}"), log, &acked);
    }

    // Each never-reader's connection is closed: reading it now reaches the end, short of everything published.
    let total = MESSAGES * MESSAGE_BYTES * 4 / 3;
    let mut got = Vec::new();
    for mut stream in stuck {
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0usize;
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => bytes += n,
                }
            }
        })
        .await;
        assert!(read.is_ok(), "a never-reading connection is still open ({bytes} bytes read)");
        assert!(bytes < total, "a never-reader received everything ({bytes} bytes): it was not cut");
        got.push(bytes);
    }
    assert!(peak < RSS_CEILING_KIB, "server RSS peaked at {peak} KiB");
    eprintln!(
        "[case 6b] {STUCK} never-reading subscribers (SO_RCVBUF 4 KiB) while {MESSAGES} x {} KiB were \
         published in {:?}: their slots were free again {released:?} after the last publish \
         (WRITE_TIMEOUT_SECS={WRITE_TIMEOUT_SECS}) and the server's open-stream count went from \
         {open_before} to {open_after}; they had received {got:?} of ~{total} bytes; \
         {READERS} reading subscribers got {MESSAGES}/{MESSAGES} in order (last {delivered:?} after the \
         last publish); server RSS {rss_before} KiB before, peak {peak} KiB (ceiling {RSS_CEILING_KIB}); \
         test took {:?}",
        MESSAGE_BYTES / 1024,
        published - publishing,
        started.elapsed()
    );
}

/// Reads a response head (up to the blank line), bounded.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response head within 10 s: {}", String::from_utf8_lossy(&head));
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens `STUCK` streams at once from `ip` and closes them again; how many were let in (200).
async fn probe(url: &str, ip: std::net::IpAddr) -> usize {
    let client = reqwest::Client::builder().local_address(ip).build().unwrap();
    let answers = futures::future::join_all((0..STUCK).map(|_| try_connect(client.get(url)))).await;
    answers.into_iter().filter(|a| a.as_ref().is_ok_and(|s| s.status == 200)).count()
}

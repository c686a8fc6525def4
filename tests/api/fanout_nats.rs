//! Fan-out over NATS across real processes (PostgreSQL + S3 only): the
//! built binary runs as two `--role rest` and three `--role channels`
//! children with FANOUT_URL pointing at a nats-server of the test's own.
//!
//! 1. Steady: 100 subscribers, spread over the three channels processes and
//!    four channels, and 1,000 messages published alternately through both
//!    rest processes: every subscriber receives every acknowledged message
//!    exactly once, in order.
//! 2. Interest: a process with no reader on a channel receives no notice for
//!    it (chantra_fanout_notices_received_total on each process).
//! 3. Faults, while 400 more messages are published: a channels process is
//!    killed (SIGKILL) and restarted (its subscribers resume with
//!    Last-Event-ID), then nats-server is stopped for 5 s and restarted, and
//!    during the outage the same channels process is killed again and starts
//!    without NATS. Nothing is lost or repeated; /readyz reports the degraded
//!    bus and recovers without a restart; a grant revoked during the outage
//!    and one revoked after it end their streams.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chantra_testkit::{Launcher, NatsServer, Server, bin};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestDatabase, s3_env, sample};
use crate::processes::{create_channel, ids, open, publish, stream_path};
use crate::sse_client::{self, SseStream};

/// The longest any single wait may take.
const WAIT: Duration = Duration::from_secs(30);
const CHANNELS: usize = 4;
const SUBSCRIBERS: usize = 100;
/// Messages of the steady phase, over all channels.
const STEADY: usize = 1000;
/// Messages published while processes and NATS fail, over all channels.
const FAULTY: usize = 400;
/// Pause between two publishes of one channel in the fault phase, so that
/// the faults happen while messages are being published.
const FAULTY_PACE: Duration = Duration::from_millis(80);
/// How long nats-server stays down.
const OUTAGE: Duration = Duration::from_secs(5);
const NOTICES: &str = "chantra_fanout_notices_received_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_rest_three_channels_every_message_once_in_order() {
    let started = Instant::now();
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(dir.path().join("nats-server.log")).await;
    let mut cluster = Cluster::start(&database, &nats, dir.path()).await;
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let channels: Vec<Value> =
        futures::future::join_all((0..CHANNELS).map(|_| create_channel(&client, &cluster.rest[0], "public"))).await;
    // One seed message per channel: subscribers start after it (Last-Event-ID),
    // so any reconnection resumes from a known id.
    let mut published: Vec<Vec<String>> = Vec::new();
    for (c, channel) in channels.iter().enumerate() {
        published.push(vec![publish(&client, &cluster.rest[0], channel, &format!("c{c} seed"), WAIT).await]);
    }
    let stop = CancellationToken::new();
    let subscribers: Vec<Subscriber> = (0..SUBSCRIBERS)
        .map(|s| {
            let (c, p) = (s % CHANNELS, s % cluster.channels.len());
            Subscriber::start(&cluster.channels[p], p, c, &channels[c], &published[c][0], &stop)
        })
        .collect();
    wait_all_open(&subscribers).await;
    eprintln!("{SUBSCRIBERS} subscribers open after {:?}", started.elapsed());

    // 1. Steady.
    let phase = Instant::now();
    let batch = publish_batch(&client, &cluster.rest, &channels, STEADY / CHANNELS, 0, Duration::ZERO).await;
    let publishing = phase.elapsed();
    for (all, new) in published.iter_mut().zip(batch) {
        all.extend(new);
    }
    wait_delivered(&subscribers, &published, "steady").await;
    eprintln!(
        "steady: {STEADY} messages published in {publishing:?}, all delivered to {SUBSCRIBERS} subscribers after {:?}",
        phase.elapsed()
    );

    // 2. Interest: only channels-1 follows `quiet`.
    let quiet = create_channel(&client, &cluster.rest[1], "public").await;
    let mut quiet_reader = open(&cluster.channels[0], &quiet, &[]).await;
    let before = notices_received(&client, &cluster.channels).await;
    let mut quiet_ids = Vec::new();
    for i in 0..30 {
        quiet_ids.push(publish(&client, &cluster.rest[i % 2], &quiet, &format!("quiet {i}"), WAIT).await);
    }
    let got = quiet_reader.messages(quiet_ids.len(), WAIT).await;
    assert_eq!(ids(&got), quiet_ids, "the quiet channel's reader got every message in order");
    let after = notices_received(&client, &cluster.channels).await;
    let deltas: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("notices received per channels process while only channels-1 followed the channel: {deltas:?}");
    assert_eq!(deltas, [quiet_ids.len() as f64, 0.0, 0.0], "notices reach only the process with a reader");

    // 3. Faults, while publishing: a private channel with two grants, read on
    //    channels-2 (revoked during the NATS outage) and channels-1 (after).
    let private = create_channel(&client, &cluster.rest[0], "private").await;
    let during_grant = first_grant(&client, &cluster.rest[0], &private).await;
    let after_grant = new_grant(&client, &cluster.rest[1], &private).await;
    let mut revoked_during =
        open(&cluster.channels[1], &private, &[("x-read-token", private["read_token"].as_str().unwrap())]).await;
    let mut revoked_after =
        open(&cluster.channels[0], &private, &[("x-read-token", after_grant["read_token"].as_str().unwrap())]).await;
    publish(&client, &cluster.rest[0], &private, "private 0", WAIT).await;
    assert_eq!(revoked_during.messages(1, WAIT).await.len(), 1);
    assert_eq!(revoked_after.messages(1, WAIT).await.len(), 1);

    let phase = Instant::now();
    let publishing = {
        let (client, rest, channels) = (client.clone(), cluster.rest_handles(), channels.clone());
        tokio::spawn(async move {
            publish_batch(&client, &rest, &channels, FAULTY / CHANNELS, STEADY / CHANNELS, FAULTY_PACE).await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let victim = &mut cluster.channels[2];
    victim.kill();
    eprintln!("channels-3 killed after {:?}", phase.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.restart().await;
    eprintln!("channels-3 restarted after {:?}", phase.elapsed());

    nats.stop();
    let outage = Instant::now();
    eprintln!("nats-server stopped after {:?}", phase.elapsed());
    wait_degraded(&client, &cluster.channels[0], true).await;
    let revoked_at = Instant::now();
    let revoke = revoke(&client, &cluster.rest[1], &private, &during_grant).await;
    assert_eq!(revoke.status(), 200);
    expect_revoked(&mut revoked_during, "reader revoked during the outage").await;
    eprintln!("revocation during the outage ended its stream after {:?}", revoked_at.elapsed());
    // channels-3 again, now starting while NATS is down: it serves its
    // readers degraded and connects once NATS is back, without a restart.
    wait_reconnected(&subscribers, 2, 2).await;
    let victim = &mut cluster.channels[2];
    victim.kill();
    victim.restart().await;
    wait_degraded(&client, &cluster.channels[2], true).await;
    eprintln!("channels-3 killed and restarted during the outage, {:?} into it", outage.elapsed());
    tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
    nats.restart().await;
    eprintln!("nats-server restarted after {:?} down", outage.elapsed());
    for process in &cluster.channels {
        wait_degraded(&client, process, false).await;
    }
    let revoked_at = Instant::now();
    assert_eq!(revoke_grant_id(&client, &cluster.rest[0], &private, &after_grant).await.status(), 200);
    expect_revoked(&mut revoked_after, "reader revoked after the outage").await;
    let took = revoked_at.elapsed();
    eprintln!("revocation after the outage ended its stream after {took:?}");
    assert!(took < Duration::from_secs(2), "a revocation over NATS took {took:?}");

    let batch = publishing.await.expect("the publishers");
    for (all, new) in published.iter_mut().zip(batch) {
        all.extend(new);
    }
    eprintln!("fault phase: {FAULTY} messages published in {:?}", phase.elapsed());
    wait_delivered(&subscribers, &published, "faults").await;
    stop.cancel();

    for (s, subscriber) in subscribers.iter().enumerate() {
        let got = subscriber.received.lock().unwrap().clone();
        let expected = &published[subscriber.channel][1..];
        let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            got_ids,
            expected,
            "subscriber {s} (channels-{}) got every message once, in order",
            subscriber.process + 1
        );
        for (k, (_, text)) in got.iter().enumerate() {
            assert_eq!(text, &format!("c{} m{k}", subscriber.channel), "subscriber {s}, message {k}");
        }
    }
    let reconnects: usize = subscribers.iter().map(|s| *s.connects.lock().unwrap() - 1).sum();
    eprintln!("subscribers reconnected {reconnects} time(s) in all");
    assert!(reconnects >= 2 * (SUBSCRIBERS / cluster.channels.len()), "channels-3's subscribers resumed twice");
    cluster.print_warnings();
    eprintln!("test ran for {:?}", started.elapsed());
}

/// A NATS server that requires a password: a process given the right one in
/// FANOUT_URL delivers over NATS; a process given a wrong one starts anyway,
/// reports the bus degraded, and its reader still receives every message (by
/// polling the database). Neither password reaches a log. Forged deletion and
/// revocation notices end no stream; a real deletion ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_and_a_refused_client() {
    const PASSWORD: &str = "nats-pass-0123456789abcdef";
    const WRONG: &str = "wrong-pass-9876543210fedcba";
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(dir.path().join("nats.log"), &["--user", "chantra", "--pass", PASSWORD]).await;
    let launcher = |name: &str, role: &str, password: &str| {
        Launcher::new(bin!(), dir.path())
            .name(name)
            .roles(role)
            .database(&database.url)
            .s3(&s3_env())
            .env("FANOUT_URL", format!("nats://chantra:{password}@{}", nats.addr()))
    };
    let good = launcher("good", "rest,channels", PASSWORD).start().await;
    let refused = launcher("refused", "channels", WRONG).env("AUTO_MIGRATE", "false").start().await;
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    wait_degraded(&client, &good, false).await;
    wait_degraded(&client, &refused, true).await;
    eprintln!("bus states as expected after {:?}", started.elapsed());

    let channel = create_channel(&client, &good, "public").await;
    let mut over_nats = open(&good, &channel, &[]).await;
    let mut polling = open(&refused, &channel, &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&client, &good, &channel, &format!("m {i}"), WAIT).await);
    }
    eprintln!("published after {:?}", started.elapsed());
    assert_eq!(self::ids(&over_nats.messages(5, WAIT).await), ids, "delivered over NATS");
    eprintln!("delivered over NATS after {:?}", started.elapsed());
    assert_eq!(self::ids(&polling.messages(5, WAIT).await), ids, "delivered by polling while NATS refuses the client");
    eprintln!("delivered by polling after {:?}", started.elapsed());

    // Forged deletion and revocation notices on the channel's subject (anyone
    // who may publish there could send them) end no stream: the process
    // checks the database, which says the channel and its readers are fine.
    let id = channel["channel_id"].as_str().unwrap();
    let forged = [format!("d {id}"), format!("r {id} {}", uuid::Uuid::now_v7())];
    forge_notices(nats.addr(), PASSWORD, &format!("chantra.ch.{id}"), &forged).await;
    let after = publish(&client, &good, &channel, "after forgery", WAIT).await;
    let got = over_nats.messages(1, WAIT).await;
    assert_eq!(self::ids(&got), [after], "a forged deletion ended no stream: {:?}", over_nats.end);

    // A real deletion ends both streams: over NATS, and by polling.
    let response = client
        .delete(good.rest_url(&format!("/v1/channels/{id}")))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for (name, stream) in [("over NATS", &mut over_nats), ("polling", &mut polling)] {
        let deleted = loop {
            match stream.next(WAIT).await {
                Some(event) if event.event == "message" => continue,
                other => break other,
            }
        };
        assert_eq!(deleted.map(|e| e.event), Some("deleted".to_owned()), "{name}: the deletion ends the stream");
        assert!(stream.ends_within(WAIT).await, "{name}: the stream ends");
    }
    for process in [&good, &refused] {
        let log = process.log();
        assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{} logged a NATS password:\n{log}", process.name());
    }
    assert!(refused.log().contains("NATS unreachable"), "the refused process says why it is degraded");
}

/// Publishes raw notices on `subject` with NATS's text protocol, as any
/// client allowed on the server could.
async fn forge_notices(addr: std::net::SocketAddr, password: &str, subject: &str, payloads: &[String]) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to nats-server");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let info = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(info.starts_with("INFO"), "{info}");
    let mut out = format!("CONNECT {{\"verbose\":false,\"user\":\"chantra\",\"pass\":\"{password}\"}}\r\n");
    for payload in payloads {
        out.push_str(&format!("PUB {subject} {}\r\n{payload}\r\n", payload.len()));
    }
    out.push_str("PING\r\n");
    write.write_all(out.as_bytes()).await.unwrap();
    let pong = tokio::time::timeout(WAIT, lines.next_line()).await.expect("PONG in time").unwrap().unwrap_or_default();
    assert_eq!(pong, "PONG", "nats-server accepted the forged notices");
}

// ---------------------------------------------------------------- processes

struct Cluster {
    rest: Vec<Arc<Server>>,
    channels: Vec<Server>,
}

impl Cluster {
    async fn start(database: &TestDatabase, nats: &NatsServer, dir: &std::path::Path) -> Self {
        let launcher = |name: &str, role: &str| {
            Launcher::new(bin!(), dir)
                .name(name)
                .roles(role)
                .database(&database.url)
                .s3(&s3_env())
                .env("FANOUT_URL", nats.url())
                .env("METRICS_ENABLED", "true")
                .env("RUST_LOG", "info,chantra_nats=debug")
        };
        // The first rest process applies the migrations.
        let mut rest = vec![Arc::new(launcher("rest-1", "rest").start().await)];
        rest.push(Arc::new(launcher("rest-2", "rest").env("AUTO_MIGRATE", "false").start().await));
        let mut channels = Vec::new();
        for i in 1..=3 {
            channels.push(launcher(&format!("channels-{i}"), "channels").start().await);
        }
        Self { rest, channels }
    }

    fn rest_handles(&self) -> Vec<Arc<Server>> {
        self.rest.clone()
    }

    fn print_warnings(&self) {
        let all = self.rest.iter().map(|s| &**s).chain(&self.channels);
        for process in all {
            for line in process.log().lines().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
                eprintln!("[{}] {line}", process.name());
            }
        }
    }
}

/// Waits until a channels process's /readyz reports the bus degraded (or not).
async fn wait_degraded(client: &reqwest::Client, process: &Server, degraded: bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ready: Value = client.get(process.channels_url("/readyz")).send().await.unwrap().json().await.unwrap();
        let state = ready["checks"]["fanout"]["state"].as_str().unwrap_or_default().to_owned();
        assert_eq!(ready["checks"]["fanout"]["bus"], "nats", "{ready}");
        if (state == "degraded") == degraded {
            assert_eq!(ready["status"], "ok", "a degraded bus leaves the process ready: {ready}");
            return;
        }
        assert!(Instant::now() < deadline, "{}: /readyz never reported degraded={degraded}: {ready}", process.name());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn notices_received(client: &reqwest::Client, processes: &[Server]) -> Vec<f64> {
    let mut out = Vec::new();
    for process in processes {
        let text = client.get(process.channels_url("/metrics")).send().await.unwrap().text().await.unwrap();
        out.push(sample(&text, NOTICES).unwrap_or(0.0));
    }
    out
}

// ---------------------------------------------------------------- subscribers

/// One reader following a channel on one channels process, in a task of its
/// own: it reconnects with Last-Event-ID whenever its stream ends (its
/// process was killed) until the test stops it.
struct Subscriber {
    channel: usize,
    process: usize,
    /// (id, payload text) of every message received, across reconnections.
    received: Arc<Mutex<Vec<(String, String)>>>,
    /// Streams opened so far.
    connects: Arc<Mutex<usize>>,
}

impl Subscriber {
    fn start(process: &Server, p: usize, c: usize, channel: &Value, after: &str, stop: &CancellationToken) -> Self {
        let url = process.channels_url(&stream_path(channel));
        let subscriber = Self { channel: c, process: p, received: Arc::default(), connects: Arc::default() };
        let (received, connects, stop, mut last) =
            (subscriber.received.clone(), subscriber.connects.clone(), stop.clone(), after.to_owned());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.is_cancelled() {
                let request = http.get(&url).header("last-event-id", &last);
                let mut stream = match sse_client::try_connect(request).await {
                    Ok(stream) if stream.status == 200 => stream,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                *connects.lock().unwrap() += 1;
                loop {
                    let event = tokio::select! {
                        () = stop.cancelled() => return,
                        event = stream.next(Duration::from_secs(3600)) => event,
                    };
                    match event {
                        Some(event) if event.event == "message" => {
                            let id = event.id.clone().expect("a message has an id");
                            received.lock().unwrap().push((id.clone(), event.text()));
                            last = id;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
        });
        subscriber
    }
}

async fn wait_all_open(subscribers: &[Subscriber]) {
    let deadline = Instant::now() + WAIT;
    while subscribers.iter().any(|s| *s.connects.lock().unwrap() == 0) {
        assert!(Instant::now() < deadline, "not every subscriber could open its stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every subscriber of channels process `p` has opened `count` streams.
async fn wait_reconnected(subscribers: &[Subscriber], p: usize, count: usize) {
    let deadline = Instant::now() + WAIT;
    while subscribers.iter().any(|s| s.process == p && *s.connects.lock().unwrap() < count) {
        assert!(Instant::now() < deadline, "channels-{}'s subscribers did not all resume", p + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every subscriber has as many messages as its channel has
/// after the seed, failing if no progress is made for `WAIT`.
async fn wait_delivered(subscribers: &[Subscriber], published: &[Vec<String>], phase: &str) {
    let total =
        |subscribers: &[Subscriber]| -> usize { subscribers.iter().map(|s| s.received.lock().unwrap().len()).sum() };
    let want: usize = subscribers.iter().map(|s| published[s.channel].len() - 1).sum();
    let (mut seen, mut progress) = (total(subscribers), Instant::now());
    loop {
        let now = total(subscribers);
        if now >= want {
            return;
        }
        if now > seen {
            (seen, progress) = (now, Instant::now());
        }
        if progress.elapsed() > WAIT {
            let short: Vec<String> = subscribers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.received.lock().unwrap().len() < published[s.channel].len() - 1)
                .map(|(i, s)| {
                    format!(
                        "{i} (channels-{}): {}/{}",
                        s.process + 1,
                        s.received.lock().unwrap().len(),
                        published[s.channel].len() - 1
                    )
                })
                .collect();
            panic!("{phase}: delivery stalled at {now} of {want} messages; short subscribers: {short:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- API calls

/// `per_channel` messages on each channel, published concurrently across
/// channels and in order within one, alternately through each rest process;
/// returns each channel's acknowledged ids.
async fn publish_batch(
    client: &reqwest::Client,
    rest: &[Arc<Server>],
    channels: &[Value],
    per_channel: usize,
    first: usize,
    pace: Duration,
) -> Vec<Vec<String>> {
    let publishers = channels.iter().enumerate().map(|(c, channel)| async move {
        let mut ids = Vec::with_capacity(per_channel);
        for k in first..first + per_channel {
            ids.push(publish(client, &rest[k % rest.len()], channel, &format!("c{c} m{k}"), WAIT).await);
            tokio::time::sleep(pace).await;
        }
        ids
    });
    futures::future::join_all(publishers).await
}

async fn first_grant(client: &reqwest::Client, rest: &Server, channel: &Value) -> String {
    let info: Value = client
        .get(rest.rest_url(&format!("/v1/channels/{}", channel["channel_id"].as_str().unwrap())))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["read_grants"][0]["grant_id"].as_str().expect("the initial grant").to_owned()
}

async fn new_grant(client: &reqwest::Client, rest: &Server, channel: &Value) -> Value {
    let id = channel["channel_id"].as_str().unwrap();
    let response = client
        .post(rest.rest_url(&format!("/v1/channels/{id}/read-grants")))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .json(&json!({ "label": "second reader" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn revoke(client: &reqwest::Client, rest: &Server, channel: &Value, grant: &str) -> reqwest::Response {
    let id = channel["channel_id"].as_str().unwrap();
    client
        .post(rest.rest_url(&format!("/v1/channels/{id}/read-grants/{grant}/revoke")))
        .header("x-publish-token", channel["publish_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
}

async fn revoke_grant_id(client: &reqwest::Client, rest: &Server, channel: &Value, grant: &Value) -> reqwest::Response {
    revoke(client, rest, channel, grant["grant_id"].as_str().unwrap()).await
}

async fn expect_revoked(stream: &mut SseStream, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = stream.next(left).await.unwrap_or_else(|| panic!("{what}: no `revoked` event"));
        if event.event == "message" {
            continue;
        }
        assert_eq!(
            (event.event.as_str(), event.json()),
            ("revoked", json!({ "reason": "revoked" })),
            "{what}: {event:?}"
        );
        assert!(stream.ends_within(WAIT).await, "{what}: the stream ends");
        return;
    }
}

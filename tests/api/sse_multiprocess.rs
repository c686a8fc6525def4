//! Fan-out across real processes (PostgreSQL + S3 only): the built binary
//! runs as one `serve --role rest` and two `serve --role channels` children
//! on one fresh PostgreSQL database and one S3 bucket. A reader on each
//! channels process receives every message published through the rest
//! process exactly once and in order — also what was published while it was
//! disconnected (resumed with Last-Event-ID) and while every PostgreSQL
//! connection was being terminated (the listeners reconnect and catch up by
//! cursor; the channels processes reach PostgreSQL through a gate the test
//! can close, so that a terminated listener stays down while messages are
//! published). Revoking a grant and deleting a channel through the rest
//! process end the streams that another process serves, also when the
//! notification was missed.

use std::time::{Duration, Instant};

use chantra_testkit::{Launcher, Server, bin};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::{FaultProxy, TestDatabase, admin_database_url, s3_env};
use crate::processes::{create_channel, ids, open, publish, stream_path};
use crate::sse_client::{Event, SseStream};

/// The longest any single wait in this test may take.
const WAIT: Duration = Duration::from_secs(20);
/// Messages per phase (three phases).
const PHASE: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_processes_deliver_once_in_order() {
    let started = Instant::now();
    // Ctx drops the database after the cluster (field order): the processes are killed first.
    let database = TestDatabase::create().await;
    let admin = Database::connect(admin_database_url()).await.expect("admin connection");
    let cluster = Cluster::start(&database).await;
    let t = Ctx { client: reqwest::Client::builder().timeout(WAIT).build().unwrap(), cluster, admin, database };
    for channels in [t.ch1(), t.ch2()] {
        wait_listening(&t.client, t.rest(), channels).await;
    }

    let (mut a, mut b, channel) = every_message_once_in_order(&t).await;
    let (mut other, private) = revocation_across_processes(&t).await;
    for (target, streams) in [(&channel, vec![("A", &mut a), ("B", &mut b)]), (&private, vec![("other", &mut other)])] {
        deletion_across_processes(&t, target, streams).await;
    }
    missed_while_cut_off(&t).await;

    t.cluster.print_warnings();
    eprintln!("test ran for {:?}", started.elapsed());
}

/// What every part of the test uses.
struct Ctx {
    client: reqwest::Client,
    cluster: Cluster,
    admin: DatabaseConnection,
    database: TestDatabase,
}

impl Ctx {
    fn rest(&self) -> &Server {
        &self.cluster.processes[0]
    }
    fn ch1(&self) -> &Server {
        &self.cluster.processes[1]
    }
    fn ch2(&self) -> &Server {
        &self.cluster.processes[2]
    }

    async fn publish(&self, channel: &Value, i: usize) -> String {
        publish(&self.client, self.rest(), channel, &format!("message {i}"), WAIT).await
    }

    async fn create_channel(&self, visibility: &str) -> Value {
        create_channel(&self.client, self.rest(), visibility).await
    }

    /// Terminates every other connection to the test database; returns how
    /// many, and how many of them were notification listeners.
    async fn terminate_backends(&self) -> (usize, usize) {
        let rows = self
            .admin
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_terminate_backend(pid) AS terminated, query ILIKE 'LISTEN %' AS listener \
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                [self.database.name.clone().into()],
            ))
            .await
            .expect("pg_terminate_backend");
        let flag = |row: &sea_orm::QueryResult, column| row.try_get::<bool>("", column).unwrap_or(false);
        let terminated: Vec<_> = rows.iter().filter(|row| flag(row, "terminated")).collect();
        (terminated.len(), terminated.iter().filter(|row| flag(row, "listener")).count())
    }

    /// The initial grant of a private channel, from GET /v1/channels/{id}.
    async fn first_grant(&self, channel: &Value) -> String {
        let info: Value = self
            .client
            .get(self.rest().rest_url(&format!("/v1/channels/{}", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        info["read_grants"][0]["grant_id"].as_str().expect("the initial grant").to_owned()
    }

    async fn revoke(&self, channel: &Value, grant: &str) -> reqwest::Response {
        let id = channel["channel_id"].as_str().unwrap();
        self.client
            .post(self.rest().rest_url(&format!("/v1/channels/{id}/read-grants/{grant}/revoke")))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }

    async fn delete(&self, channel: &Value) -> reqwest::Response {
        self.client
            .delete(self.rest().rest_url(&format!("/v1/channels/{}", channel["channel_id"].as_str().unwrap())))
            .header("x-publish-token", channel["publish_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }
}

/// Reader A on channels #1 and reader B on channels #2 follow one public
/// channel through three phases of publishing; each receives exactly the ids
/// the rest API returned, in order. Returns both streams, still open.
async fn every_message_once_in_order(t: &Ctx) -> (SseStream, SseStream, Value) {
    let (ch1, ch2) = (t.ch1(), t.ch2());
    let channel = t.create_channel("public").await;
    let mut a = open(ch1, &channel, &[]).await;
    let mut b = open(ch2, &channel, &[]).await;
    let mut published = Vec::new();
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());

    // Phase 1: both readers connected.
    for i in 0..PHASE {
        published.push(t.publish(&channel, i).await);
    }
    got_a.extend(receive(&mut a, PHASE, "A, phase 1").await);
    got_b.extend(receive(&mut b, PHASE, "B, phase 1").await);

    // Phase 2: A is disconnected, then resumes with Last-Event-ID.
    let last_a = a.last_event_id.clone().expect("A saw an id");
    assert_eq!(last_a, published[PHASE - 1]);
    drop(a);
    for i in PHASE..2 * PHASE {
        published.push(t.publish(&channel, i).await);
    }
    got_b.extend(receive(&mut b, PHASE, "B, phase 2").await);
    let mut a = open(ch1, &channel, &[("last-event-id", &last_a)]).await;
    got_a.extend(receive(&mut a, PHASE, "A, phase 2 (resumed)").await);

    // Phase 3a: every backend of the test database is terminated while the
    // channels processes cannot open new connections (their gate to
    // PostgreSQL is closed); ten messages are published while both
    // listeners are down. Once the gate opens they reconnect and catch up
    // by cursor.
    let cut_before = [ch1, ch2].map(|p| p.log_count("listener cannot connect"));
    t.cluster.pg_gate.refuse_new(true);
    let mut terminated = vec![t.terminate_backends().await];
    for i in 2 * PHASE..2 * PHASE + PHASE / 2 {
        published.push(t.publish(&channel, i).await);
    }
    for (channels, before) in [ch1, ch2].into_iter().zip(cut_before) {
        wait_for_log(channels, "notification listener cannot connect", before + 1).await;
    }
    if let Some(early) = a.next(Duration::from_millis(300)).await {
        panic!("A received {early:?} while its process could not reach PostgreSQL");
    }
    t.cluster.pg_gate.refuse_new(false);
    // Delivered only by the catch-up of reconnected listeners.
    got_a.extend(receive(&mut a, PHASE / 2, "A, phase 3a (caught up)").await);
    got_b.extend(receive(&mut b, PHASE / 2, "B, phase 3a (caught up)").await);

    // Phase 3b: pg_terminate_backend in the middle of publishing, with
    // PostgreSQL reachable: the listeners reconnect at once.
    let reconnected_before = [ch1, ch2].map(|p| p.log_count("listener reconnected"));
    for i in 2 * PHASE + PHASE / 2..3 * PHASE {
        if i == 2 * PHASE + 3 * PHASE / 4 {
            terminated.push(t.terminate_backends().await);
        }
        published.push(t.publish(&channel, i).await);
    }
    got_a.extend(receive(&mut a, PHASE / 2, "A, phase 3b").await);
    got_b.extend(receive(&mut b, PHASE / 2, "B, phase 3b").await);
    for round in &terminated {
        assert_eq!(round.1, 2, "both listeners were terminated (terminated, of them listeners): {terminated:?}");
    }
    for (channels, before) in [ch1, ch2].into_iter().zip(reconnected_before) {
        wait_for_log(channels, "notification listener reconnected", before + 1).await;
    }
    eprintln!("backends terminated in phase 3 (all, of them listeners): {terminated:?}");

    // Nothing more arrives: no duplicate was waiting behind the last message.
    for (name, stream) in [("A", &mut a), ("B", &mut b)] {
        if let Some(extra) = stream.next(Duration::from_millis(1500)).await
            && extra.event == "message"
        {
            panic!("{name} received an extra message after the last one: {extra:?}");
        }
    }
    assert_eq!(published.len(), 3 * PHASE);
    let mut sorted = published.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, published, "the rest API returned distinct ids, growing in publish order");
    for (name, got) in [("A", &got_a), ("B", &got_b)] {
        assert_eq!(ids(got), published, "reader {name} received exactly the published ids, in order");
        for (i, event) in got.iter().enumerate() {
            let data = event.json();
            assert_eq!(data["channel_id"], channel["channel_id"]);
            assert_eq!(data["id"].as_str(), event.id.as_deref());
            assert_eq!(event.text(), format!("message {i}"), "reader {name}, message {i}");
        }
    }
    (a, b, channel)
}

/// Revoking a grant through the rest process ends, within 2 s, the stream
/// channels #2 serves with it, and only that one: a reader with another
/// grant on channels #1 keeps reading. Returns that reader and its channel.
async fn revocation_across_processes(t: &Ctx) -> (SseStream, Value) {
    let (ch1, ch2) = (t.ch1(), t.ch2());
    let private = t.create_channel("private").await;
    let id = private["channel_id"].as_str().unwrap();
    let first_grant = t.first_grant(&private).await;
    let second: Value = t
        .client
        .post(t.rest().rest_url(&format!("/v1/channels/{id}/read-grants")))
        .header("x-publish-token", private["publish_token"].as_str().unwrap())
        .json(&json!({ "label": "other reader" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_token = private["read_token"].as_str().unwrap();
    let mut revoked = open(ch2, &private, &[("x-read-token", first_token)]).await;
    let mut other = open(ch1, &private, &[("x-read-token", second["read_token"].as_str().unwrap())]).await;
    let before = t.publish(&private, 0).await;
    assert_eq!(ids(&receive(&mut revoked, 1, "private reader, before revocation").await), [before.as_str()]);
    assert_eq!(ids(&receive(&mut other, 1, "other private reader").await), [before]);

    let sent = Instant::now();
    let response = t.revoke(&private, &first_grant).await;
    let answered = sent.elapsed();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    let event = next_event(&mut revoked, Duration::from_secs(2), "revoked reader").await;
    let revoked_after = sent.elapsed();
    assert_eq!((event.event.as_str(), event.json()), ("revoked", json!({ "reason": "revoked" })), "{event:?}");
    assert!(revoked.ends_within(Duration::from_secs(2)).await, "the revoked stream ends");
    let ended_after = sent.elapsed();
    eprintln!(
        "revocation across processes: revoke answered after {answered:?}, `event: revoked` after \
         {revoked_after:?}, stream ended after {ended_after:?}"
    );
    assert!(revoked_after < Duration::from_secs(2), "`event: revoked` took {revoked_after:?}");

    // The other grant's reader on the other process keeps reading.
    let after = t.publish(&private, 1).await;
    assert_eq!(ids(&receive(&mut other, 1, "other private reader after revocation").await), [after]);
    let refused = reqwest::Client::new()
        .get(ch1.channels_url(&stream_path(&private)))
        .header("accept", "text/event-stream")
        .header("x-read-token", first_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a revoked token opens no new stream");
    (other, private)
}

/// Deleting a channel through the rest process ends every stream of it on
/// the channels processes with `event: deleted`.
async fn deletion_across_processes(t: &Ctx, channel: &Value, streams: Vec<(&str, &mut SseStream)>) {
    let sent = Instant::now();
    assert_eq!(t.delete(channel).await.status(), 204);
    for (name, stream) in streams {
        let event = next_event(stream, WAIT, name).await;
        assert_eq!(event.event, "deleted", "{name}: {event:?}");
        assert_eq!(event.json(), json!({ "channel_id": channel["channel_id"] }), "{name}");
        assert!(stream.ends_within(WAIT).await, "{name}'s stream ends after `deleted`");
        eprintln!("deletion reached {name} after {:?}", sent.elapsed());
    }
}

/// A revocation and a deletion whose notifications the listeners miss (they
/// were terminated and cannot reconnect yet): once reconnected, they re-check
/// grants and channels.
async fn missed_while_cut_off(t: &Ctx) {
    let (ch1, ch2) = (t.ch1(), t.ch2());
    let private = t.create_channel("private").await;
    let doomed = t.create_channel("public").await;
    let mut revoked = open(ch2, &private, &[("x-read-token", private["read_token"].as_str().unwrap())]).await;
    let mut deleted = open(ch1, &doomed, &[]).await;
    let grant = t.first_grant(&private).await;

    let cut_before = [ch1, ch2].map(|p| p.log_count("listener cannot connect"));
    t.cluster.pg_gate.refuse_new(true);
    assert_eq!(t.terminate_backends().await.1, 2, "both listeners were terminated");
    for (channels, before) in [ch1, ch2].into_iter().zip(cut_before) {
        wait_for_log(channels, "notification listener cannot connect", before + 1).await;
    }
    assert_eq!(t.revoke(&private, &grant).await.status(), 200);
    assert_eq!(t.delete(&doomed).await.status(), 204);
    let up = Instant::now();
    t.cluster.pg_gate.refuse_new(false);

    let event = next_event(&mut revoked, WAIT, "reader revoked while cut off").await;
    assert_eq!((event.event.as_str(), event.json()), ("revoked", json!({ "reason": "revoked" })), "{event:?}");
    assert!(revoked.ends_within(WAIT).await);
    let event = next_event(&mut deleted, WAIT, "reader of a channel deleted while cut off").await;
    assert_eq!(event.event, "deleted", "{event:?}");
    assert!(deleted.ends_within(WAIT).await);
    eprintln!("missed revocation and deletion took effect {:?} after PostgreSQL was reachable again", up.elapsed());
}

// ------------------------------------------------------------------ processes

/// rest, channels #1, channels #2.
struct Cluster {
    processes: Vec<Server>,
    /// Between the channels processes and PostgreSQL (the rest process connects directly).
    pg_gate: FaultProxy,
    /// Logs and data directories; removed after the processes were killed.
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(database: &TestDatabase) -> Self {
        let mut url = url::Url::parse(&database.url).expect("database URL");
        let target = tokio::net::lookup_host((url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(5432)))
            .await
            .expect("PostgreSQL address")
            .next()
            .expect("PostgreSQL address");
        let pg_gate = FaultProxy::start(target).await;
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(pg_gate.addr.port())).unwrap();
        let proxied = url.to_string();
        let mut cluster = Cluster { processes: Vec::new(), pg_gate, dir: tempfile::tempdir().unwrap() };
        // The rest process applies the migrations; the channels processes
        // start only then, and refuse to migrate themselves.
        for (name, role) in [("rest", "rest"), ("channels-1", "channels"), ("channels-2", "channels")] {
            let url = if role == "rest" { &database.url } else { &proxied };
            let launcher = Launcher::new(bin!(), cluster.dir.path()).name(name).roles(role);
            cluster.processes.push(launcher.database(url).s3(&s3_env()).start().await);
        }
        cluster
    }

    /// Warnings, errors and fan-out events of every process (visible with --no-capture).
    fn print_warnings(&self) {
        for process in &self.processes {
            let notable =
                |l: &&str| l.contains("WARN") || l.contains("ERROR") || l.contains("chantra_core::service::listener");
            for line in process.log().lines().filter(notable) {
                eprintln!("[{}] {line}", process.name());
            }
        }
    }
}

/// Waits until a channels process's notification listener delivers: `/readyz`
/// does not say whether it is LISTENing yet. Publishes to a scratch channel
/// until one message arrives live.
async fn wait_listening(client: &reqwest::Client, rest: &Server, channels: &Server) {
    let channel = create_channel(client, rest, "public").await;
    let mut stream = open(channels, &channel, &[]).await;
    let deadline = Instant::now() + WAIT;
    let mut attempt = 0;
    while Instant::now() < deadline {
        publish(client, rest, &channel, &format!("message {attempt}"), WAIT).await;
        if let Some(event) = stream.messages(1, Duration::from_millis(500)).await.pop() {
            if attempt > 0 {
                eprintln!("{}: {attempt} warm-up message(s) published before its listener delivered", channels.name());
            }
            assert!(event.id.is_some());
            return;
        }
        attempt += 1;
    }
    panic!("{} never delivered a live message", channels.name());
}

/// Waits until `needle` appears `count` times in a process's log.
async fn wait_for_log(process: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        if process.log_count(needle) >= count {
            return;
        }
        if Instant::now() > deadline {
            panic!("{} never logged {needle:?} {count} time(s)", process.name());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------------ API calls

/// Exactly `count` messages, each within `WAIT` of the previous one.
async fn receive(stream: &mut SseStream, count: usize, what: &str) -> Vec<Event> {
    let got = stream.messages(count, WAIT).await;
    assert_eq!(got.len(), count, "{what}: only {} of {count} messages arrived: {:#?}", got.len(), ids(&got));
    got
}

async fn next_event(stream: &mut SseStream, wait: Duration, what: &str) -> Event {
    stream.next(wait).await.unwrap_or_else(|| panic!("{what}: no event within {wait:?}"))
}

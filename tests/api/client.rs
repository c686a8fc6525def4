//! The built `chantra` binary as a client (`channel`, `grant`, `pub`, `sub`)
//! against a real server started by the launcher: a round trip on the
//! embedded default, `--exec` order, the exit codes, and — on PostgreSQL +
//! S3 with separate rest and channels processes — a `sub` that follows a
//! channel across a `kill -9` and restart of the channels process without
//! losing or repeating any of the messages published meanwhile and after.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chantra_testkit::{Launcher, Server, bin, free_port, signal};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::helpers::{TestDatabase, s3_env};
use crate::processes::stream_path;

/// The longest any single wait may take (debug build, busy machine).
const WAIT: Duration = Duration::from_secs(30);

/// The client binary with a clean environment pointing at `rest`'s API.
fn client(dir: &Path, rest: &Server) -> Command {
    let mut cmd = Launcher::bare(bin!(), dir).command();
    cmd.env("CHANTRA_URL", rest.rest_url(""));
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("the chantra binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, text(&out.stderr));
    text(&out.stdout)
}

/// `chantra channel create --json [--private]`.
fn create(dir: &Path, rest: &Server, private: bool) -> Value {
    let mut cmd = client(dir, rest);
    cmd.args(["channel", "create", "--json"]);
    if private {
        cmd.arg("--private");
    }
    serde_json::from_str(&ok(&mut cmd)).expect("create prints JSON")
}

/// `chantra pub` with the channel's token; the published message's id.
fn publish(dir: &Path, rest: &Server, channel: &Value, args: &[&str]) -> String {
    let mut cmd = client(dir, rest);
    cmd.env("CHANTRA_PUBLISH_TOKEN", channel["publish_token"].as_str().unwrap());
    cmd.args(["pub", "--json", channel["channel_id"].as_str().unwrap()]).args(args);
    let out: Value = serde_json::from_str(&ok(&mut cmd)).expect("pub --json prints JSON");
    out["message_id"].as_str().unwrap().to_owned()
}

/// The channel URL on the channels role of `channels` (the configured base URL is not reachable).
fn stream_url(channels: &Server, channel: &Value) -> String {
    channels.channels_url(&stream_path(channel))
}

/// A running `chantra sub`, its stdout read line by line, its stderr in a file.
struct Sub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: std::path::PathBuf,
}

impl Sub {
    fn start(mut cmd: Command, dir: &Path, name: &str) -> Self {
        let stderr = dir.join(format!("{name}.stderr"));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap());
        let mut child = tokio::process::Command::from(cmd).kill_on_drop(true).spawn().expect("sub starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines, stderr }
    }

    /// The next line of stdout, within WAIT.
    async fn line(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!("sub printed no line ({other:?}); stderr:\n{}", self.stderr()),
        }
    }

    /// The next `count` lines, parsed as JSON.
    async fn json(&mut self, count: usize) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..count {
            let line = self.line().await;
            out.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
        }
        out
    }

    fn stderr(&self) -> String {
        text(&std::fs::read(&self.stderr).unwrap_or_default())
    }

    fn signal(&self, name: &str) {
        signal(self.child.id().expect("running"), name);
    }

    /// Waits for the exit; its code.
    async fn exit(&mut self) -> i32 {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("sub exits in time").unwrap();
        status.code().unwrap_or_else(|| panic!("sub was killed: {status}"))
    }
}

/// The payload bytes of a `sub --json` message line, whatever its encoding
/// (a server without `encoding` sends base64).
fn payload(line: &Value) -> Vec<u8> {
    assert_eq!(line["event"], "message", "{line}");
    match line["encoding"].as_str().unwrap() {
        "json" => line["payload"].to_string().into_bytes(),
        "text" => line["payload"].as_str().unwrap().as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD.decode(line["payload"].as_str().unwrap()).unwrap(),
        other => panic!("unknown encoding {other}"),
    }
}

/// Embedded default: create, publish (text, stdin, file), read back with
/// `sub` in JSON and text form; a private channel read with a grant, whose
/// revocation ends `sub` with exit 3; deletion ends another with exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_pub_sub_round_trip_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path()).roles("rest,channels").start().await;
    let d = dir.path();

    let channel = create(d, &server, false);
    let first = publish(d, &server, &channel, &["hello, world"]);
    let mut from_stdin = client(d, &server);
    from_stdin.env("CHANTRA_PUBLISH_TOKEN", channel["publish_token"].as_str().unwrap());
    from_stdin.args(["pub", channel["url"].as_str().unwrap(), "-", "--ttl", "600"]).stdin(Stdio::piped());
    let mut child = from_stdin.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"line one\nline two").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("published "), "human output: {}", text(&out.stdout));
    let blob = d.join("blob.bin");
    std::fs::write(&blob, [0u8, 1, 2, 255]).unwrap();
    publish(d, &server, &channel, &[&format!("@{}", blob.display())]);

    let url = stream_url(&server, &channel);
    let mut cmd = client(d, &server);
    cmd.args(["sub", &url, "--since", "all", "--json"]);
    let mut sub = Sub::start(cmd, d, "sub-json");
    let lines = sub.json(3).await;
    assert_eq!(lines[0]["id"], first.as_str());
    assert_eq!(lines[0]["content_type"], "text/plain; charset=utf-8");
    let payloads: Vec<Vec<u8>> = lines.iter().map(payload).collect();
    assert_eq!(payloads, [b"hello, world".to_vec(), b"line one\nline two".to_vec(), vec![0, 1, 2, 255]]);
    assert_eq!(lines[2]["content_type"], "application/octet-stream");
    // Live: published after the replay, delivered on the same stream.
    let live = publish(d, &server, &channel, &["live one"]);
    let line = &sub.json(1).await[0];
    assert_eq!((line["id"].as_str().unwrap(), payload(line)), (live.as_str(), b"live one".to_vec()));
    sub.signal("INT");
    assert_eq!(sub.exit().await, 0, "Ctrl-C is a clean exit: {}", sub.stderr());
    assert!(sub.stderr().contains(&format!("resume with --last-event-id {live}")), "{}", sub.stderr());

    // Text form, resumed after the first message: text as lines.
    let mut cmd = client(d, &server);
    cmd.args(["sub", &url, "--last-event-id", &first]);
    let mut sub = Sub::start(cmd, d, "sub-text");
    assert_eq!([sub.line().await, sub.line().await], ["line one", "line two"]);
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);

    // `channel get` by URL and `--json`, the server and token from a config file only.
    let config = d.join("client.toml");
    let toml = format!(
        "# test\nurl = \"{}\"\npublish_token = '{}'\n",
        server.rest_url(""),
        channel["publish_token"].as_str().unwrap()
    );
    std::fs::write(&config, toml).unwrap();
    let mut get = Launcher::bare(bin!(), d).command();
    get.env("CHANTRA_CONFIG", &config);
    let info: Value = serde_json::from_str(&ok(get.args(["channel", "get", &url, "--json"]))).unwrap();
    assert_eq!((info["channel_id"].clone(), info["live_messages"].as_u64()), (channel["channel_id"].clone(), Some(4)));
    // A flag overrides the file: a wrong token from the command line is refused (exit 3).
    let mut get = Launcher::bare(bin!(), d).command();
    get.env("CHANTRA_CONFIG", &config).args(["channel", "get", &url, "--token", "chp_nope"]);
    assert_eq!(run(&mut get).status.code(), Some(3));

    // Private: a grant's token reads; revoking it ends `sub` with exit 3.
    let private = create(d, &server, true);
    let token = private["publish_token"].as_str().unwrap();
    let id = private["channel_id"].as_str().unwrap();
    let mut grant = client(d, &server);
    grant.args(["grant", "create", id, "--label", "cli test", "--json", "--token", token]);
    let grant: Value = serde_json::from_str(&ok(&mut grant)).unwrap();
    let mut cmd = client(d, &server);
    cmd.env("CHANTRA_READ_TOKEN", grant["read_token"].as_str().unwrap());
    cmd.args(["sub", &stream_url(&server, &private), "--since", "all"]);
    let mut reader = Sub::start(cmd, d, "sub-private");
    publish(d, &server, &private, &["secret"]);
    assert_eq!(reader.line().await, "secret");
    ok(client(d, &server).args(["grant", "revoke", id, grant["grant_id"].as_str().unwrap(), "--token", token]));
    assert_eq!(reader.exit().await, 3, "{}", reader.stderr());
    assert!(reader.stderr().contains("read grant"), "{}", reader.stderr());

    // Deleting the channel ends its readers with exit 4.
    let mut cmd = client(d, &server);
    cmd.args(["sub", &url, "--since", "all", "--json"]);
    let mut reader = Sub::start(cmd, d, "sub-deleted");
    reader.json(4).await;
    let mut delete = client(d, &server);
    delete.env("CHANTRA_PUBLISH_TOKEN", channel["publish_token"].as_str().unwrap());
    assert!(ok(delete.args(["channel", "delete", channel["channel_id"].as_str().unwrap()])).contains("deleted"));
    let last = &reader.json(1).await[0];
    assert_eq!(last["event"], "deleted");
    assert_eq!(reader.exit().await, 4, "{}", reader.stderr());
    assert!(reader.stderr().contains("deleted"), "{}", reader.stderr());
}

/// `--exec` runs one command per message, in publish order, never two at
/// once, with the payload on stdin and the metadata in the environment; a
/// failing command stops `sub` with exit 6 and says where to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_each_message_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path()).roles("rest,channels").start().await;
    let d = dir.path();
    let channel = create(d, &server, false);
    let ids: Vec<String> = (0..15).map(|i| publish(d, &server, &channel, &[&format!("m{i}")])).collect();

    let log = d.join("exec.log");
    // Each run logs its start and end around a pause: overlapping runs would interleave.
    let script = format!(
        "echo \"start $CHANTRA_MESSAGE_ID $(cat) $CHANTRA_CONTENT_TYPE\" >> {log}; sleep 0.02; \
         echo \"end $CHANTRA_MESSAGE_ID $CHANTRA_CHANNEL_ID\" >> {log}",
        log = log.display()
    );
    let mut cmd = client(d, &server);
    cmd.args(["sub", &stream_url(&server, &channel), "--since", "all", "--exec", &script]);
    let mut sub = Sub::start(cmd, d, "sub-exec");
    let deadline = Instant::now() + WAIT;
    let expected: Vec<String> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, id)| {
            [
                format!("start {id} m{i} text/plain; charset=utf-8"),
                format!("end {id} {}", channel["channel_id"].as_str().unwrap()),
            ]
        })
        .collect();
    loop {
        let lines: Vec<String> = text(&std::fs::read(&log).unwrap_or_default()).lines().map(str::to_owned).collect();
        if lines.len() >= expected.len() {
            assert_eq!(lines, expected);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} lines: {lines:#?}\n{}",
            lines.len(),
            expected.len(),
            sub.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);

    // A failing command: exit 6, naming the message and the cursor before it.
    let mut cmd = client(d, &server);
    cmd.args([
        "sub",
        &stream_url(&server, &channel),
        "--last-event-id",
        &ids[4],
        "--exec",
        "read x; test \"$x\" != m7",
    ]);
    let mut sub = Sub::start(cmd, d, "sub-exec-fail");
    assert_eq!(sub.exit().await, 6, "{}", sub.stderr());
    let stderr = sub.stderr();
    assert!(stderr.contains(&format!("on message {}", ids[7])), "{stderr}");
    assert!(stderr.contains(&format!("--last-event-id {}", ids[6])), "{stderr}");
}

/// One line on stderr and the documented exit code for each kind of failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_name_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launcher::new(bin!(), dir.path()).roles("rest,channels").start().await;
    let d = dir.path();
    let channel = create(d, &server, false);
    let id = channel["channel_id"].as_str().unwrap();
    let code = |cmd: &mut Command| {
        let out = run(cmd);
        let stderr = text(&out.stderr);
        (out.status.code().unwrap(), stderr)
    };

    // 2: usage (clap), a missing token, a malformed channel.
    assert_eq!(code(client(d, &server).args(["pub"])).0, 2);
    let (status, stderr) = code(client(d, &server).args(["pub", id, "x"]));
    assert_eq!(status, 2);
    assert_eq!(stderr.trim(), "error: no publish token: pass --token chp_… or set CHANTRA_PUBLISH_TOKEN");
    assert_eq!(code(client(d, &server).args(["sub", "not-a-channel"])).0, 2);
    // 3: a wrong token.
    let (status, stderr) = code(client(d, &server).args(["pub", id, "x", "--token", "chp_wrong"]));
    assert_eq!(status, 3, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    // 4: an unknown channel (publish, get) and an unknown channel's stream.
    let unknown = "0193a0e8-0000-7000-8000-000000000001";
    let token = channel["publish_token"].as_str().unwrap();
    let (status, stderr) = code(client(d, &server).args(["channel", "get", unknown, "--token", token]));
    assert_eq!(status, 4, "{stderr}");
    let unknown_url = server.channels_url(&format!("/v1/public/{unknown}"));
    let (status, stderr) = code(client(d, &server).args(["sub", &unknown_url]));
    assert_eq!(status, 4, "{stderr}");
    // 5: nobody listening.
    let (status, stderr) = code(client(d, &server).args([
        "pub",
        id,
        "x",
        "--token",
        token,
        "--url",
        &format!("http://127.0.0.1:{}", free_port()),
    ]));
    assert_eq!(status, 5, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");

    // `sub` is a follower: an unreachable server is retried, not an exit.
    let port = free_port();
    let mut cmd = client(d, &server);
    cmd.args(["sub", &format!("http://127.0.0.1:{port}/v1/public/{id}"), "--max-backoff", "1"]);
    let mut sub = Sub::start(cmd, d, "sub-unreachable");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sub.child.try_wait().unwrap().is_none(), "sub gave up: {}", sub.stderr());
    assert!(sub.stderr().contains("reconnecting in"), "{}", sub.stderr());
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);

    // --help lists the client commands and the exit codes.
    let help = ok(client(d, &server).arg("--help"));
    for word in ["channel", "grant", "pub", "sub", "Exit codes", "CHANTRA_URL"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

/// A server that stops sending (frozen with SIGSTOP: the connection stays
/// open, keep-alives stop) is noticed after `--idle-timeout`; reconnection
/// attempts that get no answer are abandoned the same way; once the server
/// runs again, `sub` resumes after the last message it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_notices_a_silent_server_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Launcher::new(bin!(), d).roles("rest,channels").env("SSE_KEEPALIVE_SECS", "1").start().await;
    let channel = create(d, &server, false);
    let first = publish(d, &server, &channel, &["before"]);
    let mut cmd = client(d, &server);
    cmd.args(["sub", &stream_url(&server, &channel), "--since", "all", "--json", "--idle-timeout", "2"]);
    cmd.args(["--max-backoff", "1"]);
    let mut sub = Sub::start(cmd, d, "sub-silent");
    assert_eq!(sub.json(1).await[0]["id"], first.as_str());

    signal(server.pid(), "STOP");
    let deadline = Instant::now() + WAIT;
    while !(sub.stderr().contains("nothing received for 2 s") && sub.stderr().contains("no answer within 2 s")) {
        if Instant::now() > deadline {
            signal(server.pid(), "CONT");
            panic!("sub did not notice the silence: {}", sub.stderr());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(server.pid(), "CONT");
    let second = publish(d, &server, &channel, &["after"]);
    let line = &sub.json(1).await[0];
    assert_eq!((line["id"].as_str().unwrap(), payload(line)), (second.as_str(), b"after".to_vec()), "{}", sub.stderr());
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);
}

/// A 429 when connecting is retried no sooner than its `Retry-After` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_waits_at_least_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let limited = [("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "1")];
    let server = Launcher::new(bin!(), d).roles("rest,channels").envs(limited).start().await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // after the launcher's /readyz probes
    let channel = create(d, &server, false);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the rest role's bucket refills
    let first = publish(d, &server, &channel, &["hello"]);
    // Empty the channels role's bucket, then follow.
    let url = stream_url(&server, &channel);
    let http = reqwest::Client::new();
    let mut limited_seen = false;
    for _ in 0..3 {
        let status = http.get(server.channels_url("/v1/public/0193a0e8-0000-7000-8000-000000000001")).send().await;
        limited_seen |= status.unwrap().status() == 429;
    }
    assert!(limited_seen, "the channels role never answered 429");
    let mut cmd = client(d, &server);
    cmd.args(["sub", &url, "--since", "all", "--json"]);
    let mut sub = Sub::start(cmd, d, "sub-429");
    assert_eq!(sub.json(1).await[0]["id"], first.as_str(), "{}", sub.stderr());
    let stderr = sub.stderr();
    let line = stderr.lines().find(|l| l.contains(" 429 ")).unwrap_or_else(|| panic!("no 429 reported: {stderr}"));
    let number = |after: &str| -> f64 {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{after:?} not in {line}")) + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(number("reconnecting in ") >= number("retry after "), "{line}");
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);
}

/// PostgreSQL + S3, rest and channels as separate processes: a `sub`
/// following the channel keeps its place while the channels process is
/// killed with SIGKILL and started again, and prints every message
/// published during the outage and after exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_resumes_across_a_kill_9_without_loss_or_duplicates() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let launch = |name: &str, role: &str| {
        Launcher::new(bin!(), d)
            .name(name)
            .roles(role)
            .database(&database.url)
            .s3(&s3_env())
            // A short reconnection hint, so the test does not wait 3 s per attempt.
            .env("SSE_RETRY_MS", "200")
    };
    let rest = launch("rest", "rest").start().await;
    let mut channels = launch("channels", "channels").start().await;

    let channel = create(d, &rest, false);
    let mut cmd = client(d, &rest);
    cmd.args(["sub", &stream_url(&channels, &channel), "--json", "--max-backoff", "1"]);
    let mut sub = Sub::start(cmd, d, "sub-kill9");
    // Live from the start (no --since): publish until the first message shows the stream is open.
    let mut expected = Vec::new();
    let warm_up: Value = loop {
        publish(d, &rest, &channel, &["warm-up"]);
        match tokio::time::timeout(Duration::from_millis(500), sub.lines.next_line()).await {
            Ok(Ok(Some(line))) => break serde_json::from_str(&line).unwrap(),
            Ok(other) => panic!("sub ended: {other:?}\n{}", sub.stderr()),
            Err(_) => continue, // not connected yet
        }
    };
    // Only the warm-up messages published once it listened can arrive; the first one shown is one of them.
    assert_eq!(payload(&warm_up), b"warm-up");

    // A second reader that has seen no message yet: it resumes from the moment its stream opened.
    let mut cmd = client(d, &rest);
    cmd.args(["sub", &stream_url(&channels, &channel), "--json", "--max-backoff", "1"]);
    let mut fresh = Sub::start(cmd, d, "sub-kill9-fresh");
    let deadline = Instant::now() + WAIT;
    while !fresh.stderr().contains("connected to") {
        assert!(Instant::now() < deadline, "the second sub never connected: {}", fresh.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    channels.kill();
    for i in 0..50 {
        expected.push((publish(d, &rest, &channel, &[&format!("during {i}")]), format!("during {i}")));
    }
    channels.restart().await;
    for i in 0..50 {
        expected.push((publish(d, &rest, &channel, &[&format!("after {i}")]), format!("after {i}")));
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let line = &sub.json(1).await[0];
        if payload(line) == b"warm-up" && got.is_empty() {
            continue; // a later warm-up message, published before it connected
        }
        got.push((line["id"].as_str().unwrap().to_owned(), text(&payload(line))));
    }
    assert_eq!(got, expected, "every message once, in order");
    // Its resume point is the second its stream opened (the server's Date):
    // warm-up messages of that second, published just before, may come first.
    let mut fresh_got = Vec::new();
    while fresh_got.len() < expected.len() {
        let line = &fresh.json(1).await[0];
        if payload(line) == b"warm-up" && fresh_got.is_empty() {
            continue;
        }
        fresh_got.push((line["id"].as_str().unwrap().to_owned(), text(&payload(line))));
    }
    assert_eq!(fresh_got, expected, "the reader that had no message yet: every message once, in order");
    sub.signal("TERM");
    assert_eq!(sub.exit().await, 0);
    // Nothing more was printed (no duplicate after the last one).
    let rest_of_output = tokio::time::timeout(Duration::from_secs(5), sub.lines.next_line()).await;
    assert!(matches!(rest_of_output, Ok(Ok(None))), "{rest_of_output:?}");
    assert!(sub.stderr().contains("reconnecting in"), "{}", sub.stderr());
    fresh.signal("TERM");
    assert_eq!(fresh.exit().await, 0);
    let rest_of_output = tokio::time::timeout(Duration::from_secs(5), fresh.lines.next_line()).await;
    assert!(matches!(rest_of_output, Ok(Ok(None))), "{rest_of_output:?}");
    drop(channels);
    drop(rest);
}

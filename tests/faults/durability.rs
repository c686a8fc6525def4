//! Every 201 is on stable storage (SQLite + filesystem payloads): the real
//! binary runs under `strace -f`, publishes go through it (one at a time,
//! then many at once, so that group commit batches them), and the recorded
//! system calls must show, for every acknowledged message and before the
//! first byte of its 201 leaves the socket:
//!
//! - with payload files (PAYLOAD_INLINE_MAX_BYTES=0): its payload written
//!   to a temporary file that was fsynced, then renamed to its final name
//!   (a torn file never carries the final name); its channel directory
//!   fsynced after that rename (the name survives); a new channel
//!   directory's parent fsynced after the mkdir;
//! - with small payloads kept in the database (the default): its payload
//!   written to the SQLite WAL;
//! - the SQLite WAL fsynced (or fdatasynced) after the write that holds its
//!   row (and its payload).
//!
//! A power loss keeps exactly what was synced, so a message that passes
//! these checks survives one. PostgreSQL (synchronous_commit on) and S3 (the
//! server acknowledges the PUT) are durable on the server side.
//!
//! Needs strace (scripts/setup-test-tools.sh installs it with apt-get when missing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chantra_testkit::{Launcher, TestDatabase, bin, signal};
use serde_json::Value;

use crate::common::{api_client, create_channel};

const STRACE: &str = "strace";
/// Messages published one at a time, then all at once (half to each of two channels).
const SEQUENTIAL: usize = 6;
const CONCURRENT: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_sqlite_files_every_201_follows_its_fsyncs() {
    every_201_follows_its_fsyncs(Payloads::Files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_sqlite_inline_every_201_follows_its_wal_sync() {
    every_201_follows_its_fsyncs(Payloads::InDatabase).await;
}

/// Where the server keeps the (small) payloads of the test.
#[derive(Clone, Copy, PartialEq)]
enum Payloads {
    Files,
    InDatabase,
}

async fn every_201_follows_its_fsyncs(payloads: Payloads) {
    let version = Command::new(STRACE).arg("-V").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "strace is missing: `bash scripts/setup-test-tools.sh` installs it (apt-get install strace)"
    );
    let dir = tempfile::Builder::new().prefix("chantra-durability").tempdir().expect("temp dir");
    let data = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let log_path = data.join("strace.log");
    let syscalls =
        "trace=openat,write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat";
    let mut strace = Launcher::new(bin!(), &data)
        .roles("rest")
        .database(&TestDatabase::sqlite(&data).url)
        .env("DATA_DIR", &data)
        .env("PAYLOAD_INLINE_MAX_BYTES", if payloads == Payloads::Files { "0" } else { "4096" })
        .wrapped_in(STRACE, ["-f", "-x", "-yy", "-s", "65536", "-o", &log_path.display().to_string(), "-e", syscalls])
        .start()
        .await;

    let rest = strace.rest_url("");
    let client = api_client(Duration::from_secs(30));
    let channels = [create_channel(&client, &rest, "public").await, create_channel(&client, &rest, "public").await];
    let mut published = Vec::new();
    for i in 0..SEQUENTIAL {
        published.push(publish(&client, &rest, &channels[0], format!("one at a time {i:03}")).await);
    }
    let burst = (0..CONCURRENT).map(|i| publish(&client, &rest, &channels[i % 2], format!("burst {i:03}")));
    published.extend(futures::future::join_all(burst).await);

    // The traced process is strace's child: its pid opens the log (execve).
    let log = std::fs::read_to_string(&log_path).expect("strace log");
    let pid: u32 = log.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a pid in the strace log");
    signal(pid, "TERM");
    let stopped = strace.wait_exit(Duration::from_secs(30)).await;
    assert!(stopped.is_some(), "the traced server did not stop");
    let log = std::fs::read_to_string(&log_path).expect("strace log");
    let trace = Trace::parse(&log);
    eprintln!("{} system calls recorded for {} publishes", trace.events.len(), published.len());

    // Where each message's payload went (its object key is not its id).
    let keys = object_keys(&data).await;
    // DATA_DIR/payloads is the filesystem store's root.
    let root = data.join("payloads");
    let mut first_201: HashMap<String, usize> = HashMap::new();
    for (channel, message, text) in &published {
        let acked = trace.response_with(message).unwrap_or_else(|| panic!("no 201 carrying {message} in the trace"));
        let at = first_201.entry(channel.clone()).or_insert(acked);
        *at = (*at).min(acked);
        let (key, inline) = keys.get(message).unwrap_or_else(|| panic!("{message} has no row"));
        assert_eq!(*inline, payloads == Payloads::InDatabase, "{message}: where its payload is kept");
        match payloads {
            Payloads::Files => check_payload_file(&trace, &root.join(key), message, acked),
            Payloads::InDatabase => {
                check_wal_write(&trace, message, "its payload", acked, |s| contains(s, text.as_bytes()))
            }
        }
        // Its row: the id as a UUID's bytes or its text, whichever the driver writes.
        let id = message.parse::<uuid::Uuid>().expect("message id is a uuid");
        check_wal_write(&trace, message, "its row", acked, |s| {
            contains(s, id.as_bytes()) || contains(s, message.as_bytes())
        });
    }
    if payloads == Payloads::Files {
        for (channel, acked) in &first_201 {
            check_new_directory(&trace, &root.join("channels"), channel, *acked);
        }
    }
}

/// Publishes `text` and returns (channel id, message id, text) of the 201.
async fn publish(client: &reqwest::Client, rest: &str, channel: &Value, text: String) -> (String, String, String) {
    let id = channel["channel_id"].as_str().expect("channel id");
    let response = client
        .post(format!("{rest}/v1/channels/{id}/publish"))
        .header("x-publish-token", channel["publish_token"].as_str().expect("token"))
        .header("content-type", "text/plain")
        .body(text.clone())
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 201, "publish");
    let body: Value = response.json().await.expect("json body");
    (id.to_owned(), body["message_id"].as_str().expect("message_id").to_owned(), text)
}

/// Message id -> (payload object key, kept in the database), read from the
/// (stopped) server's database.
async fn object_keys(data: &Path) -> HashMap<String, (String, bool)> {
    use chantra_core::db::entity::message;
    use sea_orm::EntityTrait as _;
    let db = sea_orm::Database::connect(format!("sqlite://{}/chantra.db?mode=ro", data.display()))
        .await
        .expect("open the server's database");
    let rows = message::Entity::find().all(&db).await.expect("read messages");
    rows.into_iter().map(|row| (row.id.to_string(), (row.payload_object_key, row.payload_inline))).collect()
}

/// The payload file and its name were synced before the 201 at `acked` began.
fn check_payload_file(trace: &Trace, final_path: &Path, message: &str, acked: usize) {
    let directory = final_path.parent().expect("a key has a directory").to_path_buf();
    let final_path = final_path.to_path_buf();
    let rename = trace
        .events
        .iter()
        .find(|e| e.is_rename() && e.strings.get(1).is_some_and(|to| Path::new(&lossy(to)) == final_path))
        .unwrap_or_else(|| {
            panic!("{message}: its payload was never renamed into place (written under its final name?)")
        });
    assert!(rename.end < acked, "{message}: the 201 was sent before the payload was renamed into place");
    let temporary = PathBuf::from(lossy(&rename.strings[0]));
    assert!(
        trace.synced(&temporary, 0, rename.start),
        "{message}: the temporary file {} was not fsynced before its rename",
        temporary.display()
    );
    assert!(
        trace.synced(&directory, rename.end, acked),
        "{message}: the channel directory was not fsynced between the rename and the 201"
    );
}

/// `what` of `message` (its row, or its payload kept in the database: a
/// write whose bytes `matches`) was written to the SQLite WAL, and the WAL
/// fsynced after that, before the 201 at `acked` began.
fn check_wal_write(trace: &Trace, message: &str, what: &str, acked: usize, matches: impl Fn(&[u8]) -> bool) {
    let written = trace
        .events
        .iter()
        .find(|e| e.name == "pwrite64" && e.fd_path.ends_with("chantra.db-wal") && e.strings.iter().any(|s| matches(s)))
        .unwrap_or_else(|| panic!("{message}: no write of {what} to the SQLite WAL was recorded"));
    assert!(written.start < acked, "{message}: the 201 was sent before {what} was written");
    let wal = PathBuf::from(&written.fd_path);
    assert!(
        trace.synced(&wal, written.start, acked),
        "{message}: the SQLite WAL was not fsynced between writing {what} and the 201"
    );
}

/// A channel directory made by a publish is named durably in its parent
/// before that channel's first 201.
fn check_new_directory(trace: &Trace, parent: &Path, channel: &str, acked: usize) {
    let directory = parent.join(channel);
    let Some(made) = trace.events.iter().find(|e| {
        (e.name == "mkdir" || e.name == "mkdirat")
            && e.strings.first().is_some_and(|p| Path::new(&lossy(p)) == directory)
            && e.result.trim_start().starts_with('0')
    }) else {
        panic!("channel {channel}: the mkdir of its directory was not recorded");
    };
    assert!(
        trace.synced(parent, made.end, acked),
        "channel {channel}: {} was not fsynced between creating the channel's directory and its first 201",
        parent.display()
    );
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One recorded system call: where it began and ended in the log (strace
/// writes a call split by other threads as `<unfinished ...>` + `resumed`).
#[derive(Debug)]
struct Event {
    name: String,
    start: usize,
    end: usize,
    /// The path or socket behind the first argument, when it is a descriptor (`-yy`).
    fd_path: String,
    /// Every quoted string argument, unescaped.
    strings: Vec<Vec<u8>>,
    /// What follows ` = `.
    result: String,
}

impl Event {
    fn is_rename(&self) -> bool {
        matches!(self.name.as_str(), "rename" | "renameat" | "renameat2") && self.result.trim_start().starts_with('0')
    }
}

struct Trace {
    events: Vec<Event>,
}

impl Trace {
    fn parse(log: &str) -> Self {
        let mut events = Vec::new();
        let mut unfinished: HashMap<(String, String), (usize, String)> = HashMap::new();
        for (index, line) in log.lines().enumerate() {
            let Some((pid, rest)) = line.split_once(' ') else { continue };
            let rest = rest.trim_start();
            if let Some(resumed) = rest.strip_prefix("<... ") {
                let Some((name, tail)) = resumed.split_once(" resumed>") else { continue };
                let Some((start, head)) = unfinished.remove(&(pid.to_owned(), name.to_owned())) else { continue };
                events.push(Event::new(name, start, index, &head, tail));
            } else if let Some((name, _)) = rest.split_once('(') {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                match rest.strip_suffix(" <unfinished ...>") {
                    Some(head) => {
                        unfinished.insert((pid.to_owned(), name.to_owned()), (index, head.to_owned()));
                    }
                    None => events.push(Event::new(name, index, index, rest, "")),
                }
            }
        }
        Self { events }
    }

    /// Whether an fsync or fdatasync of `path` finished after `after` and before `before`.
    fn synced(&self, path: &Path, after: usize, before: usize) -> bool {
        self.events.iter().any(|e| {
            (e.name == "fsync" || e.name == "fdatasync")
                && e.end > after
                && e.end < before
                && Path::new(&e.fd_path) == path
                && e.result.trim_start().starts_with('0')
        })
    }

    /// Where the 201 whose body names `message` began on its socket.
    fn response_with(&self, message: &str) -> Option<usize> {
        let sends = |e: &&Event| matches!(e.name.as_str(), "write" | "writev" | "sendto" | "sendmsg");
        let sent: Vec<&Event> = self.events.iter().filter(sends).filter(|e| e.fd_path.starts_with("TCP")).collect();
        for (i, head) in sent.iter().enumerate() {
            let text = head.strings.concat();
            if !text.starts_with(b"HTTP/1.1 201") {
                continue;
            }
            // The body may follow in later writes on the same socket, up to the next response.
            let mut whole = text;
            for next in &sent[i + 1..] {
                if next.fd_path != head.fd_path {
                    continue;
                }
                let more = next.strings.concat();
                if more.starts_with(b"HTTP/") {
                    break;
                }
                whole.extend(more);
            }
            if contains(&whole, message.as_bytes()) {
                return Some(head.start);
            }
        }
        None
    }
}

impl Event {
    /// `head` is `name(args…` (up to the end of the line, or to where strace
    /// cut it); `tail` the rest of a resumed call.
    fn new(name: &str, start: usize, end: usize, head: &str, tail: &str) -> Self {
        let whole = format!("{head}{tail}");
        let args = whole.split_once('(').map_or("", |(_, a)| a);
        let (strings, consumed) = quoted_strings(args);
        let result = whole[whole.len() - args.len() + consumed..]
            .rsplit_once(" = ")
            .map(|(_, r)| r.to_owned())
            .unwrap_or_default();
        Self { name: name.to_owned(), start, end, fd_path: fd_path(args), strings, result }
    }
}

/// `13</some/path>` or `13<TCP:[a->b]>` at the start of the arguments.
fn fd_path(args: &str) -> String {
    let digits = args.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !args[digits..].starts_with('<') {
        return String::new();
    }
    let inner = &args[digits + 1..];
    let bytes = inner.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'>' && matches!(bytes.get(i + 1), None | Some(b',') | Some(b')') | Some(b' ')) {
            return inner[..i].to_owned();
        }
    }
    String::new()
}

/// Every `"…"` in `args`, with strace's escapes undone; and how far the last one ended.
fn quoted_strings(args: &str) -> (Vec<Vec<u8>>, usize) {
    let bytes = args.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut end = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut s = Vec::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] != b'\\' || i + 1 >= bytes.len() {
                s.push(bytes[i]);
                i += 1;
                continue;
            }
            i += 1;
            match bytes[i] {
                b'x' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())]).unwrap_or("");
                    s.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 3;
                }
                b'0'..=b'7' => {
                    let digits = bytes[i..].iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
                    let octal = std::str::from_utf8(&bytes[i..i + digits]).unwrap_or("0");
                    s.push(u8::from_str_radix(octal, 8).unwrap_or(0));
                    i += digits;
                }
                other => {
                    s.push(match other {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'f' => 0x0c,
                        b'v' => 0x0b,
                        c => c,
                    });
                    i += 1;
                }
            }
        }
        i += 1;
        end = i.min(bytes.len());
        out.push(s);
    }
    (out, end)
}

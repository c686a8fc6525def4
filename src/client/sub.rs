//! `chantra sub`: follow a channel and never lose a message.
//!
//! The cursor is the id of the last message fully handled (printed, or its
//! `--exec` command finished with success). Every reconnection sends it as
//! `Last-Event-ID`, so the server replays exactly what came after it — across
//! a dropped connection, a server restart or a failover. Before the first
//! message the cursor is the moment the stream opened (a UUIDv7 made from the
//! server's `Date` header, floored to its second): a connection lost before
//! any message still resumes from there, so nothing published in between is
//! lost. A message whose id is not after the cursor is skipped: no duplicate,
//! whatever a server replays.
//!
//! Reconnections back off exponentially with full jitter: the n-th
//! consecutive failure waits a uniform time in [0, min(cap, base × 2^n)],
//! base being the server's `retry:` hint (1 s until one is read, 250 ms at
//! least); a `Retry-After` (429, 503) is a floor. A stream that delivered a
//! message or lived 10 s resets the count. `gap` events are reported and the
//! stream goes on; `revoked` and `deleted` end the command (exit 3 and 4),
//! as do 401/403/404 answers. Everything else — refused connections, 5xx,
//! 429, a silent connection past `--idle-timeout` — is retried forever:
//! `sub` is a follower.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Response, Url};
use tokio_util::sync::CancellationToken;

use super::http::{call, client, error_from, failure_of, network_error, redact, retry_after, stream_client};
use super::message::{Message, tagged};
use super::settings::Settings;
use super::sse::{Event, Item, Parser};
use super::{ClientError, Failure, SubArgs, write_stdout};

/// The largest event accepted: a 1 MiB payload is ≈ 1.4 MiB of base64 in its frame; room for larger limits.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Reconnection base before the server sent `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The smallest base of the backoff, whatever `retry:` says (0 would reconnect in a tight loop).
const MIN_BASE: Duration = Duration::from_millis(250);
/// A stream that lived this long counts as healthy: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

pub async fn run(args: SubArgs) -> Result<(), ClientError> {
    let settings = Settings::resolve(&args.conn)?;
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    let cursor = args
        .last_event_id
        .as_deref()
        .map(|id| {
            uuid::Uuid::parse_str(id)
                .map(|id| id.to_string())
                .map_err(|_| ClientError::usage(format!("--last-event-id `{id}` is not a message id (a UUID)")))
        })
        .transpose()?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut follower = Follower {
        client: stream_client()?,
        url: Url::parse("http://unset").expect("a constant URL"),
        read_token: settings.read_token.clone(),
        cursor,
        since,
        retry_hint: DEFAULT_RETRY,
        failures: 0,
        floor: None,
        output: if let Some(cmd) = args.exec.clone() {
            Output::Exec(cmd)
        } else if settings.json {
            Output::Json
        } else {
            Output::Text
        },
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        max_backoff: Duration::from_secs(args.max_backoff.max(1)),
        stop,
    };
    follower.url = match follower.stream_url(&settings, &args.channel).await? {
        Some(url) => url,
        None => return Ok(()),
    };
    let result = follower.follow().await;
    if let Some(id) = &follower.cursor
        && result.as_ref().is_ok_and(|end| *end == End::Stopped)
    {
        eprintln!("chantra: stopped; resume with --last-event-id {id}");
    }
    result.map(|_| ())
}

/// How a follow ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// SIGINT / SIGTERM.
    Stopped,
    /// Standard output was closed (`| head`): nothing more can be shown.
    OutputClosed,
}

/// What became of one stream.
enum StreamEnd {
    End(End),
    /// Connection lost or closed by the server: reconnect.
    Lost(String),
}

/// What a failed connection attempt means.
enum Attempt {
    Retry(String),
    Fatal(ClientError),
}

enum Output {
    Text,
    Json,
    Exec(String),
}

struct Follower {
    client: reqwest::Client,
    url: Url,
    read_token: Option<String>,
    /// The last message handled (or the moment the first stream opened).
    cursor: Option<String>,
    /// `?since=` (unix seconds), until the first message sets the cursor.
    since: Option<i64>,
    retry_hint: Duration,
    /// Consecutive failed attempts.
    failures: u32,
    /// A Retry-After from the last answer: the next wait is at least this.
    floor: Option<Duration>,
    output: Output,
    idle_timeout: Option<Duration>,
    max_backoff: Duration,
    stop: CancellationToken,
}

impl Follower {
    /// The stream URL: CHANNEL itself, or (for an id) the `url` of GET /v1/channels/{id}.
    /// None when stopped while waiting for the server.
    async fn stream_url(&mut self, settings: &Settings, channel: &str) -> Result<Option<Url>, ClientError> {
        if channel.starts_with("http://") || channel.starts_with("https://") {
            let url = Url::parse(channel).map_err(|err| ClientError::usage(format!("`{channel}`: {err}")))?;
            return Ok(Some(url));
        }
        let id = uuid::Uuid::parse_str(channel).map_err(|_| {
            ClientError::usage(format!("`{channel}` is not a channel URL (http://…/v1/public/<id>) or id"))
        })?;
        let Some(token) = settings.publish_token.clone() else {
            return Err(ClientError::usage(
                "give the channel URL (from `chantra channel create`); an id needs --token or CHANTRA_PUBLISH_TOKEN to look the URL up",
            ));
        };
        let lookup = client()?;
        loop {
            let request = lookup.get(format!("{}/v1/channels/{id}", settings.url)).header("x-publish-token", &token);
            match call(request, "looking up the channel URL").await {
                Ok(info) => {
                    let url = info.get("url").and_then(|u| u.as_str()).unwrap_or_default();
                    return Url::parse(url)
                        .map(Some)
                        .map_err(|_| ClientError::other(format!("the server gave no usable channel URL: `{url}`")));
                }
                Err(err) if err.failure == Failure::Unavailable => {
                    if !self.wait(&err.message).await {
                        return Ok(None);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn follow(&mut self) -> Result<End, ClientError> {
        loop {
            if self.stop.is_cancelled() {
                return Ok(End::Stopped);
            }
            let stop = self.stop.clone();
            let attempt = tokio::select! {
                _ = stop.cancelled() => return Ok(End::Stopped),
                attempt = self.connect() => attempt,
            };
            let why = match attempt {
                Ok(response) => {
                    // On stderr, so a person (or a test) knows the stream is open.
                    let after = self.cursor.as_deref().map(|c| format!(" (after {c})")).unwrap_or_default();
                    eprintln!("chantra: connected to {}{after}", redact(&self.url));
                    if self.cursor.is_none() && self.since.is_none() {
                        self.cursor = Some(opened_at(&response));
                    }
                    let opened = Instant::now();
                    let (end, delivered) = self.read(response).await?;
                    match end {
                        StreamEnd::End(end) => return Ok(end),
                        StreamEnd::Lost(why) => {
                            if delivered > 0 || opened.elapsed() >= HEALTHY_AFTER {
                                self.failures = 0;
                            }
                            why
                        }
                    }
                }
                Err(Attempt::Retry(why)) => why,
                Err(Attempt::Fatal(err)) => return Err(err),
            };
            if !self.wait(&why).await {
                return Ok(End::Stopped);
            }
        }
    }

    /// Says why, sleeps the backoff; false when stopped meanwhile.
    async fn wait(&mut self, why: &str) -> bool {
        let delay = backoff(self.failures, self.retry_hint, self.max_backoff, self.floor.take());
        self.failures = self.failures.saturating_add(1);
        eprintln!("chantra: {why}; reconnecting in {:.1} s", delay.as_secs_f64());
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    async fn connect(&mut self) -> Result<Response, Attempt> {
        let mut request = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(token) = &self.read_token
            && self.url.path().contains("/private/")
        {
            request = request.header("x-read-token", token);
        }
        if let Some(cursor) = &self.cursor {
            request = request.header("last-event-id", cursor);
        } else if let Some(since) = self.since {
            request = request.query(&[("since", since)]);
        }
        // A server that accepts but never answers (frozen, or a dead path) must not hold us forever.
        let response = match within(self.idle_timeout, request.send()).await {
            Some(Ok(response)) => response,
            Some(Err(err)) => return Err(Attempt::Retry(network_error("reading the channel", &err).message)),
            None => {
                let secs = self.idle_timeout.unwrap_or_default().as_secs();
                return Err(Attempt::Retry(format!("reading the channel: no answer within {secs} s")));
            }
        };
        let status = response.status();
        if status.is_success() {
            let is_stream = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if !is_stream {
                return Err(Attempt::Fatal(ClientError::usage(format!(
                    "{} is not an event stream: give the channel URL (…/v1/public/<id> or …/v1/private/<id>)",
                    redact(&self.url)
                ))));
            }
            return Ok(response);
        }
        self.floor = retry_after(&response);
        let failure = failure_of(status);
        let mut err = error_from(response, "reading the channel").await;
        if failure == Failure::Unavailable {
            return Err(Attempt::Retry(err.message));
        }
        if failure == Failure::Auth
            && self.read_token.is_none()
            && self.url.query().is_none_or(|q| !q.contains("token="))
        {
            err.message.push_str(" (a private channel needs --read-token or CHANTRA_READ_TOKEN)");
        }
        Err(Attempt::Fatal(err))
    }

    /// Reads one stream to its end; returns how it ended and how many messages it delivered.
    async fn read(&mut self, mut response: Response) -> Result<(StreamEnd, usize), ClientError> {
        let mut parser = Parser::new(MAX_EVENT_BYTES);
        let mut delivered = 0;
        loop {
            let chunk = tokio::select! {
                _ = self.stop.cancelled() => return Ok((StreamEnd::End(End::Stopped), delivered)),
                chunk = within(self.idle_timeout, response.chunk()) => chunk,
            };
            let bytes = match chunk {
                None => {
                    let secs = self.idle_timeout.unwrap_or_default().as_secs();
                    return Ok((StreamEnd::Lost(format!("nothing received for {secs} s")), delivered));
                }
                Some(Ok(Some(bytes))) => bytes,
                Some(Ok(None)) => return Ok((StreamEnd::Lost("the server ended the stream".into()), delivered)),
                Some(Err(err)) => {
                    return Ok((StreamEnd::Lost(network_error("the stream broke", &err).message), delivered));
                }
            };
            let items = parser.feed(&bytes).map_err(|too| {
                ClientError::other(format!(
                    "an event after message {} is larger than {} bytes",
                    self.cursor.as_deref().unwrap_or("-"),
                    too.limit
                ))
            })?;
            for item in items {
                match item {
                    Item::Retry(millis) => self.retry_hint = Duration::from_millis(millis),
                    Item::Event(event) => {
                        if let Some(end) = self.handle(event).await? {
                            return Ok((StreamEnd::End(end), delivered));
                        }
                        delivered += 1;
                    }
                }
            }
            if self.stop.is_cancelled() {
                return Ok((StreamEnd::End(End::Stopped), delivered));
            }
        }
    }

    /// One event: a message is shown (or run) and becomes the cursor; the
    /// control events are reported. Some(end) when following must stop.
    async fn handle(&mut self, event: Event) -> Result<Option<End>, ClientError> {
        match event.event.as_str() {
            "message" => self.message(&event).await,
            "gap" => {
                let gap: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                let text = |key: &str| gap.get(key).and_then(|v| v.as_str()).unwrap_or("none").to_owned();
                eprintln!(
                    "chantra: gap: messages after {} are gone (expired, or more than the server replays); \
                     continuing from {}",
                    text("requested_after"),
                    text("oldest_available_id")
                );
                Ok(self.json_line("gap", &event.data))
            }
            "deleted" => {
                self.json_line("deleted", &event.data);
                Err(ClientError::new(Failure::NotFound, "the channel was deleted"))
            }
            "revoked" => {
                let reason: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                let reason = reason.get("reason").and_then(|v| v.as_str()).unwrap_or("revoked").to_owned();
                self.json_line("revoked", &event.data);
                Err(ClientError::new(Failure::Auth, format!("the read grant ended ({reason})")))
            }
            _ => Ok(None), // an event this version does not know: skip it
        }
    }

    /// With --json, a control event is a line on stdout too (`{"event":NAME,…data}`).
    fn json_line(&self, name: &str, data: &str) -> Option<End> {
        if !matches!(self.output, Output::Json) {
            return None;
        }
        write_stdout(tagged(name, data, false).as_bytes()).err().map(|_| End::OutputClosed)
    }

    async fn message(&mut self, event: &Event) -> Result<Option<End>, ClientError> {
        let message: Message = serde_json::from_str(&event.data)
            .map_err(|err| ClientError::other(format!("a message event this client cannot read: {err}")))?;
        // The message's own id (the SSE id field carries the same; a frame without one would inherit the last).
        let id = message.id.clone();
        if self.cursor.as_deref().is_some_and(|cursor| id.as_str() <= cursor) {
            return Ok(None); // already handled: a replay overlapping what we saw
        }
        let payload = message.bytes()?;
        let end = match &self.output {
            Output::Json => write_stdout(tagged("message", &event.data, message.encoding.is_none()).as_bytes()).err(),
            Output::Text => {
                let mut out = payload;
                if message.is_text(&out) && out.last() != Some(&b'\n') {
                    out.push(b'\n');
                }
                write_stdout(&out).err()
            }
            Output::Exec(cmd) => {
                let cmd = cmd.clone();
                if !self.exec(&cmd, &message, &id, payload).await? {
                    return Ok(Some(End::Stopped));
                }
                None
            }
        };
        if end.is_some() {
            return Ok(Some(End::OutputClosed));
        }
        self.cursor = Some(id);
        self.since = None;
        Ok(None)
    }

    /// Runs `--exec` for one message and waits for it. Ok(false): stopped by
    /// a signal meanwhile (the message stays unhandled).
    async fn exec(&self, cmd: &str, message: &Message<'_>, id: &str, payload: Vec<u8>) -> Result<bool, ClientError> {
        use tokio::io::AsyncWriteExt as _;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::piped())
            .env("CHANTRA_MESSAGE_ID", id)
            .env("CHANTRA_CHANNEL_ID", &message.channel_id)
            .env("CHANTRA_CONTENT_TYPE", &message.content_type)
            .env("CHANTRA_CREATED_AT", message.created_at.as_deref().unwrap_or_default())
            .env("CHANTRA_EXPIRES_AT", message.expires_at.as_deref().unwrap_or_default())
            .spawn()
            .map_err(|err| ClientError::new(Failure::ExecFailed, format!("cannot run `{cmd}`: {err}")))?;
        // Written beside the wait: a command that does not read its input must not block us.
        let writer = child.stdin.take().map(|mut stdin| {
            tokio::spawn(async move {
                let _ = stdin.write_all(&payload).await;
            })
        });
        let status = child.wait().await;
        if let Some(writer) = writer {
            writer.abort();
        }
        let status = status.map_err(|err| ClientError::new(Failure::ExecFailed, format!("`{cmd}`: {err}")))?;
        if status.success() {
            return Ok(true);
        }
        // Ctrl-C reaches the command too (same process group): that is a stop, not a failure.
        if std::os::unix::process::ExitStatusExt::signal(&status).is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if self.stop.is_cancelled() {
            return Ok(false);
        }
        let resume = match &self.cursor {
            Some(cursor) => format!("; resume with --last-event-id {cursor}"),
            None => String::new(),
        };
        Err(ClientError::new(Failure::ExecFailed, format!("`{cmd}` failed ({status}) on message {id}{resume}")))
    }
}

/// A future bounded by an optional timeout; None when it ran out.
async fn within<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// The wait before attempt n+1 (full jitter over an exponential ceiling), at least `floor`.
fn backoff(failures: u32, hint: Duration, cap: Duration, floor: Option<Duration>) -> Duration {
    let base = hint.max(MIN_BASE);
    let ceiling = base.saturating_mul(1u32 << failures.min(20)).min(cap);
    let jittered = Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64));
    jittered.max(floor.unwrap_or_default())
}

/// The cursor of a stream opened without one: the smallest UUIDv7 of the
/// second the server says it is (its `Date`), so a reconnection before the
/// first message resumes from there (at worst a message of that same second
/// published just before the stream opened is shown too; none is lost).
fn opened_at(response: &Response) -> String {
    let now = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(|| SystemTime::now() - Duration::from_secs(1));
    let millis = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    uuid_v7_floor(millis)
}

/// The smallest UUIDv7 of a millisecond: version and variant bits, the rest zero.
fn uuid_v7_floor(millis: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// `--since`: unix seconds, RFC 3339, a duration ago (30s, 10m, 2h, 1d) or `all`.
fn parse_since(text: &str) -> Result<i64, ClientError> {
    let text = text.trim();
    if text == "all" {
        return Ok(0);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp());
    }
    let unit_at = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(unit_at);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if scale > 0 && n >= 0 => Ok(chrono::Utc::now().timestamp() - n * scale),
        _ => Err(ClientError::usage(format!(
            "--since `{text}`: expected unix seconds, RFC 3339, a duration (30s, 10m, 2h, 1d) or `all`"
        ))),
    }
}

/// Sets `stop` at the first SIGINT or SIGTERM.
async fn watch_signals(stop: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_respects_retry_after() {
        let hint = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        for failures in 0..40 {
            let ceiling = (hint * 2u32.pow(failures.min(20))).min(cap);
            for _ in 0..20 {
                assert!(backoff(failures, hint, cap, None) <= ceiling);
            }
        }
        // Full jitter: some waits are short, even after many failures.
        assert!((0..200).any(|_| backoff(10, hint, cap, None) < Duration::from_secs(10)));
        assert!(backoff(0, hint, cap, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        // retry: 0 does not become a tight loop: the base is at least MIN_BASE.
        assert!((0..200).any(|_| backoff(3, Duration::ZERO, cap, None) > Duration::from_millis(250)));
    }

    #[test]
    fn the_opening_cursor_is_the_first_uuid_of_its_millisecond() {
        let id = uuid_v7_floor(0x0193_a0e8_0000);
        assert_eq!(id, "0193a0e8-0000-7000-8000-000000000000");
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
        // Any message of that millisecond or later sorts after it.
        assert!("0193a0e8-0000-7000-8000-000000000001" > id.as_str());
    }

    #[test]
    fn since_accepts_every_documented_form() {
        assert_eq!(parse_since("all").unwrap(), 0);
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_since("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        let ago = chrono::Utc::now().timestamp() - parse_since("10m").unwrap();
        assert!((599..=601).contains(&ago), "{ago}");
        assert_eq!(parse_since("soon").unwrap_err().exit_code(), 2);
    }
}

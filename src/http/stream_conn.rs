//! A lean HTTP/1.1 path for event streams, beside hyper.
//!
//! hyper gives every connection an 8 KiB read buffer and an 8 KiB write
//! buffer for its whole life (`INIT_BUFFER_SIZE`, not configurable). An
//! event stream reads one request head and then only writes, yet those
//! buffers were most of what an idle stream cost: 19.2 KiB of server RSS per
//! stream with them, 8.4 KiB with both cut to 512 bytes in a patched hyper
//! (5,000 idle streams, docs/BENCHMARKS.md).
//!
//! So on the channels role the accept loop reads the first request head
//! itself, into a small buffer that is freed once parsed. A plain `GET` of an
//! event-stream route over HTTP/1.1 with nothing after its head is answered
//! here: the router (with all its middleware) produces the response, and the
//! stream's frames — handed over as [`LeanFrames`] instead of a body, so no
//! layer's body wrapper runs per frame — are written straight to the socket,
//! chunked, frame by frame; the connection closes when the response ends.
//! Everything else — other paths and methods, HTTP/1.0, request bodies,
//! pipelined requests, a head hyper would refuse (too large, too many
//! headers, malformed) — goes to hyper together with the bytes already read
//! ([`Prefixed`]), and hyper answers it exactly as it would have.
//!
//! The limits of the hyper path hold here too: the head must arrive within
//! the header read timeout and fit [`MAX_HEAD_BYTES`] / [`MAX_HEADERS`], a
//! write that makes no progress for the write timeout closes the
//! connection, and a client that hangs up ends its stream at once (its
//! socket is watched for end-of-file while the body waits for events).
//! An event stream also has a minimum read rate ([`MinReadRate`]): a frame
//! not taken within max(write timeout, its size / rate) closes it, so a
//! reader trickling a few bytes at a time cannot hold a frame for ever.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, Uri, Version, header};
use bytes::{BufMut as _, Bytes};
use futures::{Stream, StreamExt as _};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use super::channels::is_stream_path;
use super::serve::{ConnectionLimits, MAX_HEAD_BYTES, MAX_HEADERS};

/// The slowest a reader may take a response's frames, in bytes per second:
/// set by the event-stream handler as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinReadRate(pub u64);

/// Marks a request that came by the lean path: its event-stream handler
/// hands the frames over as [`LeanFrames`] instead of a response body.
#[derive(Debug, Clone, Copy)]
pub struct LeanConnection;

/// A stream's frames, as a response extension for the lean path (the body
/// is then empty). Written straight from the stream, they skip what the
/// router's layers wrap around a body — tracing's span entered and the
/// clock read twice per poll, axum's boxing and error mapping — and the
/// request's span closes with the response head instead of living, with
/// its registry entry, as long as the stream. (Behind a lock because an
/// extension must be `Clone + Sync`; the lean path takes the frames once.)
#[derive(Clone)]
pub struct LeanFrames(Arc<Mutex<Option<FrameStream>>>);

/// The frames of one stream, in order.
pub type FrameStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

impl LeanFrames {
    pub fn new(frames: FrameStream) -> Self {
        Self(Arc::new(Mutex::new(Some(frames))))
    }

    fn take(&self) -> Option<FrameStream> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}

/// What reading the first request head of a connection gave.
pub enum FirstRequest {
    /// An event-stream request, answered by [`answer`].
    EventStream(Box<Request<Body>>),
    /// Anything else: hyper serves the connection, starting with these bytes.
    Hyper(Bytes),
    /// The client went away, or sent no complete head in time: close.
    Close,
}

/// The most bytes read before a connection is sorted: a head over
/// [`MAX_HEAD_BYTES`] is known to be one after a byte more.
const HEAD_READ_LIMIT: usize = MAX_HEAD_BYTES + 1;

/// Reads the first request head (within the header read timeout) and sorts it.
pub async fn read_first_request(stream: &mut TcpStream, limits: &ConnectionLimits) -> FirstRequest {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            // One byte past the limit is enough to know the head is too
            // large (hyper answers 431), so never more is read or held.
            let room = HEAD_READ_LIMIT - buf.len();
            if room == 0 {
                return Some(());
            }
            // Into the buffer's spare room, no chunk on the stack (where it
            // would count in every stream's task); it doubles when full, but
            // never past the limit, and a read never crosses it.
            if buf.len() == buf.capacity() {
                buf.reserve_exact(buf.capacity().clamp(1, room));
            }
            match stream.read_buf(&mut (&mut buf).limit(room)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Request::new(&mut headers).parse(&buf) {
                Ok(httparse::Status::Partial) => continue,
                // Complete, or an error hyper will answer (400, 431).
                _ => return Some(()),
            }
        }
    };
    match tokio::time::timeout(limits.header_read_timeout, read).await {
        Ok(Some(())) => match event_stream_request(&buf) {
            Some(request) => FirstRequest::EventStream(Box::new(request)),
            None => FirstRequest::Hyper(Bytes::from(buf)),
        },
        Ok(None) | Err(_) => FirstRequest::Close,
    }
}

/// The request, when `head` is exactly one complete head of a `GET` of an
/// event-stream route (`channels::is_stream_path`) over HTTP/1.1 without a
/// body: the request hyper would have given the router for these bytes (same
/// method, URI, version and headers, in order; `tests/props/lean_path.rs`
/// checks it against a real hyper server). `None` for anything else, and for
/// anything whose handling by hyper this path does not repeat — a request
/// body, `Upgrade`, a repeated `Content-Length` (hyper keeps only the first),
/// a header or URI hyper would refuse: hyper then serves the connection.
pub fn event_stream_request(head: &[u8]) -> Option<Request<Body>> {
    // Even a complete head one byte over the limit: hyper refuses it (431).
    if head.len() > MAX_HEAD_BYTES {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(head).ok()? else { return None };
    if len != head.len() || parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    // Routed on the URI as hyper parses it (the path without query or
    // fragment); only origin-form targets (`/…`), as clients send them.
    let target = parsed.path?;
    let uri: Uri = target.parse().ok()?;
    if !target.starts_with('/') || !is_stream_path(uri.path()) {
        return None;
    }
    let mut request = Request::builder().method("GET").uri(uri).version(Version::HTTP_11);
    let mut content_length = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            // One `Content-Length: 0` is no body; hyper drops repeats, so none here.
            if content_length || h.value != b"0" {
                return None;
            }
            content_length = true;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") || h.name.eq_ignore_ascii_case("upgrade") {
            return None;
        }
        request = request.header(h.name, h.value);
    }
    request.body(Body::empty()).ok()
}

/// Answers an event-stream request on its own connection, then closes it.
pub async fn answer(
    mut stream: TcpStream,
    mut request: Request<Body>,
    remote: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
) {
    request.extensions_mut().insert(ConnectInfo(remote));
    request.extensions_mut().insert(LeanConnection);
    // Boxed: the router's future (every middleware's state) is large and lives
    // only until the response head; unboxed it would be part of this
    // connection's task for as long as the stream runs.
    let response = match Box::pin(app.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Err(err) = write_response(&mut stream, response, limits.write_timeout).await {
        // A client that hung up or stopped reading: its doing, like hyper's connection errors.
        tracing::debug!(%remote, error = %err, "event stream connection ended with an error");
    }
    let _ = stream.shutdown().await;
}

/// Where a response's frames come from: the stream handed over as
/// [`LeanFrames`], or the body.
enum Source {
    Lean(FrameStream),
    Body(Body),
}

impl Source {
    /// The next non-empty frame; `None` at the end.
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let data = match self {
                Source::Lean(frames) => frames.next().await?,
                Source::Body(body) => match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                    Err(err) => return Some(Err(io::Error::other(err))),
                },
            };
            if !data.is_empty() {
                return Some(Ok(data));
            }
        }
    }
}

async fn write_response(stream: &mut TcpStream, response: Response<Body>, write_timeout: Duration) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let min_rate = parts.extensions.get::<MinReadRate>().map(|rate| rate.0);
    // A body of known size (an error answer) goes with Content-Length, a stream chunked.
    let (mut source, length) = match parts.extensions.get::<LeanFrames>().and_then(LeanFrames::take) {
        Some(lean) => {
            // The empty body goes now: the request's span (and its layers' state) with it.
            drop(body);
            (Source::Lean(lean), None)
        }
        None => {
            let length = HttpBody::size_hint(&body).exact();
            (Source::Body(body), length)
        }
    };
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION, header::DATE].contains(name) {
            continue;
        }
        push_header(&mut head, name.as_str(), value);
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(date.as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\n");
    match length {
        Some(n) => head.extend_from_slice(format!("content-length: {n}\r\n\r\n").as_bytes()),
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n"),
    }
    write_all(stream, &mut [IoSlice::new(&head)], write_timeout, None).await?;
    drop(head);

    loop {
        // Wait for the next frame, and meanwhile notice a client that hangs
        // up. Frame first: a reader woken for a frame takes it without
        // polling its socket's read side too.
        let frame = tokio::select! {
            biased;
            frame = source.next() => frame,
            gone = client_gone(stream) => match gone {
                true => return Ok(()),
                false => continue,
            },
        };
        let Some(data) = frame.transpose()? else { break };
        let allowance = min_rate.map(|rate| frame_allowance(data.len(), write_timeout, rate));
        if length.is_some() {
            write_all(stream, &mut [IoSlice::new(&data)], write_timeout, allowance).await?;
        } else {
            // One chunk per frame, in one write; the frame is the shared, encoded-once `Bytes`.
            let (size, size_len) = chunk_size_line(data.len());
            let mut chunk = [IoSlice::new(&size[..size_len]), IoSlice::new(&data), IoSlice::new(b"\r\n")];
            write_all(stream, &mut chunk, write_timeout, allowance).await?;
        }
        // The frame is dropped here, before the next is asked for: a
        // replay's memory permit is released only then.
    }
    if length.is_none() {
        write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")], write_timeout, None).await?;
    }
    Ok(())
}

/// `{len:x}\r\n` on the stack (no allocation per frame and reader).
fn chunk_size_line(len: usize) -> ([u8; 18], usize) {
    use std::io::Write as _;
    let mut line = [0u8; 18];
    let left = {
        let mut rest = &mut line[..];
        write!(rest, "{len:x}\r\n").expect("16 hex digits and CRLF fit in 18 bytes");
        rest.len()
    };
    (line, line.len() - left)
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Resolves when the socket is readable: `true` when the client closed it
/// (or it failed), `false` when it only sent something (ignored: one request
/// per connection here).
async fn client_gone(stream: &TcpStream) -> bool {
    // poll_read_ready keeps one waker in the socket's registration;
    // `readable()` would add and remove a waiter node for every frame sent.
    if std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await.is_err() {
        return true;
    }
    let mut discard = [0u8; 64];
    match stream.try_read(&mut discard) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// How long a frame of `len` bytes may take to be written: the write
/// timeout, or longer for a frame that takes longer at `rate` bytes/s.
fn frame_allowance(len: usize, write_timeout: Duration, rate: u64) -> Duration {
    write_timeout.max(Duration::from_secs_f64(len as f64 / rate.max(1) as f64))
}

/// Writes every slice, or fails when a write makes no progress for
/// `timeout`, or when the whole write takes longer than `allowance` (the
/// minimum read rate; counted from the first time the socket is full, so a
/// write that never waits reads no clock).
async fn write_all(
    stream: &mut TcpStream,
    mut bufs: &mut [IoSlice<'_>],
    timeout: Duration,
    allowance: Option<Duration>,
) -> io::Result<()> {
    let mut deadline = None;
    while !bufs.is_empty() {
        // Usually the socket has room: write at once, with no future and no
        // timer; only a full socket buffer waits, and at most `timeout`.
        let written = match stream.try_write_vectored(bufs) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let now = tokio::time::Instant::now();
                let deadline = *deadline.get_or_insert_with(|| allowance.map(|allowance| now + allowance));
                let left = deadline.map(|at: tokio::time::Instant| at.saturating_duration_since(now));
                let wait = left.map_or(timeout, |left| left.min(timeout));
                match tokio::time::timeout(wait, stream.write_vectored(bufs)).await {
                    Ok(written) => written?,
                    Err(_) if left.is_some_and(|left| left <= timeout) => {
                        crate::metrics::get().slow_reader_disconnects.increment(1);
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "reader below the minimum read rate"));
                    }
                    Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
                }
            }
            other => other?,
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, written);
    }
    Ok(())
}

/// A connection whose first bytes were already read: hyper reads them again
/// from here, then from the socket.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_event_stream_gets_take_the_lean_path() {
        let ok = b"GET /v1/public/x?token=t HTTP/1.1\r\nhost: a\r\nlast-event-id: 1\r\n\r\n";
        let request = event_stream_request(ok).expect("lean path");
        assert_eq!(request.uri(), "/v1/public/x?token=t");
        assert_eq!(request.headers()["last-event-id"], "1");
        assert!(event_stream_request(b"GET /v1/public/x HTTP/1.1\r\ncontent-length: 0\r\n\r\n").is_some());
        for hyper in [
            &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
            b"POST /v1/public/x HTTP/1.1\r\n\r\n",
            b"GET /v1/public/x HTTP/1.0\r\n\r\n",
            b"GET /v1/public/x HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc",
            b"GET /v1/public/x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /v1/public/x HTTP/1.1\r\n\r\nGET /v1/public/y HTTP/1.1\r\n\r\n",
            b"GET /v1/public/x HTTP/1.1\r\nbad header\r\n\r\n",
            b"GET /v1/public/x HTTP/1.1\r\nhost: a\r\n",
        ] {
            assert!(event_stream_request(hyper).is_none(), "{}", String::from_utf8_lossy(hyper));
        }
    }

    #[test]
    fn a_frame_may_take_the_write_timeout_or_its_size_at_the_minimum_rate() {
        let timeout = Duration::from_secs(2);
        assert_eq!(frame_allowance(100, timeout, 16 * 1024), timeout);
        assert_eq!(frame_allowance(1 << 20, timeout, 16 * 1024), Duration::from_secs(64));
        assert_eq!(frame_allowance(10, timeout, 0), Duration::from_secs(10));
    }

    #[test]
    fn chunk_size_lines_are_lower_case_hex() {
        for len in [0, 1, 9, 10, 15, 16, 255, 256, 4096, 1 << 20, 0xdead_beef, usize::MAX] {
            let (line, n) = chunk_size_line(len);
            assert_eq!(std::str::from_utf8(&line[..n]).unwrap(), format!("{len:x}\r\n"));
        }
    }

    /// What `read_first_request` makes of `sent`, written in one go by a client.
    async fn first_request_of(sent: Vec<u8>) -> FirstRequest {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            // The server stops reading at the limit: the rest of a large head may never be taken.
            let _ = client.write_all(&sent).await;
            client
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            lean_streams: true,
        };
        let first = read_first_request(&mut stream, &limits).await;
        drop(stream);
        drop(client.await.unwrap());
        first
    }

    fn stream_head(len: usize) -> Vec<u8> {
        let mut head = b"GET /v1/public/x HTTP/1.1\r\nx-pad: ".to_vec();
        head.resize(len - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        head
    }

    #[tokio::test]
    async fn the_head_limit_is_exact_and_bounds_the_read() {
        match first_request_of(stream_head(MAX_HEAD_BYTES)).await {
            FirstRequest::EventStream(_) => {}
            _ => panic!("a head of exactly MAX_HEAD_BYTES takes the lean path"),
        }
        // One byte over, or far over: hyper gets what was read (and answers 431),
        // and no more than one byte past the limit was read or held.
        for len in [MAX_HEAD_BYTES + 1, MAX_HEAD_BYTES + 1000, 64 * 1024] {
            match first_request_of(stream_head(len)).await {
                FirstRequest::Hyper(read) => {
                    assert_eq!(read.len(), MAX_HEAD_BYTES + 1, "{len}-byte head");
                }
                _ => panic!("a {len}-byte head goes to hyper"),
            }
        }
    }

    #[tokio::test]
    async fn prefixed_reads_its_prefix_first() {
        let mut io = Prefixed::new(Bytes::from_static(b"abc"), &b"def"[..]);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "abcdef");
    }
}

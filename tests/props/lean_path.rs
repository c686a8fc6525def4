//! The fence around the lean event-stream path (`http::stream_conn`): it must
//! be invisible. Arbitrary request heads — valid and malformed: methods,
//! targets (absolute-form, percent-encoded, with query and fragment), odd
//! whitespace, bare LF, header folding, duplicate and invalid headers,
//! HTTP/1.0 and 1.1, bodies on GET, pipelined requests, heads over the size
//! limit, non-UTF-8 bytes — are sent to two real servers on loopback, both
//! `http::serve::serve` with a router that records what its handler sees:
//! one with the lean path, one with hyper alone (LEAN_STREAMS=false).
//!
//! - Whatever the lean path takes (`event_stream_request` is `Some`), hyper
//!   alone hands the handler the same method, URI, version and headers, and
//!   the lean server did answer it itself.
//! - Whatever it does not take reaches hyper unchanged (the bytes it read are
//!   replayed): the handler sees the same request on both servers, and the
//!   answers (hyper's 400s and 431s included) are the same bytes.
//! - `channels::is_stream_path` accepts exactly the paths axum's router
//!   routes to the stream routes, as both are built from one route table.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{StatusCode, Version};
use axum::routing::any as any_method;
use chantra::http::channels::{is_stream_path, stream_router};
use chantra::http::serve::{ConnectionLimits, MAX_HEAD_BYTES, serve};
use chantra::http::stream_conn::event_stream_request;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt as _;

use crate::cases;

/// What a handler sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    uri: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn of<B>(request: &axum::http::Request<B>) -> Self {
        Seen {
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            version: request.version(),
            headers: request.headers().iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
        }
    }
}

/// Requests seen by one server's handler, with the client's address.
type Log = &'static Mutex<Vec<(SocketAddr, Seen)>>;

/// Records the request as sent: a route nested under a mount sees the URI
/// without the mount, so the URI recorded is the original one.
async fn record(
    State(log): State<Log>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    request: Request,
) -> &'static str {
    let seen = Seen { uri: uri.to_string(), ..Seen::of(&request) };
    log.lock().unwrap().push((peer, seen));
    "ok"
}

struct Servers {
    runtime: tokio::runtime::Runtime,
    /// (address, log) of the server with the lean path, then of hyper alone.
    lean: (SocketAddr, Log),
    hyper: (SocketAddr, Log),
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let start = |lean_streams: bool| {
            let log: Log = Box::leak(Box::default());
            // The stream routes as the channels role declares them, and every other path.
            let app = stream_router(|_| any_method(record)).fallback(record).with_state(log);
            let limits = ConnectionLimits {
                // Short: a partial head costs this much per case.
                header_read_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(5),
                lean_streams,
            };
            let addr = runtime.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                // Never cancelled: the servers live as long as the test binary.
                let stopping = tokio_util::sync::CancellationToken::new();
                tokio::spawn(serve(listener, app, limits, true, stopping));
                addr
            });
            (addr, log)
        };
        let lean = start(true);
        let hyper = start(false);
        Servers { runtime, lean, hyper }
    })
}

/// What one server made of `sent`: the first request its handler saw on the
/// connection, and the response bytes (`None` when reading them failed: a
/// server closing with unread input may reset the connection).
struct Outcome {
    seen: Option<Seen>,
    response: Option<Vec<u8>>,
}

async fn exchange((addr, log): (SocketAddr, Log), sent: &[u8]) -> Outcome {
    // Each connection from its own loopback address, so a request recorded
    // late for an earlier connection (a pipelined one, say) can never be
    // taken for this one's, as a reused client port could be.
    static NEXT_CLIENT: AtomicU32 = AtomicU32::new(1);
    let [_, a, b, c] = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, a, b, c], 0))).unwrap();
    let mut client = socket.connect(addr).await.unwrap();
    let local = client.local_addr().unwrap();
    let _ = client.write_all(sent).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        let mut chunk = [0u8; 4096];
        loop {
            if response_complete(&response) {
                return Ok(());
            }
            match client.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                Err(err) => return Err(err),
            }
        }
    })
    .await;
    drop(client);
    // Only the first response: whether the answer to a pipelined request
    // arrived in the same read is timing, not behaviour.
    if let Some(len) = first_response_len(&response) {
        response.truncate(len);
    }
    let seen = {
        let mut log = log.lock().unwrap();
        let found = log.iter().position(|(peer, _)| *peer == local);
        found.map(|at| log.remove(at).1)
    };
    let response = matches!(read, Ok(Ok(()))).then_some(response);
    Outcome { seen, response }
}

/// The length of the first whole response with a Content-Length body in
/// `bytes` (the handler's "ok"; hyper keeps the connection open after it).
fn first_response_len(bytes: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = response.parse(bytes) else { return None };
    let length = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length"));
    let length = length.and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())?;
    (bytes.len() >= head + length).then_some(head + length)
}

fn response_complete(bytes: &[u8]) -> bool {
    first_response_len(bytes).is_some()
}

/// A response without its `date` line (the only part that may differ).
fn without_date(response: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(response);
    text.split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

fn bytes_of(choices: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(choices).prop_map(<[u8]>::to_vec)
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => Just(b"GET".to_vec()),
        1 => bytes_of(&[b"get", b"POST", b"HEAD", b"OPTIONS", b"PUT", b"G\xc3\x89T", b"", b"GET\x00"]),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let mount =
        bytes_of(&[b"", b"", b"/channel", b"/channel/", b"/CHANNEL", b"http://h", b"http://h/channel", b"//", b"*"]);
    let route = bytes_of(&[
        b"/v1/public/",
        b"/v1/public/",
        b"/v1/private/",
        b"/v1/%70ublic/",
        b"/v1/publicx/",
        b"/v1/public",
        b"/healthz",
        b"/internal/v1/channels/",
        b"",
    ]);
    let id = prop_oneof![
        4 => "[a-z0-9]{0,6}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..4),
        1 => bytes_of(&[b"%78", b"%", b"%zz", b"..", b"x/y", b"x/", b"\xff", b"\x80x", b"{x}", b"x y", b"x\ty", b"\"", b"|"]),
    ];
    let tail = bytes_of(&[b"", b"", b"", b"/", b"?token=t", b"?a=b&c=%20", b"#f", b"?x#y", b"?", b"?\xff", b"?a b"]);
    (mount, route, id, tail).prop_map(|(m, r, i, t)| [m, r, i, t].concat())
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let name = bytes_of(&[
        b"host",
        b"last-event-id",
        b"x-read-token",
        b"Authorization",
        b"content-length",
        b"Content-Length",
        b"transfer-encoding",
        b"Transfer-Encoding",
        b"connection",
        b"upgrade",
        b"expect",
        b"x-a b",
        b"x-\xc3\xa9",
        b"",
        b"x:y",
        b"X-Odd_Name.1",
    ]);
    let separator = bytes_of(&[b": ", b": ", b":", b" : ", b":\t", b":  "]);
    let value = prop_oneof![
        4 => bytes_of(&[
            b"a", b"0", b"0 ", b" 0", b"00", b"1", b"0, 0", b"+0", b"chunked", b"gzip, chunked", b"100-continue",
            b"close", b"keep-alive", b"upgrade", b"websocket", b"\x80\xff", b"a\x01b", b"", b"  spaced  ", b"a\tb",
            b"x\r\n folded", b"x\r\n\tfolded", b"a\x7fb",
        ]),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    (name, separator, value).prop_map(|(n, s, v)| [n, s, v].concat())
}

/// A request head (and what may follow it), as bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        6 => Just(b"HTTP/1.1".to_vec()),
        1 => bytes_of(&[b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1", b""]),
    ];
    let space = prop_oneof![8 => Just(b" ".to_vec()), 1 => bytes_of(&[b"  ", b"\t", b""])];
    let eol = prop_oneof![12 => Just(b"\r\n".to_vec()), 1 => bytes_of(&[b"\n", b"\r"])];
    let headers = proptest::collection::vec((header(), eol.clone()), 0..6);
    // Sometimes a large header, around MAX_HEAD_BYTES (16 KiB).
    let padding = prop_oneof![6 => Just(0usize), 1 => 1usize..20_000, 1 => 16_300usize..16_400];
    let after = prop_oneof![
        8 => Just(Vec::new()),
        1 => bytes_of(&[b"abc", b"GET /v1/public/y HTTP/1.1\r\n\r\n", b"0\r\n\r\n"]),
    ];
    // A head without its blank line is partial: both servers wait HEADER_READ_TIMEOUT (1 s here), so rarely.
    let end = prop_oneof![30 => Just(b"\r\n".to_vec()), 1 => bytes_of(&[b"\n", b""])];
    (method(), space.clone(), target(), space, version, eol, headers, padding, end, after).prop_map(
        |(method, sp1, target, sp2, version, eol, headers, padding, end, after)| {
            let mut head = [method, sp1, target, sp2, version, eol].concat();
            for (header, eol) in headers {
                head.extend_from_slice(&header);
                head.extend_from_slice(&eol);
            }
            if padding > 0 {
                head.extend_from_slice(b"x-pad: ");
                head.resize(head.len() + padding, b'p');
                head.extend_from_slice(b"\r\n");
            }
            [head, end, after].concat()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn the_lean_path_is_invisible(sent in request()) {
        let s = servers();
        let (lean, hyper) = s.runtime.block_on(async {
            tokio::join!(exchange(s.lean, &sent), exchange(s.hyper, &sent))
        });
        // What a failure shows of the request: its start and its length.
        let shown = format!("{} bytes: {}", sent.len(), String::from_utf8_lossy(&sent[..sent.len().min(300)]));
        // The handler sees the same request (or none) either way.
        prop_assert_eq!(&lean.seen, &hyper.seen, "{:?}", shown);
        match event_stream_request(&sent) {
            Some(request) => {
                // Taken: it is exactly what hyper parses, and the lean path answered it
                // (it closes the connection after its one response; hyper would keep it).
                prop_assert_eq!(Some(Seen::of(&request)), hyper.seen, "{:?}", shown);
                prop_assert!(is_stream_path(request.uri().path()));
                let response = lean.response.unwrap_or_default();
                prop_assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&response));
                prop_assert!(
                    String::from_utf8_lossy(&response).contains("\r\nconnection: close\r\n"),
                    "{:?}",
                    String::from_utf8_lossy(&response)
                );
            }
            None => {
                // Refused: hyper answers as it would alone.
                if let (Some(a), Some(b)) = (&lean.response, &hyper.response) {
                    let (a, b) = (without_date(a), without_date(b));
                    // A head over the limit that is also malformed further on: hyper
                    // alone answers 431 or 400 depending on how TCP split the bytes
                    // (it checks the size of a partial head, the syntax of what it
                    // has); the lean path holds at most the limit, so hyper sees the
                    // 431 side. Either way the request is refused and the connection closed.
                    let refused = |r: &[u8]| r.starts_with(b"HTTP/1.1 431 ") || r.starts_with(b"HTTP/1.1 400 ");
                    if !(sent.len() > MAX_HEAD_BYTES && refused(&a) && refused(&b)) {
                        prop_assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{:?}", shown);
                    }
                }
            }
        }
    }

    #[test]
    fn stream_paths_are_what_the_router_routes_to_the_stream_routes(
        segments in proptest::collection::vec(
            prop_oneof![
                bytes_of(&[b"v1", b"public", b"private", b"channel", b"", b"internal", b"Public", b"%70ublic"]),
                "[a-z0-9%.]{1,4}".prop_map(String::into_bytes),
            ],
            0..6,
        ),
        trailing_slash in any::<bool>(),
    ) {
        let mut path = String::new();
        for segment in &segments {
            path.push('/');
            path.push_str(std::str::from_utf8(segment).unwrap());
        }
        if trailing_slash || path.is_empty() {
            path.push('/');
        }
        let router: Router = stream_router(|_| any_method(|| async { StatusCode::OK })).fallback(|| async { StatusCode::NOT_FOUND });
        let request = axum::http::Request::get(&path).body(Body::empty()).unwrap();
        let routed = servers().runtime.block_on(router.oneshot(request)).unwrap().status() == StatusCode::OK;
        prop_assert_eq!(routed, is_stream_path(&path), "{}", path);
    }
}

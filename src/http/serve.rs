//! The accept loop: HTTP/1.1 connections served by hyper, with the limits
//! `axum::serve` does not expose.
//!
//! - **Header read timeout** (`HEADER_READ_TIMEOUT_SECS`): a client that
//!   trickles its request head (slowloris), or holds an idle keep-alive
//!   connection, is disconnected.
//! - **Write timeout** (`WRITE_TIMEOUT_SECS`): a connection whose writes make
//!   no progress for that long is closed — a subscriber that never reads
//!   would otherwise hold its stream slot forever.
//! - **Head size and header count**: a request head over [`MAX_HEAD_BYTES`]
//!   or with more than [`MAX_HEADERS`] headers gets hyper's 431 and the
//!   connection is closed.
//!
//! - **Event streams** (channels role): the first request head is read here;
//!   a plain GET of an event stream is answered without hyper's per-connection
//!   buffers (`stream_conn`), everything else goes to hyper as before.
//!   `LEAN_STREAMS=false` turns this off: hyper then serves every request.
//!
//! Graceful shutdown: when `stopping` is cancelled, the listener stops accepting,
//! idle keep-alive connections close, and busy ones finish their response
//! (SSE streams end at the same moment: `App::run` closes the fan-out hub).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::stream_conn::{self, FirstRequest, Prefixed};

/// The largest request line + headers accepted (431 above).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most headers one request may carry (431 above).
pub const MAX_HEADERS: usize = 100;

/// Per-connection timeouts, and whether event streams may take the lean path.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    /// LEAN_STREAMS: event streams are answered by `stream_conn` (off: hyper
    /// serves every request, for incident response).
    pub lean_streams: bool,
}

/// Serves `app` on `listener` until `stopping` is cancelled, then waits for
/// open connections to finish (the caller bounds that wait). With
/// `event_streams` (the channels role) and `limits.lean_streams`, each
/// connection's first request is read here and event-stream requests take the
/// lean path (`stream_conn`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    event_streams: bool,
    stopping: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let mut last_accept_warning = None;
    loop {
        let (mut stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause rather than spin,
                    // and say so once per burst rather than per attempt.
                    if last_accept_warning.is_none_or(|at: std::time::Instant| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %err, "accept failed; pausing new connections briefly");
                        last_accept_warning = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopping.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (http, app, watcher) = (http.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let mut prefix = Bytes::new();
            if event_streams && limits.lean_streams {
                match stream_conn::read_first_request(&mut stream, &limits).await {
                    FirstRequest::Hyper(head) => prefix = head,
                    FirstRequest::Close => return,
                    FirstRequest::EventStream(request) => {
                        // Holding the watcher makes graceful shutdown wait for this stream too.
                        let _watching = watcher;
                        stream_conn::answer(stream, *request, remote, app, limits).await;
                        return;
                    }
                }
            }
            let mut io = TimeoutStream::new(Prefixed::new(prefix, stream));
            io.set_write_timeout(Some(limits.write_timeout));
            let io = TokioIo::new(Box::pin(io));
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
                app.clone().oneshot(request)
            });
            // Boxed, so a lean stream's task is not as large as hyper's connection state.
            if let Err(err) = Box::pin(watcher.watch(http.serve_connection(io, service))).await {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

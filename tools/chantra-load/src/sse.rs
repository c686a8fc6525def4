//! One Server-Sent Events connection, spoken by hand over a TcpStream: a
//! subscriber costs a socket and a few KiB, so tens of thousands fit in one
//! process. Handles `Last-Event-ID`, a non-200 answer (with `Retry-After`),
//! chunked bodies, and the SSE fields the tool needs (id, event, data, comments).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Where a subscribe URL points: a loopback address and the request line's target.
#[derive(Clone, Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    host: String,
    target: String,
}

impl Endpoint {
    /// Parses an http:// URL; refuses anything that is not a loopback address.
    pub fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        if parsed.scheme() != "http" {
            return Err(format!("{url}: only http:// streams are supported"));
        }
        let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?.to_owned();
        let port = parsed.port_or_known_default().ok_or_else(|| format!("{url}: no port"))?;
        let addr = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: no address"))?;
        ensure_loopback(addr.ip(), url)?;
        let target = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_owned(),
        };
        let host = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Ok(Self { addr, host, target })
    }
}

/// The tool only ever loads servers on this machine.
pub fn ensure_loopback(ip: IpAddr, what: &str) -> Result<(), String> {
    if ip.is_loopback() { Ok(()) } else { Err(format!("{what}: only loopback targets are allowed")) }
}

/// Why a connection attempt did not become a stream.
#[derive(Debug)]
pub enum Refused {
    /// The server answered with another status than 200.
    Status { code: u16, retry_after: Option<u64> },
    /// Connect, write or read failed, or the answer was not HTTP.
    Io(String),
}

impl Refused {
    /// A label for tallies: "429", "503 retry-after", "io: connection refused", …
    pub fn label(&self) -> String {
        match self {
            Refused::Status { code, retry_after: Some(_) } => format!("{code} retry-after"),
            Refused::Status { code, retry_after: None } => code.to_string(),
            Refused::Io(e) => format!("io: {e}"),
        }
    }
}

fn io_label(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        // EMFILE / EADDRNOTAVAIL are the tool's own limits; name them plainly.
        Some(24) => "too many open files (client)".to_owned(),
        Some(99) => "no free local port (use --source-ips)".to_owned(),
        _ => e.kind().to_string(),
    }
}

/// One SSE event as the tool sees it.
pub struct Event<'a> {
    pub id: Option<&'a str>,
    pub event: Option<&'a str>,
    pub data: &'a str,
}

/// An open stream, headers read, ready to deliver events.
pub struct Stream {
    tcp: TcpStream,
    /// Bytes read but not yet decoded (after the head).
    raw: Vec<u8>,
    chunked: Option<Chunked>,
}

/// Connects, sends the GET (with Last-Event-ID when resuming) and reads the
/// response head. Anything but a 200 comes back as `Refused`.
pub async fn open(
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    last_event_id: Option<&str>,
    timeout: Duration,
) -> Result<Stream, Refused> {
    match tokio::time::timeout(timeout, open_inner(endpoint, source, last_event_id)).await {
        Ok(result) => result,
        Err(_) => Err(Refused::Io("timed out".to_owned())),
    }
}

async fn open_inner(
    endpoint: &Endpoint,
    source: Option<IpAddr>,
    last_event_id: Option<&str>,
) -> Result<Stream, Refused> {
    let io = |e: std::io::Error| Refused::Io(io_label(&e));
    let socket = if endpoint.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
    if let Some(ip) = source {
        // SO_REUSEADDR lets a bind reuse a port whose old connection sits in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(io)?;
        socket.bind(SocketAddr::new(ip, 0)).map_err(io)?;
    }
    let mut tcp = socket.connect(endpoint.addr).await.map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        endpoint.target, endpoint.host
    );
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(io)?;

    let mut raw = Vec::with_capacity(2048);
    let head_end = loop {
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end;
        }
        if raw.len() > 16 * 1024 {
            return Err(Refused::Io("response head over 16 KiB".to_owned()));
        }
        if tcp.read_buf(&mut raw).await.map_err(io)? == 0 {
            return Err(Refused::Io("closed before the response head".to_owned()));
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    raw.drain(..head_end + 4);
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| Refused::Io("not an HTTP response".to_owned()))?;
    let mut chunked = false;
    let mut retry_after = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse().ok();
        }
    }
    if code != 200 {
        return Err(Refused::Status { code, retry_after });
    }
    Ok(Stream { tcp, raw, chunked: chunked.then(Chunked::default) })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Stream {
    /// Reads events until the server closes the stream (Ok) or the connection
    /// fails (Err); `on_event` sees every dispatched event, `on_comment` every
    /// comment line (keep-alives).
    pub async fn follow(
        mut self,
        mut on_event: impl FnMut(Event<'_>),
        mut on_comment: impl FnMut(),
    ) -> Result<(), String> {
        let mut parser = Parser::default();
        let mut body = Vec::with_capacity(2048);
        loop {
            match &mut self.chunked {
                Some(chunked) => {
                    if chunked.decode(&mut self.raw, &mut body)? {
                        parser.feed(&mut body, &mut on_event, &mut on_comment);
                        return Ok(());
                    }
                }
                None => body.append(&mut self.raw),
            }
            parser.feed(&mut body, &mut on_event, &mut on_comment);
            if self.raw.capacity() - self.raw.len() < 1024 {
                self.raw.reserve(4096);
            }
            match self.tcp.read_buf(&mut self.raw).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(io_label(&e)),
            }
        }
    }
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
struct Chunked {
    /// Bytes of the current chunk still to copy; None while reading a size line.
    remaining: Option<usize>,
    /// The CRLF after a chunk's data is still to skip.
    trailing_crlf: bool,
}

impl Chunked {
    /// Moves decoded bytes from `raw` to `out`; true once the last chunk was seen.
    fn decode(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, String> {
        let mut pos = 0;
        let done = loop {
            if self.trailing_crlf {
                if raw.len() - pos < 2 {
                    break false;
                }
                pos += 2;
                self.trailing_crlf = false;
            }
            match self.remaining {
                Some(n) => {
                    let take = n.min(raw.len() - pos);
                    out.extend_from_slice(&raw[pos..pos + take]);
                    pos += take;
                    if take == n {
                        self.remaining = None;
                        self.trailing_crlf = true;
                    } else {
                        self.remaining = Some(n - take);
                        break false;
                    }
                }
                None => {
                    let Some(end) = find(&raw[pos..], b"\r\n") else { break false };
                    let line = String::from_utf8_lossy(&raw[pos..pos + end]);
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
                    pos += end + 2;
                    if size == 0 {
                        break true;
                    }
                    self.remaining = Some(size);
                }
            }
        };
        raw.drain(..pos);
        Ok(done)
    }
}

/// The SSE line protocol: fields accumulate until a blank line dispatches them.
#[derive(Default)]
struct Parser {
    id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl Parser {
    fn feed(&mut self, body: &mut Vec<u8>, on_event: &mut impl FnMut(Event<'_>), on_comment: &mut impl FnMut()) {
        let mut start = 0;
        while let Some(offset) = body[start..].iter().position(|b| *b == b'\n') {
            let mut line = &body[start..start + offset];
            start += offset + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line);
            if line.is_empty() {
                if self.has_data {
                    on_event(Event { id: self.id.as_deref(), event: self.event.as_deref(), data: &self.data });
                }
                self.event = None;
                self.data.clear();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                on_comment();
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                // The last event id persists across events, as in EventSource.
                "id" => self.id = Some(value.to_owned()),
                "event" => self.event = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        body.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_split_anywhere() {
        let wire = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let (mut decoder, mut out) = (Chunked::default(), Vec::new());
            let mut raw = wire[..split].to_vec();
            // The last chunk ("0\r\n") ends the body; its trailer is never read.
            let done_early = decoder.decode(&mut raw, &mut out).unwrap();
            assert_eq!(done_early, split >= wire.len() - 2, "split at {split}");
            if !done_early {
                raw.extend_from_slice(&wire[split..]);
                assert!(decoder.decode(&mut raw, &mut out).unwrap());
            }
            assert_eq!(out, b"hello world");
        }
    }

    #[test]
    fn parses_fields_and_comments() {
        let mut parser = Parser::default();
        let mut body =
            b": hi\n\nid: 1:2\nevent: message\ndata: a\ndata:b\n\nid: 3\r\ndata: c\r\n\r\ndata: partial".to_vec();
        let (mut events, mut comments) = (Vec::new(), 0);
        parser.feed(
            &mut body,
            &mut |e: Event<'_>| events.push((e.id.map(str::to_owned), e.event.map(str::to_owned), e.data.to_owned())),
            &mut || comments += 1,
        );
        assert_eq!(comments, 1);
        assert_eq!(
            events,
            vec![(Some("1:2".into()), Some("message".into()), "a\nb".into()), (Some("3".into()), None, "c".into()),]
        );
        assert_eq!(body, b"data: partial");
    }
}

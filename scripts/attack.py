#!/usr/bin/env python3
"""One anonymous client (one IP, 127.0.0.1) runs every memory attack of
issue 13 at once against a fresh `chantra serve --role all` and reports the
server's peak RSS.

Standard library only. Loopback only. Every loop is bounded (counts and
deadlines). The server runs on embedded SQLite + files in a temporary
DATA_DIR, with its default limits (rate limit 20/s burst 100 per IP and role,
MAX_STREAMS_PER_IP 200, MAX_GRANTS_PER_CHANNEL 1000, MCP_MAX_SESSIONS_PER_IP
20, PAGE_MAX_BYTES 4 MiB, ...): setup is paced to the rate limit rather than
turning it off (`--rate-limit-off` starts the server with
RATE_LIMIT_PER_SECOND=0 instead, and says so).

Phases:
  setup  (a) a public channel with N messages of 1 MiB (random bytes,
             application/octet-stream); a private channel with read grants
             created until 409 too_many_grants.
  attack, all at the same time, for --duration seconds:
         (b) 3 MCP sessions calling read_channel_messages limit=200 on the
             big channel, following next_cursor page after page;
         (c) 150 SSE streams on the big channel resuming from
             Last-Event-ID 00000000-..., raw sockets with SO_RCVBUF 4096,
             each reading 512 bytes every 5 s; a stream the server ends is
             reopened (as a resuming client would);
         (d) 5,000 MCP initialize calls, 16 at a time;
         (e) 16 concurrent GET /v1/channels/<private id> (publish token),
             repeated for 20 s.
The server's VmRSS / VmHWM (from /proc/<pid>/status) is sampled every 100 ms,
and so is the kernel's TCP buffer memory (/proc/net/sockstat, system-wide):
frames written to a slow reader's socket but not yet read sit there, outside
the server's RSS.

Usage: python3 scripts/attack.py [--bin target/debug/chantra] [--quick]
           [--duration SECS] [--only bcde] [--rate-limit-off] [--keep]
"""

import argparse
import base64
import collections
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ZERO_ID = "00000000-0000-0000-0000-000000000000"
MIB = 1024 * 1024
MCP_PROTOCOL = "2025-06-18"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_code(body):
    """The `code` of a JSON error body `{"error":{"code",...}}`, else ''."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, TypeError):
        return ""
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict):
            return str(err.get("code", ""))
        if isinstance(err, str):
            return err
        if "code" in doc:
            return str(doc["code"])
    return ""


class Counter:
    """Thread-safe named counters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.maxima = {}

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def max(self, key, value):
        with self.lock:
            if value > self.maxima.get(key, 0):
                self.maxima[key] = value

    def snapshot(self):
        with self.lock:
            return dict(self.c), dict(self.maxima)


# --------------------------------------------------------------------------
# The server and its memory


class Server:
    def __init__(self, binary, workdir, env_extra):
        self.ports = {k: free_port() for k in ("rest", "channels", "mcp", "landing")}
        self.workdir = workdir
        data = os.path.join(workdir, "data")
        os.makedirs(data, exist_ok=True)
        # A minimal environment (nothing inherited can change a limit), and a
        # cwd without a .env file.
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
        env.update(
            {
                "DATA_DIR": data,
                "DATABASE_URL": f"sqlite://{data}/chantra.db?mode=rwc",
                "REST_ADDR": f"127.0.0.1:{self.ports['rest']}",
                "CHANNELS_ADDR": f"127.0.0.1:{self.ports['channels']}",
                "MCP_ADDR": f"127.0.0.1:{self.ports['mcp']}",
                "LANDING_ADDR": f"127.0.0.1:{self.ports['landing']}",
                "CHANNEL_BASE_URL": f"http://127.0.0.1:{self.ports['channels']}",
                "MCP_PUBLIC_URL": f"http://127.0.0.1:{self.ports['mcp']}",
                "RUST_LOG": "info",
            }
        )
        env.update(env_extra)
        self.env_extra = env_extra
        self.log_path = os.path.join(workdir, "server.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--role", "all"],
            cwd=workdir,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            for role in list(pending):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.ports[role], timeout=2)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        pending.discard(role)
                    conn.close()
                except OSError:
                    pass
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"roles not ready after {timeout}s: {sorted(pending)}; see {self.log_path}")

    def memory(self):
        """(VmRSS, VmHWM) in bytes, or None when the process is gone."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                fields = {}
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:", "Threads:")):
                        name, value = line.split(":", 1)
                        fields[name] = int(value.split()[0])
            return fields["VmRSS"] * 1024, fields["VmHWM"] * 1024, fields.get("Threads", 0)
        except (OSError, KeyError, ValueError):
            return None

    def cpu_seconds(self):
        """utime + stime of the server so far (seconds)."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def stop(self, grace=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.log_file.close()
                return "killed after SIGTERM grace"
        self.log_file.close()
        return f"exit {self.proc.returncode}"


def tcp_buffer_bytes():
    """Kernel memory in TCP socket buffers, system-wide (/proc/net/sockstat
    `TCP: ... mem N`, in pages). Not part of any process's RSS: the frames a
    server has written but a slow reader has not taken sit here."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Sampler(threading.Thread):
    """VmRSS / VmHWM every 100 ms, with named marks."""

    def __init__(self, server, interval=0.1):
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.samples = []  # (t, rss, hwm, threads)
        self.tcp_mem = []  # (t, bytes of TCP socket buffers, system-wide)
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop_event.is_set():
            m = self.server.memory()
            if m is not None:
                self.samples.append((time.monotonic() - self.t0, *m))
            self.tcp_mem.append((time.monotonic() - self.t0, tcp_buffer_bytes()))
            self.stop_event.wait(self.interval)

    def now(self):
        return time.monotonic() - self.t0

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] <= end]


# --------------------------------------------------------------------------
# HTTP helpers


def request(port, method, path, headers=None, body=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


def paced(port, method, path, headers=None, body=None, deadline=None, counter=None, label=""):
    """A request retried while the per-IP rate limit says 429 rate_limited
    (a token comes back every 50 ms at the default 20/s). Bounded by `deadline`."""
    while True:
        try:
            status, hdrs, data = request(port, method, path, headers, body)
        except (OSError, http.client.HTTPException) as e:
            # Seen: a 1 MiB publish refused with an early 429 is answered and
            # closed while its body is still being sent (BrokenPipeError).
            if counter is not None:
                counter.add(f"{label}{method} error {type(e).__name__} (retried)")
            if deadline is not None and time.monotonic() > deadline:
                raise
            time.sleep(0.06)
            continue
        if status == 429 and error_code(data) == "rate_limited":
            if counter is not None:
                counter.add(f"{label}429 rate_limited (retried)")
            if deadline is not None and time.monotonic() > deadline:
                return status, hdrs, data
            time.sleep(0.06)
            continue
        return status, hdrs, data


# --------------------------------------------------------------------------
# (a) setup


def setup(server, cfg, stats):
    rest = server.ports["rest"]
    deadline = time.monotonic() + cfg.setup_timeout
    status, _, data = paced(rest, "POST", "/v1/channels", deadline=deadline, counter=stats, label="setup ")
    if status != 201:
        raise RuntimeError(f"create public channel: {status} {data[:300]!r}")
    public = json.loads(data)
    status, _, data = paced(
        rest,
        "POST",
        "/v1/channels",
        {"Content-Type": "application/json"},
        json.dumps({"visibility": "private"}).encode(),
        deadline=deadline,
        counter=stats,
        label="setup ",
    )
    if status != 201:
        raise RuntimeError(f"create private channel: {status} {data[:300]!r}")
    private = json.loads(data)

    # Publishes (2 threads) and grants (1 thread) share the REST role's bucket.
    pub_lock = threading.Lock()
    next_msg = [0]
    message_ids = []

    def publisher():
        while time.monotonic() < deadline:
            with pub_lock:
                if next_msg[0] >= cfg.messages:
                    return
                next_msg[0] += 1
                key = f"attack-{next_msg[0]}"
            body = os.urandom(cfg.message_bytes)
            status, _, data = paced(
                rest,
                "POST",
                f"/v1/channels/{public['channel_id']}/publish",
                {
                    "X-Publish-Token": public["publish_token"],
                    "Content-Type": "application/octet-stream",
                    # A retry after a broken pipe cannot store the message twice.
                    "Idempotency-Key": key,
                },
                body,
                deadline=deadline,
                counter=stats,
                label="setup ",
            )
            stats.add(f"setup publish {status}")
            if status == 201:
                with pub_lock:
                    message_ids.append(json.loads(data).get("id"))

    grants = {"created": 0, "refusal": None}

    def granter():
        # Bounded: the cap plus a margin (a cap that did not hold shows as more).
        for _ in range(cfg.grant_attempts):
            if time.monotonic() > deadline:
                return
            status, _, data = paced(
                rest,
                "POST",
                f"/v1/channels/{private['channel_id']}/read-grants",
                {"X-Publish-Token": private["publish_token"]},
                deadline=deadline,
                counter=stats,
                label="setup ",
            )
            stats.add(f"setup grant {status} {error_code(data)}".rstrip())
            if status == 201:
                grants["created"] += 1
            else:
                grants["refusal"] = f"{status} {error_code(data)}"
                return

    threads = [threading.Thread(target=publisher) for _ in range(2)] + [threading.Thread(target=granter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return public, private, len(message_ids), grants


# --------------------------------------------------------------------------
# (b), (d) MCP


class Mcp:
    def __init__(self, port, timeout=120):
        self.port = port
        self.timeout = timeout
        self.session = None
        self.next_id = 1

    def post(self, payload, conn=None):
        """POST one JSON-RPC message. Returns (status, headers, raw body, messages)."""
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        if self.session:
            headers["mcp-session-id"] = self.session
            headers["mcp-protocol-version"] = MCP_PROTOCOL
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("POST", "/mcp", body=json.dumps(payload).encode(), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            if own:
                conn.close()
        return resp.status, resp.headers, data, parse_mcp_body(resp.headers.get("content-type", ""), data)

    def initialize(self, conn=None):
        payload = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": MCP_PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "chantra-attack", "version": "1"},
            },
        }
        saved, self.session = self.session, None
        status, headers, data, msgs = self.post(payload, conn)
        self.session = headers.get("mcp-session-id") or saved
        return status, headers, data

    def initialized(self):
        return self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})[0]

    def call(self, tool, arguments):
        rid = self.next_id
        self.next_id += 1
        payload = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        status, headers, data, msgs = self.post(payload)
        reply = next((m for m in msgs if isinstance(m, dict) and m.get("id") == rid), None)
        return status, data, reply


def parse_mcp_body(content_type, data):
    """JSON-RPC messages from a JSON or SSE-framed body."""
    out = []
    if "text/event-stream" in content_type:
        event = []
        for line in data.split(b"\n") + [b""]:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                event.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
            elif line == b"" and event:
                try:
                    out.append(json.loads(b"\n".join(event)))
                except ValueError:
                    pass
                event = []
    else:
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        if isinstance(doc, list):
            out.extend(doc)
        elif doc is not None:
            out.append(doc)
    return out


def tool_result(reply):
    """The structured result of a tools/call reply, or (None, error text)."""
    if reply is None:
        return None, "no reply"
    if "error" in reply:
        return None, json.dumps(reply["error"])[:200]
    result = reply.get("result") or {}
    if result.get("isError"):
        text = "".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))
        return None, text[:200]
    if isinstance(result.get("structuredContent"), dict):
        return result["structuredContent"], None
    for c in result.get("content", []):
        if isinstance(c, dict) and c.get("type") == "text":
            try:
                return json.loads(c["text"]), None
            except ValueError:
                pass
    return None, "unparsable result"


def mcp_reader(idx, mcp, channel_id, cfg, deadline, stats):
    """(b) read_channel_messages limit=200 page after page (from the start
    again at the end of the channel) until the deadline or max pages."""
    after = None
    pages = 0
    while pages < cfg.mcp_pages and time.monotonic() < deadline:
        args = {"channel_id": channel_id, "limit": cfg.mcp_limit}
        if after:
            args["after"] = after
        t = time.monotonic()
        try:
            status, data, reply = mcp.call("read_channel_messages", args)
        except OSError as e:
            stats.add(f"(b) error {type(e).__name__}")
            time.sleep(0.1)
            continue
        stats.add("(b) bytes received", len(data))
        if status == 429 and error_code(data) == "rate_limited":
            stats.add("(b) 429 rate_limited (retried)")
            time.sleep(0.05)
            continue
        stats.add(f"(b) HTTP {status}")
        if status != 200:
            stats.add(f"(b) refused {status} {error_code(data)}")
            time.sleep(0.1)
            continue
        result, err = tool_result(reply)
        if result is None:
            stats.add(f"(b) tool error: {err}")
            time.sleep(0.1)
            continue
        pages += 1
        res = (reply or {}).get("result") or {}
        text_len = sum(len(c.get("text", "")) for c in res.get("content", []) if isinstance(c, dict))
        if isinstance(res.get("structuredContent"), dict) and text_len > 1024:
            # rmcp's Json<T> result: the page as structuredContent and again as a text block.
            stats.add("(b) pages sent twice (structuredContent + text)")
        n = len(result.get("messages", []))
        stats.add("(b) pages")
        stats.add("(b) messages", n)
        stats.max("(b) largest page response bytes", len(data))
        stats.max("(b) most messages in a page", n)
        stats.max("(b) slowest page ms", int((time.monotonic() - t) * 1000))
        if result.get("truncated"):
            stats.add("(b) truncated pages")
        if result.get("has_more") and result.get("next_cursor"):
            after = result["next_cursor"]
        else:
            stats.add("(b) walked the whole channel")
            after = None


def mcp_initializer(port, todo, lock, deadline, stats, sessions, started):
    """(d) initialize calls on a kept-alive connection until `todo` runs out."""
    conn = None
    while time.monotonic() < deadline:
        with lock:
            if todo[0] <= 0:
                break
            todo[0] -= 1
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        m = Mcp(port)
        try:
            status, headers, data = m.initialize(conn)
        except (OSError, http.client.HTTPException) as e:
            # Mostly a kept-alive connection the server had closed: the call
            # goes back to the pile and is sent again on a fresh connection
            # (still bounded by the deadline).
            stats.add(f"(d) error {type(e).__name__} (resent)")
            with lock:
                todo[0] += 1
            conn.close()
            conn = None
            continue
        code = error_code(data) if status >= 400 else ""
        stats.add(f"(d) {status} {code}".rstrip())
        if status in (200, 201) and m.session:
            with lock:
                sessions.append(m.session)
        if headers.get("connection", "").lower() == "close":
            conn.close()
            conn = None
        if status == 429:
            time.sleep(0.01)  # keep the client's own CPU use sane on 2 cores
    if conn is not None:
        conn.close()
    stats.max("(d) ms until this sender's last call returned", int((time.monotonic() - started) * 1000))


# --------------------------------------------------------------------------
# (c) slow SSE readers


class Streams(threading.Thread):
    def __init__(self, port, channel_id, cfg, deadline, stats):
        super().__init__(daemon=True)
        self.port, self.channel_id, self.cfg = port, channel_id, cfg
        self.deadline, self.stats = deadline, stats
        self.socks = []
        self.most_open = 0
        self.cap_hit = False
        self.per_stream = {}  # socket -> bytes received (head included)
        self.finished = []  # bytes received by each stream, once it is over

    def open_one(self):
        """Open one stream; True when it is open. Retries rate_limited."""
        for _ in range(200):
            if time.monotonic() > self.deadline:
                return False
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(15)
            try:
                s.connect(("127.0.0.1", self.port))
                s.sendall(
                    (
                        f"GET /v1/public/{self.channel_id} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1:{self.port}\r\n"
                        "Accept: text/event-stream\r\n"
                        f"Last-Event-ID: {ZERO_ID}\r\n\r\n"
                    ).encode()
                )
                head = s.recv(512)
            except OSError as e:
                self.stats.add(f"(c) open error {type(e).__name__}")
                s.close()
                return False
            self.stats.add("(c) bytes received", len(head))
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status == 200:
                self.stats.add("(c) streams opened")
                s.setblocking(False)
                self.socks.append(s)
                self.per_stream[s] = len(head)
                self.most_open = max(self.most_open, len(self.socks))
                return True
            # An error answer ends with the connection (connection: close):
            # read the rest of it (bounded) for its JSON code.
            try:
                s.settimeout(5)
                while len(head) < 65536:
                    more = s.recv(4096)
                    if not more:
                        break
                    head += more
            except OSError:
                pass
            body = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
            code = error_code(body)
            s.close()
            if status == 429 and code == "rate_limited":
                self.stats.add("(c) 429 rate_limited (retried)")
                time.sleep(0.06)
                continue
            self.stats.add(f"(c) refused {status} {code}".rstrip())
            if status in (429, 503):
                self.cap_hit = True
            return False
        return False

    def run(self):
        for _ in range(self.cfg.streams):
            if not self.open_one() and (self.cap_hit or time.monotonic() > self.deadline):
                break
        next_read = time.monotonic() + self.cfg.read_interval
        while time.monotonic() < self.deadline:
            time.sleep(max(0.0, min(next_read, self.deadline) - time.monotonic()))
            if time.monotonic() >= self.deadline:
                break
            next_read += self.cfg.read_interval
            ended = 0
            for s in list(self.socks):
                try:
                    chunk = s.recv(512)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self.stats.add(f"(c) ended by {type(e).__name__}")
                    chunk = b""
                if chunk:
                    self.stats.add("(c) bytes received", len(chunk))
                    self.per_stream[s] += len(chunk)
                    continue
                self.stats.add("(c) streams ended by the server")
                self.finished.append(self.per_stream.pop(s, 0))
                s.close()
                self.socks.remove(s)
                ended += 1
            # A resuming client comes back; keep the number of open streams up.
            for _ in range(ended):
                if self.cap_hit or not self.cfg.reopen or time.monotonic() > self.deadline:
                    break
                self.stats.add("(c) reopen attempts")
                self.open_one()
        self.stats.max("(c) most open at once", self.most_open)
        self.stats.add("(c) still open at the end", len(self.socks))
        for s in self.socks:
            self.finished.append(self.per_stream.pop(s, 0))
            s.close()
        got = sorted(self.finished)
        if got:
            # Head + keep-alives is a few hundred bytes; a stream that got
            # frames reads 512 B at every turn.
            self.stats.add("(c) streams that got more than 2 KiB", sum(1 for b in got if b > 2048))
            self.stats.max("(c) bytes per stream: min", got[0])
            self.stats.max("(c) bytes per stream: median", got[len(got) // 2])
            self.stats.max("(c) bytes per stream: max", got[-1])


# --------------------------------------------------------------------------
# (e) channel views of a channel with grants at the cap


def channel_getter(port, channel, deadline, stats):
    conn = None
    path = f"/v1/channels/{channel['channel_id']}"
    headers = {"X-Publish-Token": channel["publish_token"]}
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            stats.add(f"(e) error {type(e).__name__}")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
            continue
        stats.add("(e) bytes received", len(data))
        code = error_code(data) if resp.status >= 400 else ""
        stats.add(f"(e) {resp.status} {code}".rstrip())
        if resp.status == 200:
            stats.max("(e) largest response bytes", len(data))
            try:
                doc = json.loads(data)
                stats.max("(e) grants listed in one response", len(doc.get("read_grants", [])))
                stats.max("(e) read_grants_total", int(doc.get("read_grants_total", 0)))
            except (ValueError, TypeError, AttributeError):
                pass
        if resp.headers.get("connection", "").lower() == "close":
            conn.close()
            conn = None
        if resp.status == 429:
            time.sleep(0.01)  # the client's own CPU: 2 cores shared with the server
    if conn is not None:
        conn.close()


# --------------------------------------------------------------------------


def mb(n):
    return f"{n / MIB:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "debug", "chantra"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the script itself")
    ap.add_argument("--rate-limit-off", action="store_true", help="start the server with RATE_LIMIT_PER_SECOND=0")
    ap.add_argument("--duration", type=float, help="seconds of attack after setup (default 60, quick 12)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR and server log")
    ap.add_argument("--only", default="bcde", help="attacks to run, e.g. 'c' (streams alone) for attribution; default all: bcde")
    args = ap.parse_args()

    q = args.quick
    cfg = argparse.Namespace(
        messages=12 if q else 200,
        message_bytes=(256 * 1024) if q else MIB,
        grants_cap=20 if q else 1000,  # the server's MAX_GRANTS_PER_CHANNEL (default 1000)
        mcp_callers=3,
        mcp_limit=200,
        mcp_pages=4 if q else 1000,
        streams=10 if q else 150,
        read_interval=2.0 if q else 5.0,
        reopen=True,
        initializes=300 if q else 5000,
        init_concurrency=16,
        getters=16,
        get_seconds=4.0 if q else 20.0,
        duration=args.duration or (12.0 if q else 60.0),
        setup_timeout=120.0,
    )
    cfg.grant_attempts = cfg.grants_cap + 5

    env_extra = {}
    if q:
        # Quick only: a small grant cap so the 409 is reached in a second.
        env_extra["MAX_GRANTS_PER_CHANNEL"] = str(cfg.grants_cap)
    if args.rate_limit_off:
        env_extra["RATE_LIMIT_PER_SECOND"] = "0"

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no executable chantra at {binary}")
    workdir = tempfile.mkdtemp(prefix="chantra-attack-")
    stats = Counter()
    log(f"binary {binary} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(os.path.getmtime(binary)))} UTC mtime)")
    log(f"workdir {workdir}; server env overrides: {env_extra or 'none (all limits default)'}")
    server = Server(binary, workdir, env_extra)
    sampler = Sampler(server)
    stop_note = "not stopped"
    try:
        server.wait_ready()
        sampler.start()
        log(f"server pid {server.pid} ready on {server.ports}")
        time.sleep(0.5)
        idle_rss = server.memory()

        # (a) setup
        t_setup = sampler.now()
        t = time.monotonic()
        public, private, published, grants = setup(server, cfg, stats)
        setup_secs = time.monotonic() - t
        log(
            f"setup: {published}/{cfg.messages} messages of {cfg.message_bytes} B, "
            f"{grants['created']} grants then {grants['refusal']}, in {setup_secs:.1f}s"
        )
        # Let the per-IP buckets refill (burst 100 at 20/s: 5 s) so the attack starts with a full burst.
        time.sleep(1.0 if (q or args.rate_limit_off) else 6.0)
        setup_hwm = server.memory()

        # (b) the three reader sessions first, so (d) cannot take their slots.
        readers = []
        for i in range(cfg.mcp_callers if "b" in args.only else 0):
            m = Mcp(server.ports["mcp"])
            for _ in range(100):
                status, headers, data = m.initialize()
                if status == 429 and error_code(data) == "rate_limited":
                    time.sleep(0.06)
                    continue
                break
            stats.add(f"(b) initialize {status}")
            if m.session:
                m.initialized()
                readers.append(m)
        t_attack = sampler.now()
        start_mem = server.memory()
        start_cpu = server.cpu_seconds()
        log(f"attack starts: RSS {mb(start_mem[0])}, HWM so far {mb(start_mem[1])}; {len(readers)} MCP reader sessions")

        attack_started = time.monotonic()
        deadline = attack_started + cfg.duration
        threads = []
        for i, m in enumerate(readers):
            threads.append(threading.Thread(target=mcp_reader, args=(i, m, public["channel_id"], cfg, deadline, stats), daemon=True))
        streams = Streams(server.ports["channels"], public["channel_id"], cfg, deadline, stats)
        if "c" in args.only:
            threads.append(streams)
        todo, lock, sessions = [cfg.initializes], threading.Lock(), []
        for _ in range(cfg.init_concurrency if "d" in args.only else 0):
            threads.append(
                threading.Thread(target=mcp_initializer, args=(server.ports["mcp"], todo, lock, deadline, stats, sessions, attack_started), daemon=True)
            )
        get_deadline = min(deadline, time.monotonic() + cfg.get_seconds)
        for _ in range(cfg.getters if "e" in args.only else 0):
            threads.append(threading.Thread(target=channel_getter, args=(server.ports["rest"], private, get_deadline, stats), daemon=True))
        for th in threads:
            th.start()
        last_report = time.monotonic()
        while time.monotonic() < deadline + 5 and any(th.is_alive() for th in threads):
            time.sleep(0.5)
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                m = server.memory()
                if m:
                    log(f"  t+{sampler.now() - t_attack:5.1f}s RSS {mb(m[0])} HWM {mb(m[1])} threads {m[2]}")
        init_left = todo[0]
        for th in threads:
            th.join(timeout=30)
        hung = [th.name for th in threads if th.is_alive()]
        t_end = sampler.now()
        time.sleep(3.0)
        end_mem = server.memory()
        attack_cpu = server.cpu_seconds() - start_cpu
    finally:
        sampler.stop_event.set()
        if sampler.is_alive():
            sampler.join(2)
        stop_note = server.stop()

    # ----------------------------------------------------------------------
    counts, maxima = stats.snapshot()
    attack = sampler.window(t_attack, t_end)
    peak_rss_attack = max((s[1] for s in attack), default=0)
    peak_at = next((s[0] - t_attack for s in attack if s[1] == peak_rss_attack), 0)
    setup_samples = sampler.window(t_setup, t_attack)
    peak_rss_setup = max((s[1] for s in setup_samples), default=0)
    final_hwm = max((s[2] for s in sampler.samples), default=0)
    with open(server.log_path, "rb") as f:
        log_text = f.read().decode("utf-8", "replace")
    log_lines = log_text.splitlines()
    errors = [l for l in log_lines if " ERROR " in l or "panicked" in l]
    warns = [l for l in log_lines if " WARN " in l]

    print()
    print("=" * 72)
    print("chantra attack summary (one client IP: 127.0.0.1, loopback)")
    print("=" * 72)
    print(f"binary:          {binary}")
    print(f"mode:            {'QUICK (tiny sizes) ' if q else ''}{'ONLY attacks ' + args.only + ', ' if args.only != 'bcde' else ''}rate limit {'OFF (RATE_LIMIT_PER_SECOND=0)' if args.rate_limit_off else 'default (20/s, burst 100, paced setup)'}")
    if env_extra:
        print(f"server env:      {env_extra}")
    print(f"setup:           {published} x {cfg.message_bytes} B messages (octet-stream, random), "
          f"{grants['created']} grants then {grants['refusal']} ({setup_secs:.1f} s)")
    print(f"memory:          idle RSS {mb(idle_rss[0])}; peak RSS during setup {mb(peak_rss_setup)} "
          f"(HWM after setup {mb(setup_hwm[1])})")
    print(f"                 RSS at attack start {mb(start_mem[0])}")
    print(f"                 PEAK RSS during attack {mb(peak_rss_attack)} (t+{peak_at:.1f} s), "
          f"VmHWM at end {mb(final_hwm)}, RSS 3 s after {mb(end_mem[0]) if end_mem else '?'}")
    print(f"                 peak attack RSS - start RSS = {mb(peak_rss_attack - start_mem[0])}; "
          f"{len(sampler.samples)} samples at 100 ms")
    tcp_start = next((b for t, b in sampler.tcp_mem if t >= t_attack), 0)
    tcp_peak = max((b for t, b in sampler.tcp_mem if t_attack <= t <= t_end), default=0)
    print(f"kernel TCP:      socket buffer memory (system-wide, NOT in RSS) {mb(tcp_start)} at start, "
          f"peak {mb(tcp_peak)} during the attack")
    # A coarse timeline: max RSS per 5 s of the attack.
    buckets = collections.OrderedDict()
    for s in attack:
        buckets.setdefault(int((s[0] - t_attack) // 5) * 5, []).append(s[1])
    print("timeline (max RSS per 5 s): " + ", ".join(f"{k}s {max(v) / MIB:.0f}" for k, v in buckets.items()) + " MiB")
    print(f"attack:          {cfg.duration:.0f} s window ({t_end - t_attack:.1f} s until all attackers stopped), "
          f"server CPU {attack_cpu:.1f} s; threads still running after join: {hung or 'none'}")

    def section(prefix, title):
        print(title)
        for k in sorted(counts):
            if k.startswith(prefix):
                print(f"    {k[len(prefix):].strip():45} {counts[k]}")
        for k in sorted(maxima):
            if k.startswith(prefix):
                print(f"    {k[len(prefix):].strip():45} {maxima[k]}")

    section("setup ", "(a) setup requests:")
    section("(b)", f"(b) {len(readers)} MCP read_channel_messages callers, limit {cfg.mcp_limit}:")
    section("(c)", f"(c) {cfg.streams} SSE streams, Last-Event-ID {ZERO_ID[:8]}..., SO_RCVBUF 4096, 512 B / {cfg.read_interval:.0f} s:")
    section("(d)", f"(d) {cfg.initializes} MCP initialize, {cfg.init_concurrency} at a time "
            f"({cfg.initializes - init_left} sent; {len(sessions)} sessions granted):")
    section("(e)", f"(e) {cfg.getters} concurrent GET /v1/channels/<private> for {cfg.get_seconds:.0f} s:")
    n500 = sum(v for k, v in counts.items() if " 500" in k or k.endswith("500"))
    print(f"server:          stop: {stop_note}; log {len(log_lines)} lines, {len(errors)} ERROR/panic, {len(warns)} WARN; HTTP 500s seen: {n500}")
    for l in (errors[:10] + warns[:5]):
        print(f"    {l[:240]}")
    print("=" * 72)
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

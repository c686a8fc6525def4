#!/usr/bin/env python3
"""chantra-load's JSON reports, for scripts/bench.sh.

    python3 bench/results.py annotate REPORT.json TARGET SCENARIO EXIT_STATUS SERVER_ALIVE SERVER_LOG TOOL_LOG
    python3 bench/results.py attach REPORT.json PROFILE.json NOTICES.json ROUND
    python3 bench/results.py render RESULTS_DIR OUT.md [TITLE]
    python3 bench/results.py targets RESULTS_DIR

`annotate` adds what only the script knows to one run's report: the target,
the tool's exit status, whether the server survived, and the distinct
warnings and errors the server logged (a report is made from the tool's log
when the tool failed before writing one).

`attach` adds a scale-out run's profile (bench/scaleout_probe.py), the
notices each channels process received and the round number.

`targets` prints issue 18's targets, each with its figure (the median over
the rounds, with the range) and a verdict; `render` adds the same table.

`render` turns every `<target>__<scenario>__<size>.json` in RESULTS_DIR
(plus `meta.txt` and `token_hash.txt` if present) into markdown: one table
per scenario, a row per target and size, so the targets read side by side.
"""

import json
import pathlib
import re
import sys

# Server log lines that say nothing about the run.
BENIGN = [
    re.compile(r"TOKEN_SECRET_SALT is not set"),
    re.compile(r"worker_connections exceed open file resource limit"),
    re.compile(r"Using \d+KiB of shared memory for nchan"),
    # Said once at startup wherever `ulimit -n` is below MAX_STREAMS; the meta notes say it.
    re.compile(r"the open-file limit caps streams below MAX_STREAMS"),
]

TARGET_ORDER = {"embedded": 0, "postgres": 1, "garage": 2, "nchan": 3, "pg-listen": 4, "pg-nats": 5}


def num(value, unit="", digits=1):
    if value is None:
        return "–"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}"
    return f"{text}{unit}"


def mib(kib):
    return "–" if kib is None else f"{kib / 1024:,.0f} MiB"


def connect_all(c):
    """Time until the last subscriber connected (failures are in the result column)."""
    return num(c.get("last_connected_ms", c.get("all_ms")), " ms")


def lat(summary):
    summary = summary or {}
    return [num(summary.get("p50"), " ms"), num(summary.get("p99"), " ms"), num(summary.get("max"), " ms")]


def tally(counts):
    if not counts:
        return "–"
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()))


def status(run):
    notes = []
    if run.get("ok") and run.get("exit_status") == 0:
        notes.append("ok")
    else:
        notes.append("**FAILED**")
        notes.extend(run.get("problems") or [])
        if run.get("exit_status") not in (0, 2):
            notes.append(f"tool exit {run.get('exit_status')}: {run.get('error', '')}")
    if run.get("server_alive") is False:
        notes.append("**server died**")
    merged = {}
    for line in run.get("server_log_problems") or []:
        count, _, text = line.partition("× ")
        if any(p.search(text) for p in BENIGN):
            continue
        text = normalize(text)
        merged[text] = merged.get(text, 0) + (int(count) if count.isdigit() else 1)
    for text, count in sorted(merged.items(), key=lambda kv: -kv[1]):
        notes.append(f"server log: `{count:,}× {text}`")
    return "; ".join(notes).replace("|", "\\|")


def memory(run):
    rss = run.get("server_rss_kib") or {}
    return mib(rss.get("idle")), mib(rss.get("streams_open")), mib(rss.get("peak"))


def per_stream(run):
    rss, pss = run.get("rss_per_stream_kib"), run.get("pss_per_stream_kib")
    if rss is None:
        return "–"
    return f"{rss:,.1f} KiB (PSS {pss:,.1f})" if pss is not None else f"{rss:,.1f} KiB"


def deliveries(run):
    d = run.get("deliveries") or {}
    if not d:
        return ["–", "–"]
    return [
        f"{d.get('delivered', 0):,} / {d.get('expected', 0):,}",
        f"{d.get('missing', 0):,} / {d.get('duplicates', 0):,} / {d.get('out_of_order', 0):,}",
    ]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def publish_rows(runs):
    for r in runs:
        s, p = r.get("sizes", {}), r.get("publish", {})
        yield [
            r["target"], s.get("publishers"), num(s.get("payload_bytes"), " B"), num(p.get("per_s"), "/s", 0),
            f"{p.get('ok', 0):,} / {p.get('attempted', 0):,}", tally(p.get("statuses")), *lat(p.get("latency_ms")),
            *deliveries(r), *memory(r), status(r),
        ]


def fanout_rows(runs):
    for r in runs:
        s, c = r.get("sizes", {}), r.get("connect") or {}
        yield [
            r["target"], num(s.get("subscribers")), f"{s.get('messages')} @ {s.get('rate_per_s')}/s",
            *deliveries(r), *lat(r.get("latency_ms")), connect_all(c),
            *memory(r), per_stream(r), status(r),
        ]


def channels_rows(runs):
    for r in runs:
        s, c, p = r.get("sizes", {}), r.get("connect") or {}, r.get("publish", {})
        yield [
            r["target"], num(s.get("channels")), num(s.get("messages")), num(p.get("per_s"), "/s", 0),
            *deliveries(r), *lat(r.get("latency_ms")), num((r.get("channels") or {}).get("create_ms"), " ms"),
            connect_all(c), *memory(r), per_stream(r), status(r),
        ]


def idle_rows(runs):
    for r in runs:
        c, h, d = r.get("connect") or {}, r.get("hold") or {}, r.get("deliveries") or {}
        yield [
            r["target"], num(c.get("requested")), num(c.get("connected")), num(h.get("open_after_hold")),
            num(h.get("secs"), " s"), f"{d.get('delivered', 0):,} / {d.get('expected', 0):,}",
            connect_all(c), tally(c.get("statuses")), *memory(r), per_stream(r), status(r),
        ]


def resume_rows(runs):
    for r in runs:
        c, d = r.get("reconnect") or {}, r.get("deliveries") or {}
        t = c.get("time_ms") or {}
        yield [
            r["target"], num(c.get("requested")), connect_all(c),
            f"{num(t.get('p50'))} / {num(t.get('p99'))} / {num(t.get('max'))} ms", tally(c.get("statuses")),
            num(c.get("retries")), f"{d.get('exact_subscribers', 0):,} / {d.get('subscribers', 0):,}",
            *deliveries(r), mib((r.get("server_rss_kib") or {}).get("peak")), status(r),
        ]


def wait_rows(runs):
    for r in runs:
        s, n, c = r.get("sizes", {}), r.get("sessions") or {}, r.get("calls") or {}
        rss = r.get("server_rss_kib") or {}
        yield [
            r["target"], num(n.get("opened")), f"{s.get('messages')} @ {s.get('rate_per_s')}/s",
            *deliveries(r), *lat(r.get("latency_ms")), *lat(r.get("all_returned_ms")),
            f"{c.get('with_messages', 0):,} / {c.get('empty', 0):,}", num(n.get("open_all_ms"), " ms"),
            mib(rss.get("idle")), mib(r.get("server_rss_kib_sessions_open")), mib(rss.get("streams_open")),
            num(r.get("rss_per_session_kib"), " KiB"), num(r.get("rss_per_wait_over_session_kib"), " KiB"),
            per_stream(r), status(r),
        ]


SECTIONS = [
    ("publish", "(a) Publish throughput", "publishers concurrent, as fast as possible; latency is per request",
     ["target", "publishers", "payload", "publishes/s", "ok / sent", "statuses", "p50", "p99", "max",
      "delivered / expected", "missing / dup / out of order", "RSS idle", "RSS open", "RSS peak", "result"],
     publish_rows),
    ("fanout", "(b) Fan-out: one channel, N subscribers", "publish → receive latency from the payload's timestamp",
     ["target", "subscribers", "messages", "delivered / expected", "missing / dup / out of order", "p50", "p99",
      "max", "connect all", "RSS idle", "RSS open", "RSS peak", "per stream", "result"],
     fanout_rows),
    ("channels", "(c) Many channels, one subscriber each", "messages round-robin over the channels",
     ["target", "channels", "messages", "published/s", "delivered / expected", "missing / dup / out of order",
      "p50", "p99", "max", "create channels", "connect all", "RSS idle", "RSS open", "RSS peak", "per stream",
      "result"],
     channels_rows),
    ("idle", "(d) Idle streams", "held open, then one message each; per stream = (RSS open − RSS idle) / streams",
     ["target", "streams", "connected", "open after hold", "hold", "delivered after hold", "connect all",
      "statuses", "RSS idle", "RSS open", "RSS peak", "per stream", "result"],
     idle_rows),
    ("resume", "(f) Resume storm", "all dropped at once, messages published in the gap, all reconnected at once "
     "with Last-Event-ID; reconnect time per subscriber includes waits after 429/503",
     ["target", "subscribers", "reconnect all", "reconnect p50 / p99 / max", "statuses", "retries",
      "exactly once in order", "delivered / expected", "missing / dup / out of order", "RSS peak", "result"],
     resume_rows),
    ("wait", "(g) MCP wait_for_messages", "N MCP sessions each looping wait_for_messages on one channel, messages "
     "published through REST; latency = publish → the call's answer (per message and waiter), all returned = per "
     "message, the slowest waiter; per waiting call = (RSS waiting − RSS idle) / calls, the session included; "
     "nchan has no equivalent",
     ["target", "waiting calls", "messages", "delivered / expected", "missing / dup / out of order", "p50", "p99",
      "max", "all returned p50", "all returned p99", "all returned max", "answers with messages / empty",
      "open sessions", "RSS idle", "RSS sessions", "RSS waiting", "per session", "wait over session",
      "per waiting call", "result"],
     wait_rows),
]


def normalize(text):
    """Figures that differ line by line would split one problem into many."""
    text = re.sub(r"latency=\d+ ms", "latency=N ms", text)
    return re.sub(r"=\d+\.\d+", "=N.N", text)


def log_problems(path, limit=5):
    """Distinct warning/error lines of a server log, timestamps and pids removed, with counts."""
    try:
        lines = pathlib.Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    counts = {}
    for line in lines:
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if not re.search(r"WARN|ERROR|\[(warn|error|crit|alert|emerg)\]|panick", line):
            continue
        if any(p.search(line) for p in BENIGN):
            continue
        # chantra: "2026-…Z  WARN target: message"; nginx: "2026/11/25 04:31:31 [warn] 1#1: message"
        text = re.sub(r"^\S+Z\s+", "", line)
        text = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", text)
        text = re.sub(r"\d+#\d+: (\*\d+ )?", "", text)
        text = re.sub(r"client: \S+, server: .*$", "", text)
        text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>", text)
        text = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "<addr>", text)
        text = normalize(text.strip())[:200]
        counts[text] = counts.get(text, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [f"{n}× {text}" for text, n in ranked[:limit]]


def annotate(args):
    report_path, target, scenario, exit_status, alive, server_log, tool_log = args
    path = pathlib.Path(report_path)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        tail = pathlib.Path(tool_log).read_text(errors="replace").strip().splitlines()[-3:]
        report = {"scenario": scenario, "ok": False, "problems": ["the tool wrote no report"], "error": " / ".join(tail)}
    report["target"] = target
    if scenario.startswith("scaleout"):
        report["bench_scenario"] = scenario
    report["exit_status"] = int(exit_status)
    report["server_alive"] = alive == "1"
    report["server_log_problems"] = log_problems(server_log)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def attach(args):
    report_path, profile_path, notices_path, round_number = args
    path = pathlib.Path(report_path)
    report = json.loads(path.read_text())
    for key, source in (("profile", profile_path), ("notices_received", notices_path)):
        try:
            report[key] = json.loads(pathlib.Path(source).read_text())
        except (OSError, json.JSONDecodeError) as e:
            report[key] = {"error": f"{source}: {e}"}
    report["round"] = int(round_number)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def cpu_pct(run, *names):
    cpu = (run.get("profile") or {}).get("cpu") or {}
    values = [cpu[n]["pct_of_one_core"] for n in names if n in cpu]
    return f"{sum(values):,.0f} %" if values else "–"


def top_waits(run, limit=3):
    waits = (run.get("profile") or {}).get("pg_waits_pct") or {}
    ranked = sorted(waits.items(), key=lambda kv: -kv[1])[:limit]
    return ", ".join(f"{k} {v:.0f} %" for k, v in ranked) or "–"


def deadlocks(run):
    d = (run.get("profile") or {}).get("pg_database") or {}
    return num(d.get("deadlocks"))


def notices(run):
    n = run.get("notices_received") or {}
    values = [n.get(f"channels-{i}") for i in (1, 2, 3)]
    return " / ".join("–" if v is None else f"{v:,.0f}" for v in values)


def scaleout_rows(runs):
    for r in sorted(runs, key=lambda r: (TARGET_ORDER.get(r["target"], 9), r.get("round", 0))):
        s, p, prof = r.get("sizes", {}), r.get("publish", {}), r.get("profile") or {}
        d = r.get("deliveries") or {}
        lat_ = r.get("latency_ms") or {}
        yield [
            r["target"], r.get("round", "–"), s.get("publishers"), num(s.get("channels")), num(s.get("subscribers")),
            num(p.get("per_s"), "/s", 0), num((p.get("latency_ms") or {}).get("p50"), " ms"),
            num(lat_.get("p50"), " ms"), num(lat_.get("p99"), " ms"),
            f"{d.get('missing', 0):,} / {d.get('duplicates', 0):,}",
            cpu_pct(r, "rest-1", "rest-2"), cpu_pct(r, "channels-1", "channels-2", "channels-3"),
            cpu_pct(r, "postgresql"), cpu_pct(r, "garage"), cpu_pct(r, "nats-server"), cpu_pct(r, "chantra-load"),
            num(prof.get("others_pct_of_one_core"), " %", 0), num(prof.get("machine_busy_pct"), " %", 0), num(prof.get("pg_active_backends_mean"), "", 1),
            top_waits(r), deadlocks(r), notices(r), status(r),
        ]


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def scaleout_summary(runs):
    """Per target: median and min–max over the rounds."""
    by_target = {}
    for r in runs:
        by_target.setdefault(r["target"], []).append(r)
    for target in sorted(by_target, key=lambda t: TARGET_ORDER.get(t, 9)):
        group = by_target[target]
        def spread(f, unit, digits=0):
            values = [f(r) for r in group]
            values = [v for v in values if v is not None]
            if not values:
                return "–"
            fmt = f"{{:,.{digits}f}}"
            return f"{fmt.format(median(values))}{unit} ({fmt.format(min(values))}–{fmt.format(max(values))})"
        yield [
            target, len(group),
            spread(lambda r: (r.get("publish") or {}).get("per_s"), "/s"),
            spread(lambda r: (r.get("latency_ms") or {}).get("p50"), " ms", 1),
            spread(lambda r: (r.get("latency_ms") or {}).get("p99"), " ms", 1),
            sum(1 for r in group if r.get("ok") and r.get("exit_status") == 0),
        ]


def scaleout_section(key, runs):
    title = {"scaleout-publishers": "Scale-out, load publishers: P concurrent publishers on a few channels",
             "scaleout-channels": "Scale-out, load channels: many channels, readers spread over the processes"}[key]
    parts = [f"## {title}", "",
             "2 rest + 3 channels processes on PostgreSQL + garage; pg-listen = LISTEN/NOTIFY, pg-nats = "
             "FANOUT_URL=nats://. Publish→deliver latency from the timestamp in each payload; CPU = share of one "
             "core over publish start → last delivery (/proc); PostgreSQL = the benchmark database's backends plus "
             "the cluster's background processes; pg active = mean active client backends per 100 ms sample; "
             "CPU others = everything else on the shared machine (other builds); machine busy = both cores; "
             "waits = share of those samples (CPU = on CPU, no wait); notices = chantra_fanout_notices_received_total "
             "per channels process.", "",
             "Median (min–max) over the rounds:", "",
             table(["target", "runs", "publishes/s", "deliver p50", "deliver p99", "runs ok"],
                   list(scaleout_summary(runs))), "",
             table(["target", "round", "publishers", "channels", "readers", "publishes/s", "publish p50",
                    "deliver p50", "deliver p99", "missing / dup", "CPU rest ×2", "CPU channels ×3", "CPU PostgreSQL",
                    "CPU garage", "CPU nats", "CPU load tool", "CPU others", "machine busy", "pg active", "pg waits (top 3)", "pg deadlocks",
                    "notices ch-1 / ch-2 / ch-3", "result"], list(scaleout_rows(runs))), ""]
    for target in sorted({r["target"] for r in runs}, key=lambda t: TARGET_ORDER.get(t, 9)):
        first = next((r for r in sorted(runs, key=lambda r: r.get("round", 0))
                      if r["target"] == target and (r.get("profile") or {}).get("perf")), None)
        if not first:
            continue
        perf = first["profile"]["perf"]
        parts += [f"perf, {target}, round {first.get('round')} (`{perf['command']}`, {perf['seconds']} s, both cores):",
                  "", "```"]
        parts += [f"{share:5.1f} %  {what}" for share, what in perf.get("by_process", [])[:10]]
        parts += ["", "top symbols:"]
        parts += [f"{share:5.1f} %  {what}" for share, what in perf.get("by_symbol", [])[:20]]
        parts += ["```", ""]
    return parts


# ------------------------------------------------------------ issue 18 targets


def cpu_between(run, start, end):
    """Server CPU seconds between two of the tool's marks, or None."""
    cpu = run.get("server_cpu_s") or {}
    if start in cpu and end in cpu:
        return cpu[end] - cpu[start]
    return None


def publish_rate(run):
    return (run.get("publish") or {}).get("per_s")


def publish_p99(run):
    return ((run.get("publish") or {}).get("latency_ms") or {}).get("p99")


def cpu_per_publish_us(run):
    cpu, ok = cpu_between(run, "publish_start", "publish_end"), (run.get("publish") or {}).get("ok")
    return None if cpu is None or not ok else cpu / ok * 1e6


def delivery_p99(run):
    return (run.get("latency_ms") or {}).get("p99")


def cpu_per_delivery_us(run):
    cpu, delivered = cpu_between(run, "publish_start", "drain_end"), (run.get("deliveries") or {}).get("delivered")
    return None if cpu is None or not delivered else cpu / delivered * 1e6


def reconnect_all_ms(run):
    return (run.get("reconnect") or {}).get("last_connected_ms")


def round_of(run):
    match = re.search(r"__r(\d+)$", run.get("_name", ""))
    return int(match.group(1)) if match else 1


# The size a run is named by (its file's last part), per scenario.
SIZE_FIELD = {"publish": "publishers", "channels": "channels"}


def figures(runs, target, scenario, size, figure):
    """{round: value} for one target, scenario and size."""
    out = {}
    for r in runs:
        s = r.get("sizes") or {}
        run_size = s.get(SIZE_FIELD.get(scenario, "subscribers"))
        if r.get("target") == target and r.get("scenario") == scenario and (size is None or run_size == size):
            value = figure(r)
            if value is not None:
                out[round_of(r)] = value
    return out


def spread(values, unit="", digits=0):
    values = sorted(values)
    if not values:
        return "–"
    text = f"{num(median(values), unit, digits)}"
    if len(values) > 1:
        text += f" ({num(values[0], '', digits)}–{num(values[-1], unit, digits)}, {len(values)} runs)"
    return text


def absolute(runs, label, target, scenario, size, figure, limit, unit, digits=0, above=True):
    got = figures(runs, target, scenario, size, figure)
    if not got:
        return [label, f"{target}: not measured in these runs", "–"]
    value = median(list(got.values()))
    met = value >= limit if above else value <= limit
    return [label, f"{target}: {spread(got.values(), unit, digits)}", "**met**" if met else "**missed**"]


def relative(runs, label, target, scenario, size, figure, factor, unit, digits=0, peer="nchan"):
    """Chantra's figure ≤ factor × the peer's, compared round by round (same machine mood)."""
    mine, theirs = figures(runs, target, scenario, size, figure), figures(runs, peer, scenario, size, figure)
    rounds = sorted(set(mine) & set(theirs))
    ratios = [mine[k] / theirs[k] for k in rounds if theirs[k]]
    if not ratios:
        return [label, f"{target} and {peer}: not both measured in one round", "–"]
    ratio = median(ratios)
    text = (f"{target} {spread([mine[k] for k in rounds], unit, digits)} vs {peer} "
            f"{spread([theirs[k] for k in rounds], unit, digits)}: {spread(ratios, '×', 2)}")
    return [label, text, "**met**" if ratio <= factor else "**missed**"]


def target_rows(runs):
    rows = [
        absolute(runs, "1. embedded durable publishes ≥ 25,000/s (64 publishers, 1 KiB)", "embedded", "publish", None,
                 publish_rate, 25000, "/s"),
        absolute(runs, "1. embedded publish p99 ≤ 20 ms", "embedded", "publish", None, publish_p99, 20, " ms", 1,
                 above=False),
        absolute(runs, "1. embedded server CPU per publish ≤ 60 µs", "embedded", "publish", None, cpu_per_publish_us,
                 60, " µs", 1, above=False),
    ]
    # 2. PostgreSQL + S3 against the raw PUT rate of the same garage, round by round.
    mine, raw = figures(runs, "postgres", "publish", None, publish_rate), figures(runs, "garage", "publish", None,
                                                                                   publish_rate)
    rounds = sorted(set(mine) & set(raw))
    if not rounds:
        rows.append(["2. PostgreSQL + S3 publishes ≥ 80 % of the raw S3 PUT rate (same concurrency and size)",
                     "postgres and garage PUT: not both measured in one round", "–"])
    else:
        ratios = [mine[k] / raw[k] for k in rounds if raw[k]]
        ratio = median(ratios) if ratios else 0
        cpu = figures(runs, "postgres", "publish", None, cpu_per_publish_us)
        raw_cpu = figures(runs, "garage", "publish", None, cpu_per_publish_us)
        costs = "".join(f"; {who} {spread(got.values(), ' µs', 0)} of CPU per {what}"
                        for who, got, what in (("Chantra", cpu, "publish"), ("garage", raw_cpu, "raw PUT")) if got)
        rows.append(["2. PostgreSQL + S3 publishes ≥ 80 % of the raw S3 PUT rate (same concurrency and size)",
                     f"postgres {spread([mine[k] for k in rounds], '/s')} vs garage PUT "
                     f"{spread([raw[k] for k in rounds], '/s')}: {spread([100 * x for x in ratios], ' %')}{costs}",
                     "**met**" if ratio >= 0.8 else "**missed**"])
        best_raw = median([raw[k] for k in rounds])
        pg = median([mine[k] for k in rounds])
        if best_raw * 0.8 < 3000:
            verdict = f"not applicable: 80 % of garage's raw rate ({num(best_raw * 0.8, '/s', 0)}) is below 3,000/s"
        else:
            verdict = "**met**" if pg >= 3000 else "**missed**"
        rows.append(["2. PostgreSQL + S3 publishes ≥ 3,000/s if garage's raw rate allows it",
                     f"postgres {num(pg, '/s', 0)}", verdict])
    for n in (5000, 10000):
        for target in ("embedded", "postgres"):
            rows.append(relative(runs, f"3. fan-out {n:,}: p99 ≤ nchan's", target, "fanout", n, delivery_p99, 1.0,
                                 " ms", 1))
            rows.append(relative(runs, f"3. fan-out {n:,}: server CPU per delivery ≤ nchan's", target, "fanout", n,
                                 cpu_per_delivery_us, 1.0, " µs", 2))
    for target in ("embedded", "postgres"):
        rows.append(absolute(runs, "3. memory per idle stream ≤ 6 KiB", target, "idle", None,
                             lambda r: r.get("rss_per_stream_kib"), 6, " KiB", 1, above=False))
        rows.append(absolute(runs, "3. 10,000 channels × 1 subscriber: memory per stream ≤ 8 KiB", target,
                             "channels", None, lambda r: r.get("rss_per_stream_kib"), 8, " KiB", 1, above=False))
        rows.append(relative(runs, "4. resume storm: all reconnected within 1.5 × nchan's time", target, "resume",
                             None, reconnect_all_ms, 1.5, " ms"))
    return rows


def targets_section(runs):
    rows = target_rows(runs)
    if all(row[2] == "–" for row in rows):
        return []  # no run of an issue 18 scenario (e.g. a scale-out run)
    return ["## Targets (issue 18)", "",
            "Median over the rounds (range, runs); relative targets compare each round's runs, which shared the "
            "machine's mood. CPU is the server's process tree between the tool's marks (publish: first to last "
            "publish; fan-out: first publish to last delivery).", "",
            table(["target", "figure", "verdict"], rows), ""]


def load_runs(results):
    runs = []
    for path in sorted(results.glob("*.json")):
        try:
            run = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            print(f"render: skipping {path}: {e}", file=sys.stderr)
            continue
        if isinstance(run, dict):
            run["_name"] = path.stem
            runs.append(run)
    return runs


def targets(args):
    print("\n".join(targets_section(load_runs(pathlib.Path(args[0])))) or "no run of an issue 18 target")


def render(args):
    results, out = pathlib.Path(args[0]), pathlib.Path(args[1])
    title = args[2] if len(args) > 2 else "Benchmark results"
    runs = load_runs(results)
    parts = [f"# {title}", ""]
    meta = results / "meta.txt"
    if meta.exists():
        parts += [meta.read_text().strip(), ""]
    token = results / "token_hash.txt"
    if token.exists():
        parts += ["## (e) Token check cost", "", "`cargo bench --bench token_hash`:", "", "```",
                  token.read_text().strip(), "```", ""]
    for key, heading, note, header, rows in SECTIONS:
        chosen = [r for r in runs if r.get("scenario") == key and "bench_scenario" not in r]
        if not chosen:
            continue
        chosen.sort(key=lambda r: (TARGET_ORDER.get(r["target"], 9), (r.get("sizes") or {}).get("subscribers") or 0))
        parts += [f"## {heading}", "", note + ".", "", table(header, list(rows(chosen))), ""]
    parts += targets_section(runs)
    for key in ("scaleout-publishers", "scaleout-channels"):
        chosen = [r for r in runs if r.get("bench_scenario") == key]
        if chosen:
            parts += scaleout_section(key, chosen)
    parts += ["Raw reports: the JSON files next to this one.", ""]
    out.write_text("\n".join(parts))
    print(f"render: wrote {out}")


if __name__ == "__main__":
    commands = {"annotate": annotate, "attach": attach, "render": render, "targets": targets}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])

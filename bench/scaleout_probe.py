#!/usr/bin/env python3
"""A profile of one scale-out run (scripts/bench.sh, scenario scaleout), taken
beside chantra-load and cut to the window the tool marks (--mark-file):

    python3 bench/scaleout_probe.py --db NAME --marks FILE --stop-file FILE --out JSON \
        [--proc NAME=PID ...] [--perf-data FILE] [--interval 0.1] [--max-secs 600]

Every --interval seconds (default 100 ms) it records:
- the CPU time (user + system, from /proc/<pid>/stat) of each named process
  (rest-1, channels-2, nats-server, chantra-load, …);
- the PostgreSQL processes serving the benchmark database (and the cluster's
  background processes), from pg_stat_activity: their CPU time the same way,
  and what each *active* client backend is waiting on (wait_event_type /
  wait_event; none = on CPU). The NOTIFY commit lock shows as `Lock:object`
  (the database-wide lock every notifying commit takes), the notify queue as
  `LWLock:NotifyQueue*`, WAL flushes as `IO:WALSync` / `LWLock:WALWrite`;
- the machine's busy share from /proc/stat (the client shares the machine).

With --perf-data it also runs `perf record -a -e cpu-clock` (the VM exposes
no hardware counters; cpu-clock is a software timer) from publish_start to
publish_end and keeps the top of `perf report` by process and by symbol.

It stops when --stop-file exists (bench.sh creates it when the tool exits)
or after --max-secs, and writes one JSON object: the `profile` of the run.
"""

import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")

# perf report lines: "  1.28%    23341:tokio-rt-worker  [k] finish_task_switch" (comm may hold spaces).
PERF_SYM = re.compile(r"^\s*([\d.]+)%\s+(\d+):(.*?)\s+\[(.)\]\s+(.*)$")
PERF_PID = re.compile(r"^\s*([\d.]+)%\s+(\d+):(.*)$")

PG_QUERY = (
    "select pid, backend_type, coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, '') "
    "from pg_stat_activity where pid <> pg_backend_pid() "
    "and (datname = current_database() or backend_type <> 'client backend');"
)
# Rollbacks and deadlocks of the benchmark database, as a row like the others
# (pid 0). Commits are not reported: the probe's own queries are commits too.
DB_QUERY = (
    "select 0, 'database', xact_commit, xact_rollback, deadlocks "
    "from pg_stat_database where datname = current_database();"
)


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None when gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, total) jiffies over every core."""
    first = pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def read_marks(path):
    marks = {}
    try:
        for line in pathlib.Path(path).read_text().splitlines():
            event, _, millis = line.partition(" ")
            if millis.strip().isdigit():
                marks[event] = int(millis) / 1000
    except OSError:
        pass
    return marks


class Psql:
    """One psql session, asked the same query each sample (no connection per sample)."""

    def __init__(self, db):
        # A statement timeout keeps one sample from waiting on a stuck server.
        env = {**os.environ, "PGOPTIONS": "-c statement_timeout=2000"}
        self.proc = subprocess.Popen(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-At", "-F", "|", "-q", "-X"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env,
        )

    def rows(self):
        if self.proc.poll() is not None:
            return []
        try:
            self.proc.stdin.write(PG_QUERY + "\n" + DB_QUERY + "\nselect 'END';\n")
            self.proc.stdin.flush()
        except OSError:
            return []
        rows = []
        # Bounded: a sample has at most a few hundred rows; stop at END or EOF.
        for _ in range(10_000):
            line = self.proc.stdout.readline()
            if not line or line.strip() == "END":
                break
            parts = line.rstrip("\n").split("|")
            if len(parts) == 5 and parts[0].isdigit():
                rows.append((int(parts[0]), *parts[1:]))
        return rows

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def start_perf(path):
    return subprocess.Popen(
        ["perf", "record", "-a", "-e", "cpu-clock", "-F", "250", "-o", path],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop_perf(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def perf_rows(path, sort):
    """`perf report --sort SORT` as [(percent, tid, comm, symbol or None)]."""
    try:
        text = subprocess.run(
            ["perf", "report", "-i", path, "--stdio", "--no-children", "--sort", sort, "--percent-limit", "0.02"],
            capture_output=True, text=True, timeout=300,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"perf report failed: {e}", file=sys.stderr)
        return []
    rows = []
    for line in text.splitlines():
        m = PERF_SYM.match(line) if "sym" in sort else None
        if m:
            rows.append((float(m[1]), int(m[2]), m[3].strip(), f"[{m[4]}] {m[5].strip()}"))
            continue
        m = PERF_PID.match(line)
        if m:
            rows.append((float(m[1]), int(m[2]), m[3].strip(), None))
    return rows


def perf_profile(path, label_of):
    """Samples by process (the named ones, PostgreSQL by backend type, the
    rest by command as `other: …`) and the top symbols of this benchmark's
    own processes. perf's `pid` key is the thread id, hence `label_of`."""
    by_process = {}
    for share, tid, comm, _ in perf_rows(path, "pid"):
        label = label_of(tid, comm)
        by_process[label] = by_process.get(label, 0.0) + share
    by_symbol = {}
    for share, tid, comm, symbol in perf_rows(path, "pid,sym"):
        label = label_of(tid, comm)
        if symbol is None or label.startswith("other"):
            continue
        key = f"{label}  {symbol}"
        by_symbol[key] = by_symbol.get(key, 0.0) + share
    top = lambda d, n: [[round(v, 2), k] for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]
    return {"by_process": top(by_process, 20), "by_symbol": top(by_symbol, 40)}


def at(samples, moment, key):
    """The value of `key` in the last sample taken at or before `moment` (else the first)."""
    chosen = samples[0]
    for s in samples:
        if s["t"] > moment:
            break
        chosen = s
    return chosen.get(key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--marks", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--proc", action="append", default=[], help="NAME=PID")
    parser.add_argument("--perf-data")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--max-secs", type=float, default=600)
    args = parser.parse_args()
    procs = dict(p.split("=", 1) for p in args.proc)

    psql = Psql(args.db)
    samples, perf, perf_window = [], None, [None, None]
    # Thread ids of each named process and the PostgreSQL processes' types,
    # to name perf's samples (it reports threads).
    tids, pg_types = {}, {}
    deadline = time.time() + args.max_secs
    while time.time() < deadline and not os.path.exists(args.stop_file):
        t = time.time()
        rows = psql.rows()
        database = next((r for r in rows if r[0] == 0), None)
        rows = [r for r in rows if r[0] != 0]
        busy, total = machine_ticks()
        for name, pid in procs.items():
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    tids[int(tid)] = name
            except OSError:
                pass
        for pid, btype, *_ in rows:
            pg_types[pid] = btype
        samples.append({
            "t": t,
            "machine": (busy, total),
            "procs": {name: cpu_ticks(pid) for name, pid in procs.items()},
            "pg": {pid: cpu_ticks(pid) for pid, *_ in rows},
            "database": [int(v) for v in database[2:]] if database else None,
            "waits": [f"{wtype}:{wevent}" if wtype else "CPU" for _, btype, state, wtype, wevent in rows
                      if btype == "client backend" and state == "active"],
        })
        marks = read_marks(args.marks)
        if args.perf_data and perf is None and "publish_start" in marks and "publish_end" not in marks:
            perf, perf_window[0] = start_perf(args.perf_data), time.time()
        if perf is not None and perf_window[1] is None and "publish_end" in marks:
            perf_window[1] = time.time()
            stop_perf(perf)
        time.sleep(max(0.0, args.interval - (time.time() - t)))
    stop_perf(perf)
    psql.close()

    marks = read_marks(args.marks)
    profile = {"interval_s": args.interval, "samples": len(samples), "marks": marks}
    start, end = marks.get("publish_start"), marks.get("drain_end") or marks.get("publish_end")
    if not samples or start is None or end is None or end <= start:
        profile["error"] = "no complete window (the tool did not reach its drain)"
        pathlib.Path(args.out).write_text(json.dumps(profile, indent=2) + "\n")
        return
    window = end - start
    inside = [s for s in samples if start <= s["t"] <= end]
    b0, t0 = at(samples, start, "machine")
    b1, t1 = at(samples, end, "machine")
    profile["window_s"] = round(window, 2)
    profile["window"] = "publish_start .. drain_end (CPU); publish_start .. publish_end (waits, perf)"
    profile["cores"] = os.cpu_count()
    profile["machine_busy_pct"] = round(100 * (b1 - b0) / max(1, t1 - t0), 1)

    cpu = {}
    for name in procs:
        a, b = at(samples, start, "procs").get(name), at(samples, end, "procs").get(name)
        if a is not None and b is not None:
            seconds = (b - a) / TICK
            cpu[name] = {"cpu_s": round(seconds, 2), "pct_of_one_core": round(100 * seconds / window, 1)}
    # PostgreSQL: per backend, the growth of its CPU time over the window
    # (a backend that appeared inside the window counts from its first sample).
    first, last = {}, {}
    for s in samples:
        if s["t"] < start:
            first.update({p: v for p, v in s["pg"].items() if v is not None})
            continue
        if s["t"] > end:
            break
        for p, v in s["pg"].items():
            if v is not None:
                first.setdefault(p, v)
                last[p] = v
    pg_seconds = sum(last[p] - first.get(p, last[p]) for p in last) / TICK
    cpu["postgresql"] = {"cpu_s": round(pg_seconds, 2), "pct_of_one_core": round(100 * pg_seconds / window, 1),
                         "processes": len(last)}
    profile["cpu"] = cpu
    # The machine is shared: what ran besides this benchmark in the window.
    # /proc/stat's totals lose ticks on this VM under load (they advanced
    # ~25 % too slowly in one run), so only their busy *share* is used.
    busy_s = (b1 - b0) / max(1, t1 - t0) * window * (os.cpu_count() or 1)
    others = busy_s - sum(c["cpu_s"] for c in cpu.values())
    profile["machine_busy_cpu_s"] = round(busy_s, 2)
    profile["others_cpu_s"] = round(others, 2)
    profile["others_pct_of_one_core"] = round(100 * others / window, 1)
    profile["loadavg_at_end"] = pathlib.Path("/proc/loadavg").read_text().split()[:3]

    # PostgreSQL publishes a backend's counters up to ~1 s after its
    # transactions (10 s when it goes idle): read to the last sample, approximate.
    d0, d1 = at(samples, start, "database"), samples[-1].get("database")
    if d0 and d1:
        profile["pg_database"] = {"rollbacks": d1[1] - d0[1], "deadlocks": d1[2] - d0[2],
                                  "note": "pg_stat_database from publish_start to the probe's end; approximate"}
    publish_end = marks.get("publish_end", end)
    waiting = [s for s in inside if s["t"] <= publish_end]
    counts = {}
    for s in waiting:
        for label in s["waits"]:
            counts[label] = counts.get(label, 0) + 1
    seen = sum(counts.values())
    profile["pg_active_backends_mean"] = round(seen / max(1, len(waiting)), 2)
    profile["pg_wait_samples"] = len(waiting)
    profile["pg_waits_pct"] = {k: round(100 * v / max(1, seen), 1)
                               for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}

    if perf_window[0] is not None and args.perf_data and os.path.exists(args.perf_data):
        def label_of(tid, comm):
            if tid in tids:
                return tids[tid]
            if tid in pg_types:
                return f"postgresql ({pg_types[tid]})"
            return f"other: {comm}"

        profile["perf"] = {
            "command": "perf record -a -e cpu-clock -F 250 (publish_start .. publish_end)",
            "seconds": round((perf_window[1] or time.time()) - perf_window[0], 1),
            "unit": "percent of all samples on both cores",
            **perf_profile(args.perf_data, label_of),
        }
    pathlib.Path(args.out).write_text(json.dumps(profile, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Fails when a layer imports one above it (README "Layout").
#   1. crates: chantra-core's dependency tree has no HTTP server or client,
#      MCP or CLI library (cargo refuses cycles between crates by itself);
#   2. modules: inside chantra-core and inside the chantra binary, each module
#      imports only modules of a lower rank (the tables below), so the
#      layering within a crate is checked too, not only between crates.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='axum|hyper|rmcp|clap|tower|tower-http|reqwest|rust-s3'
if found=$(cargo tree -p chantra-core -e normal --prefix none | grep -E "^($forbidden) v" | sort -u) && [[ -n $found ]]; then
  echo "check-layers: chantra-core depends on an edge library:" >&2
  echo "$found" >&2
  exit 1
fi

python3 - <<'PY'
import pathlib, re, sys

# rank: a module may import modules of a strictly lower rank (and itself).
CORE = {  # crates/chantra-core/src/<module>
    "domain": 0, "clock": 0, "metrics": 0,
    "db": 1, "payload": 1, "supervisor": 1,
    "error": 2,
    "fanout": 3,
    "service": 4,
}
# src/<module>; a submodule listed on its own (`http/settings`) is its own
# unit, every other file belongs to the longest listed prefix of its path.
BIN = {
    "role": 0, "metrics": 0, "telemetry": 0,
    "client/args": 0,  # the client commands' flags, named by cli.rs
    "cli": 1,
    "http/error": 1, "http/stream_conn": 1, "http/serve": 1,
    # each part's settings type lives beside it, below the code that uses it
    "http/settings": 2, "http/landing/settings": 2, "mcp/settings": 2,
    "http/extract": 3, "http/rate_limit": 3,
    "http/streams": 4,
    "state": 5,
    "http/health": 6, "http/rest": 6, "http/channels": 6, "mcp": 6,
    "http/landing": 7,
    "http": 8,
    "config": 9,
    "app": 10,
    "client": 10,  # the client commands: HTTP to a running server, nothing of the server's code
    "commands": 11,
}

def unit_for(parts, table):
    """The longest prefix of a module path that has a rank, or None."""
    for n in range(len(parts), 0, -1):
        name = "/".join(parts[:n])
        if name in table:
            return name
    return None

def check(root, table):
    bad = []
    for path in sorted(root.rglob("*.rs")):
        if path.name in ("lib.rs", "main.rs"):
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "mod":
            parts.pop()
        unit = unit_for(parts, table)
        if unit is None:
            bad.append(f"{path}: module `{'/'.join(parts)}` has no rank in scripts/check-layers.sh")
            continue
        text = path.read_text()
        # `crate::a::b::C` and `use crate::{a, b::c}`
        targets = []
        for m in re.finditer(r"crate::(\{[^}]*\}|[a-z_]+(?:::[a-z_]+)*)", text):
            group = m.group(1)
            if group.startswith("{"):
                targets += [t.strip() for t in group[1:-1].split(",") if t.strip()]
            else:
                targets.append(group)
        for target in targets:
            name = unit_for(target.split("::"), table)
            if name is None or name == unit:
                continue
            if table[name] >= table[unit]:
                bad.append(f"{path}: `{unit}` (rank {table[unit]}) imports `{name}` (rank {table[name]})")
    return bad

bad = check(pathlib.Path("crates/chantra-core/src"), CORE) + check(pathlib.Path("src"), BIN)
for line in bad:
    print("check-layers:", line, file=sys.stderr)
if bad:
    sys.exit(1)
print("check-layers: every import points down")
PY

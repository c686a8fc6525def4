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
BIN = {  # src/<module>, http split by submodule
    "cli": 0, "metrics": 0, "telemetry": 0,
    "http/error": 1, "http/stream_conn": 1, "http/serve": 1,
    "http/extract": 2, "http/rate_limit": 2, "http/streams": 2,
    "state": 3,
    "http/health": 4, "http/rest": 4, "http/channels": 4, "mcp": 4,
    "http/landing": 5,
    "http": 6,
    "config": 7,
    "app": 8,
    "commands": 9,
}

def unit_of(root, path, split_http):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if split_http and parts[0] == "http" and len(parts) > 1:
        return "http/" + parts[1]
    return parts[0]

def check(root, table, split_http):
    bad = []
    for path in sorted(root.rglob("*.rs")):
        if path.name in ("lib.rs", "main.rs"):
            continue
        unit = unit_of(root, path, split_http)
        if unit not in table:
            bad.append(f"{path}: module `{unit}` has no rank in scripts/check-layers.sh")
            continue
        text = path.read_text()
        # `crate::a::b` and `use crate::{a, b::c}`
        targets = []
        for m in re.finditer(r"crate::(\{[^}]*\}|[a-z_]+(?:::[a-z_]+)?)", text):
            group = m.group(1)
            if group.startswith("{"):
                targets += [t.strip().split("::")[0] for t in group[1:-1].split(",") if t.strip()]
            else:
                targets.append(group)
        for target in targets:
            head, _, sub = target.partition("::")
            name = f"http/{sub}" if split_http and head == "http" and sub and f"http/{sub}" in table else head
            if name == unit or name in ("self", "super"):
                continue
            if name not in table:
                continue
            if table[name] >= table[unit]:
                bad.append(f"{path}: `{unit}` (rank {table[unit]}) imports `{name}` (rank {table[name]})")
    return bad

bad = check(pathlib.Path("crates/chantra-core/src"), CORE, False) + check(pathlib.Path("src"), BIN, True)
for line in bad:
    print("check-layers:", line, file=sys.stderr)
if bad:
    sys.exit(1)
print("check-layers: every import points down")
PY

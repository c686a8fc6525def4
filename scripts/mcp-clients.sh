#!/usr/bin/env bash
# Checks the mcp role with real third-party MCP clients against a running
# `chantra serve --role all`:
#   1. the official Python MCP SDK (tests/mcp_clients/sdk_client.py): tools,
#      schemas, annotations and the whole channel life cycle, over Streamable
#      HTTP (/mcp) and over the legacy HTTP+SSE transport (sse_client, /sse);
#   1b. an agent loop on wait_for_messages with the same SDK
#      (tests/mcp_clients/wait_client.py): 100 messages published through REST,
#      each seen once, in order, within 1 s, with both protocol revisions the
#      SDK speaks (2025-11-25 handshake, 2026-07-28 discover); then again with the publish on
#      another process (rest + channels) and the wait on an mcp-only process,
#      both on PostgreSQL (a scratch database, dropped after; PostgreSQL at
#      127.0.0.1:5432 is started if down, as scripts/test-env.sh does);
#   1b'. channels as resources with the same SDK (tests/mcp_clients/resource_client.py):
#      the template, resources/read, and a subscription (resources/subscribe with
#      2025-11-25, subscriptions/listen with 2026-07-28) notified within 1 s of
#      each REST publish; again across processes on PostgreSQL;
#   1c. the MCP Inspector CLI (tests/mcp_clients/inspector_client.py): tools
#      listed and called with integer arguments over /mcp and /sse, with no
#      Ajv complaint about the schemas;
#   2. the MCP conformance suite (@modelcontextprotocol/conformance), active
#      suite, with tests/mcp_clients/conformance-expected-failures.yml;
#   3. the pending `server-sse-polling` scenario, reported only (never fails
#      this script).
#
# Uses, from $CHANTRA_TOOLS_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools),
# the pinned Python venv with `mcp` (mcp-venv/) and Node 22 plus the
# conformance suite (node/), the MCP Inspector (inspector/), which
# `bash scripts/setup-test-tools.sh` installs;
# fails naming that script when they are missing.
# Builds target/debug/chantra if missing (CHANTRA_BIN picks another binary).
# Exits non-zero if the Python client or the conformance suite fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# TOOLS and the pinned versions (MCP_PY_VERSION, NODE_VERSION, CONFORMANCE_VERSION).
# shellcheck source=scripts/lib/test-tools.sh
source "$ROOT/scripts/lib/test-tools.sh"
BIN=${CHANTRA_BIN:-$ROOT/target/debug/chantra}
EXPECTED=$ROOT/tests/mcp_clients/conformance-expected-failures.yml
started=$(date +%s)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'mcp-clients: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------

require_tools mcp-sdk node conformance inspector
# Node 22 first on PATH (the suite needs Node >= 22).
export PATH=$TOOLS/node/node_modules/.bin:$PATH

# npx from the tools folder only (never a download); quiet npm's own warnings.
conformance() { (cd "$TOOLS/node" && npm_config_loglevel=error npx --no-install conformance "$@"); }

# --- server ------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-mcp-clients.XXXXXX")
# Also installs the EXIT trap that stops the server and removes $WORK.
# shellcheck source=scripts/lib/chantra-server.sh
source "$ROOT/scripts/lib/chantra-server.sh"

# --- run ---------------------------------------------------------------------

log "tools: python mcp $MCP_PY_VERSION, node $(node --version), conformance $(conformance --version)"

if [[ ! -x $BIN ]]; then
  log "building chantra (cargo build)"
  cargo build --bin chantra
fi
# Progress notifications every 2 s, so a short wait sees some.
CHANTRA_SSE_KEEPALIVE_SECS=2 start_chantra

sdk_status=0
log "Python MCP SDK client against $MCP_URL/mcp"
timeout 120 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/sdk_client.py "$MCP_URL/mcp" || sdk_status=$?
log "Python MCP SDK client (sse_client, legacy HTTP+SSE) against $MCP_URL/sse"
timeout 120 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/sdk_client.py "$MCP_URL/sse" || sdk_status=$?

inspector_status=0
log "MCP Inspector CLI $INSPECTOR_VERSION against $MCP_URL/mcp and /sse"
timeout 300 python3 tests/mcp_clients/inspector_client.py "$TOOLS/inspector/node_modules/.bin/mcp-inspector" "$MCP_URL" \
  || inspector_status=$?

wait_status=0
log "Python MCP SDK agent loop on wait_for_messages (one process, SQLite)"
timeout 180 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/wait_client.py "$MCP_URL/mcp" "$REST_URL" "one process" \
  || wait_status=$?
# The same with the SDK's other protocol revision (2026-07-28: server/discover, no session).
timeout 180 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/wait_client.py --modern "$MCP_URL/mcp" "$REST_URL" "one process" \
  || wait_status=$?

resource_status=0
log "Python MCP SDK: channel resources, read and subscribed (one process, SQLite, both revisions)"
timeout 120 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/resource_client.py "$MCP_URL/mcp" "$REST_URL" "one process" \
  || resource_status=$?
timeout 120 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/resource_client.py --modern "$MCP_URL/mcp" "$REST_URL" "one process" \
  || resource_status=$?

# The publish on one process, the wait on another: PostgreSQL carries the notice.
# shellcheck source=scripts/test-env.sh
source "$ROOT/scripts/test-env.sh"
PG_DB=chantra_mcp_wait_$$
PG_PIDS=()
stop_pg_pair() {
  local pid
  for pid in "${PG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PG_PIDS=()
  psql -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U postgres -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
}
# Starts `chantra serve --role $1` with the shared database and payload folder; $2..: NAME=port pairs.
start_pg_role() {
  local roles=$1 url=$2; shift 2
  (cd "$WORK" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${RUST_LOG:-info}" \
    DATABASE_URL="postgres://postgres@$POSTGRES_HOST:$POSTGRES_PORT/$PG_DB" DATA_DIR="$WORK/pg-data" \
    TOKEN_SECRET_SALT=mcp-clients-wait-salt-0123456789 RATE_LIMIT_PER_SECOND=0 MCP_MAX_SESSIONS_PER_IP=1000 \
    "$@" "$BIN" serve --role "$roles") >>"$WORK/pg-$roles.log" 2>&1 &
  PG_PIDS+=($!)
  local deadline=$((SECONDS + 60))
  until curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 20 "$WORK/pg-$roles.log" >&2; return 1; }
    sleep 0.2
  done
}
trap 'stop_pg_pair; cleanup' EXIT
pg_status=0
log "Python MCP SDK agent loop on wait_for_messages (publish on another process, PostgreSQL)"
if ensure_postgres && psql -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null; then
  read -r pg_rest pg_channels pg_mcp < <(free_ports 3)
  if start_pg_role rest,channels "http://127.0.0.1:$pg_rest" REST_ADDR="127.0.0.1:$pg_rest" CHANNELS_ADDR="127.0.0.1:$pg_channels" \
    && start_pg_role mcp "http://127.0.0.1:$pg_mcp" MCP_ADDR="127.0.0.1:$pg_mcp" SSE_KEEPALIVE_SECS=2; then
    timeout 180 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/wait_client.py \
      "http://127.0.0.1:$pg_mcp/mcp" "http://127.0.0.1:$pg_rest" "two processes, PostgreSQL" || pg_status=$?
    timeout 120 "$TOOLS/mcp-venv/bin/python" tests/mcp_clients/resource_client.py \
      "http://127.0.0.1:$pg_mcp/mcp" "http://127.0.0.1:$pg_rest" "two processes, PostgreSQL" || pg_status=$?
  else
    pg_status=1
  fi
else
  log "PostgreSQL unavailable"
  pg_status=1
fi
stop_pg_pair

conf_status=0
log "conformance suite (active) against $MCP_URL/mcp"
timeout 600 conformance server --url "$MCP_URL/mcp" --suite active \
  --expected-failures "$EXPECTED" --output-dir "$WORK/conformance" >"$WORK/conformance.txt" 2>&1 || conf_status=$?
# The per-scenario progress lines are noise; keep the summary and the baseline verdict.
sed -n '/=== SUMMARY ===/,$p' "$WORK/conformance.txt"
if [[ $conf_status != 0 ]] && ! grep -q '=== SUMMARY ===' "$WORK/conformance.txt"; then
  tail -n 40 "$WORK/conformance.txt"
fi
summary=$(grep -E '^Total: [0-9]+ passed, [0-9]+ failed' "$WORK/conformance.txt" || echo "no summary line")

log "pending scenario server-sse-polling (reported, not enforced)"
polling_status=0
timeout 120 conformance server --url "$MCP_URL/mcp" --scenario server-sse-polling \
  --output-dir "$WORK/polling" >"$WORK/polling.txt" 2>&1 || polling_status=$?
python3 - "$WORK/polling" <<'EOF' || true
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/*/checks.json")):
    for check in json.load(open(path)):
        if check["status"] != "INFO":
            note = check.get("errorMessage") or ""
            print(f"  {check['status']:<8} {check['id']}: {check['description']}" + (f" -- {note}" if note else ""))
EOF
grep -E '^Passed: ' "$WORK/polling.txt" | sed 's/^/  server-sse-polling: /' || true
echo "  (exit status $polling_status)"

stop_chantra
echo
echo "python sdk client: $([[ $sdk_status == 0 ]] && echo passed || echo "FAILED ($sdk_status)")"
echo "inspector cli:     $([[ $inspector_status == 0 ]] && echo passed || echo "FAILED ($inspector_status)")"
echo "wait (1 process):  $([[ $wait_status == 0 ]] && echo passed || echo "FAILED ($wait_status)")"
echo "resources:        $([[ $resource_status == 0 ]] && echo passed || echo "FAILED ($resource_status)")"
echo "wait + resources (PostgreSQL): $([[ $pg_status == 0 ]] && echo passed || echo "FAILED ($pg_status)")"
echo "conformance:       $([[ $conf_status == 0 ]] && echo passed || echo "FAILED ($conf_status)") -- $summary"
echo "mcp-clients finished in $(($(date +%s) - started)) s"
[[ $sdk_status == 0 && $inspector_status == 0 && $wait_status == 0 && $resource_status == 0 && $pg_status == 0 && $conf_status == 0 ]]

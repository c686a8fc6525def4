# shellcheck shell=bash
# Shared by the scripts that test a running `chantra serve --role all`
# (mcp-clients.sh, browser-test.sh). Source it after defining `log`, `die`,
# `BIN` (the chantra binary) and `WORK` (a temporary folder). It provides
# start_chantra / stop_chantra and, once started, the URL of each role:
# REST_URL, CHANNELS_URL, MCP_URL, LANDING_URL. It installs the EXIT trap that
# stops the server and removes $WORK (kept with KEEP_WORK=1).

SERVER_PID=

# shellcheck disable=SC2317 # called from traps
stop_chantra() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}

# shellcheck source=scripts/lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# Starts every role on free loopback ports, on SQLite + files under $WORK,
# with rate limiting off, and waits until each role answers /healthz.
# CHANTRA_SSE_KEEPALIVE_SECS (default 15) sets SSE_KEEPALIVE_SECS, which also
# paces MCP progress notifications.
start_chantra() {
  local rest channels mcp landing
  read -r rest channels mcp landing < <(free_ports 4)
  REST_URL=http://127.0.0.1:$rest
  CHANNELS_URL=http://127.0.0.1:$channels
  MCP_URL=http://127.0.0.1:$mcp
  LANDING_URL=http://127.0.0.1:$landing
  mkdir -p "$WORK/server"
  log "starting $BIN serve --role all (rest :$rest, channels :$channels, mcp :$mcp, landing :$landing)"
  # A clean environment: nothing from the caller (DATABASE_URL, S3_*, ...) leaks in.
  # Every test client comes from 127.0.0.1: the per-client rate limit is off, and
  # the per-client MCP session cap (20) is raised because the conformance suite
  # opens a session per scenario and never closes them (the caps have their own
  # tests in tests/api/mcp.rs and tests/faults/mcp_sessions.rs).
  (cd "$WORK/server" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${RUST_LOG:-info}" \
    REST_ADDR="127.0.0.1:$rest" CHANNELS_ADDR="127.0.0.1:$channels" \
    MCP_ADDR="127.0.0.1:$mcp" LANDING_ADDR="127.0.0.1:$landing" \
    LANDING_REST_URL="$REST_URL" CHANNEL_BASE_URL="$CHANNELS_URL" MCP_PUBLIC_URL="$MCP_URL" \
    DATABASE_URL="sqlite://$WORK/server/data/chantra.db?mode=rwc" DATA_DIR="$WORK/server/data" \
    RATE_LIMIT_PER_SECOND=0 MCP_MAX_SESSIONS_PER_IP=1000 \
    SSE_KEEPALIVE_SECS="${CHANTRA_SSE_KEEPALIVE_SECS:-15}" \
    "$BIN" serve --role all) >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 60)) url
  for url in "$REST_URL" "$CHANNELS_URL" "$MCP_URL" "$LANDING_URL"; do
    until curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$WORK/server.log" >&2; die "the server exited during startup"
      fi
      if ((SECONDS >= deadline)); then
        tail -n 20 "$WORK/server.log" >&2; die "no /healthz answer from $url within 60 s"
      fi
      sleep 0.2
    done
  done
}

# shellcheck disable=SC2317 # called from the trap
cleanup() {
  stop_chantra
  if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

#!/usr/bin/env bash
# Real-browser test of the landing role's /playground (tests/browser/playground.mjs)
# against a `chantra serve --role all` started here on free loopback ports.
#
# Installs, only when missing:
#   - Debian's chromium (/usr/bin/chromium) with apt-get (needs root);
#   - playwright-core (pinned) with npm into $CHANTRA_TOOLS_DIR/browser
#     (default ${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools/browser). Never a
#     browser download: playwright-core drives the Debian Chromium.
# Builds target/debug/chantra if missing (CHANTRA_BIN picks another binary;
# CHANTRA_BUILD=1 rebuilds first). Writes target/playground.png and
# target/playground-private.png. KEEP_WORK=1 keeps the server's temp dir and log.
# Exits non-zero if the test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PLAYWRIGHT_VERSION=1.65.1
NODE_MIN_MAJOR=20 # playwright-core 1.65 needs Node >= 20

TOOLS=${CHANTRA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools}
BROWSER_TOOLS=$TOOLS/browser
BIN=${CHANTRA_BIN:-$ROOT/target/debug/chantra}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
started=$(date +%s)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'browser-test: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------

ensure_chromium() {
  [[ -x $CHROMIUM ]] && return
  [[ $CHROMIUM == /usr/bin/chromium ]] || die "CHROMIUM=$CHROMIUM is not executable"
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and there is no apt-get to install Debian's chromium"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "/usr/bin/chromium is missing: install Debian's chromium as root (apt-get install chromium)"
    sudo=(sudo -n)
  fi
  log "installing Debian's chromium (apt-get)"
  timeout 300 "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
  [[ -x $CHROMIUM ]] || die "apt-get installed chromium but $CHROMIUM is still missing"
}

ensure_node() {
  command -v node >/dev/null || die "node is missing (Node >= $NODE_MIN_MAJOR; Debian: apt-get install nodejs npm)"
  command -v npm >/dev/null || die "npm is missing"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  ((major >= NODE_MIN_MAJOR)) || die "node $(node --version) is too old: playwright-core $PLAYWRIGHT_VERSION needs Node >= $NODE_MIN_MAJOR"
}

ensure_playwright() {
  local have
  have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$BROWSER_TOOLS/node_modules/playwright-core/package.json" 2>/dev/null || true)
  if [[ $have != "$PLAYWRIGHT_VERSION" ]]; then
    log "installing playwright-core@$PLAYWRIGHT_VERSION into $BROWSER_TOOLS"
    mkdir -p "$BROWSER_TOOLS"
    [[ -f $BROWSER_TOOLS/package.json ]] || echo '{ "private": true }' >"$BROWSER_TOOLS/package.json"
    # playwright-core has no install script; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD makes sure nothing is fetched.
    (cd "$BROWSER_TOOLS" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 \
      npm install --no-audit --no-fund --save-exact --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION")
  fi
  export NODE_PATH=$BROWSER_TOOLS/node_modules${NODE_PATH:+:$NODE_PATH}
  node -e 'require("playwright-core")' 2>/dev/null || die "playwright-core did not install into $BROWSER_TOOLS"
}

# --- server ------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-browser.XXXXXX")
SERVER_PID=

# shellcheck disable=SC2317 # called from the trap
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
# shellcheck disable=SC2317 # called from the trap
cleanup() {
  stop_server
  if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # prints N distinct free loopback ports
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

start_server() {
  local rest channels mcp landing
  read -r rest channels mcp landing < <(free_ports 4)
  LANDING_URL=http://127.0.0.1:$landing
  mkdir -p "$WORK/server"
  log "starting $BIN serve --role all (landing $LANDING_URL, rest :$rest, channels :$channels, mcp :$mcp)"
  # A clean environment: nothing from the caller (DATABASE_URL, S3_*, ...) leaks in.
  (cd "$WORK/server" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    REST_ADDR="127.0.0.1:$rest" CHANNELS_ADDR="127.0.0.1:$channels" \
    MCP_ADDR="127.0.0.1:$mcp" LANDING_ADDR="127.0.0.1:$landing" \
    LANDING_REST_URL="http://127.0.0.1:$rest" CHANNEL_BASE_URL="http://127.0.0.1:$channels" \
    MCP_PUBLIC_URL="http://127.0.0.1:$mcp" \
    DATABASE_URL="sqlite://$WORK/server/data/chantra.db?mode=rwc" DATA_DIR="$WORK/server/data" \
    RATE_LIMIT_PER_SECOND=0 \
    "$BIN" serve --role all) >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS --max-time 1 "$LANDING_URL/healthz" >/dev/null 2>&1 &&
        curl -fsS --max-time 1 "http://127.0.0.1:$rest/healthz" >/dev/null 2>&1 &&
        curl -fsS --max-time 1 "http://127.0.0.1:$channels/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 20 "$WORK/server.log" >&2; die "the server exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$WORK/server.log" >&2; die "no /healthz answer within 60 s"
    fi
    sleep 0.2
  done
}

# --- run ---------------------------------------------------------------------

ensure_chromium
ensure_node
ensure_playwright
log "tools: $("$CHROMIUM" --version 2>/dev/null), node $(node --version), playwright-core $PLAYWRIGHT_VERSION"

if [[ ! -x $BIN || ${CHANTRA_BUILD:-0} == 1 ]]; then
  log "building chantra (cargo build)"
  cargo build --bin chantra
fi
start_server

mkdir -p "$ROOT/target"
rm -f "$ROOT/target/playground.png" "$ROOT/target/playground-private.png"
status=0
log "tests/browser/playground.mjs against $LANDING_URL"
CHROMIUM=$CHROMIUM timeout 180 node tests/browser/playground.mjs "$LANDING_URL" \
  --screenshot "$ROOT/target/playground.png" || status=$?
if [[ $status != 0 ]]; then
  log "server log (last 30 lines):"
  tail -n 30 "$WORK/server.log" >&2
fi
stop_server
log "browser-test finished in $(($(date +%s) - started)) s"
exit "$status"

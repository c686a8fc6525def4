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
# Also installs the EXIT trap that stops the server and removes $WORK.
# shellcheck source=scripts/lib/chantra-server.sh
source "$ROOT/scripts/lib/chantra-server.sh"

# --- run ---------------------------------------------------------------------

ensure_chromium
ensure_node
ensure_playwright
log "tools: $("$CHROMIUM" --version 2>/dev/null), node $(node --version), playwright-core $PLAYWRIGHT_VERSION"

if [[ ! -x $BIN || ${CHANTRA_BUILD:-0} == 1 ]]; then
  log "building chantra (cargo build)"
  cargo build --bin chantra
fi
start_chantra

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
stop_chantra
log "browser-test finished in $(($(date +%s) - started)) s"
exit "$status"

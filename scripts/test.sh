#!/usr/bin/env bash
# Runs the whole test suite:
#   1. the Rust suite (unit + tests/api) on both backend pairs:
#        SQLite + filesystem            (nothing to start)
#        PostgreSQL + S3 (garage)       (started here if needed)
#      (tests/faults: the fault-injection suite; tests/props: property tests)
#   2. real MCP clients: the official Python SDK and the MCP conformance suite,
#      then Schemathesis against /openapi.json
#   3. the playground in headless Chromium
#   4. the deployment files (compose, Caddyfile, Dockerfile, a real Caddy edge)
#   5. the load tool (chantra-load) once at a tiny size
#
# Needs: Rust (cargo), PostgreSQL installed locally (started if it is down),
# and the test tools (cargo-nextest, garage, strace, nats-server, chromium, caddy, the venvs
# and Node tools under ~/.cache/chantra-tools). This script installs nothing:
# run `bash scripts/setup-test-tools.sh` first (once; later runs are no-ops).
# A missing tool fails at the start, naming that script.
# Extra arguments go to `cargo nextest run` and skip steps 2-5,
# e.g. `bash scripts/test.sh rest_publish`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh

# Every tool the run will use, checked before the long Rust suite rather than
# after it: a targeted run needs the Rust suite's tools only.
if [[ $# -eq 0 ]]; then
  require_tools "${TEST_TOOLS[@]}"
else
  require_tools cargo-nextest garage strace nats-server
fi

ensure_postgres
ensure_garage_installed
start_garage
ensure_nats_server
trap 'stop_garage; stop_nats_server' EXIT

# Snapshots are checked, never rewritten, in a test run.
export INSTA_UPDATE="${INSTA_UPDATE:-no}"
started=$(date +%s)
cargo nextest run --workspace --no-fail-fast "$@"
echo "rust suite finished in $(( $(date +%s) - started )) s" >&2

if [[ $# -eq 0 ]]; then
  # The binary the Rust suite just built serves steps 2-4.
  cargo build --bin chantra
  bash scripts/mcp-clients.sh
  bash scripts/schemathesis.sh
  CHANTRA_BUILD=0 bash scripts/browser-test.sh
  CHANTRA_BIN=target/debug/chantra bash scripts/check-deploy.sh
  # The load tool at a tiny size, to prove it works (benchmarks are not tests: docs/BENCHMARKS.md).
  bash scripts/bench.sh --smoke
fi
echo "test suite finished in $(( $(date +%s) - started )) s" >&2

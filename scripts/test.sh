#!/usr/bin/env bash
# Runs the whole test suite on both backend pairs:
#   SQLite + filesystem            (nothing to start)
#   PostgreSQL + S3 (garage)       (started here if needed)
#
# Needs: Rust (cargo), PostgreSQL installed locally (started if it is down).
# Installs once: cargo-nextest (if missing), garage (~8 min, cached in ~/.cargo/bin).
# Extra arguments go to `cargo nextest run`, e.g. `bash scripts/test.sh rest_publish`.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/test-env.sh

ensure_postgres
ensure_garage_installed
start_garage
trap stop_garage EXIT

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (once)..." >&2
  cargo install cargo-nextest --locked
fi

# Snapshots are checked, never rewritten, in a test run.
export INSTA_UPDATE="${INSTA_UPDATE:-no}"
started=$(date +%s)
cargo nextest run --workspace --no-fail-fast "$@"
echo "test suite finished in $(( $(date +%s) - started )) s" >&2

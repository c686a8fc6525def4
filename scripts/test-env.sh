# shellcheck shell=bash
#
# Real backends for the integration tests: PostgreSQL, an S3 server (garage)
# and NATS (nats-server).
#
# This file is meant to be *sourced* (by scripts/test.sh and .ci/run), not run:
#
#   source scripts/test-env.sh
#   ensure_postgres
#   ensure_garage_installed
#   start_garage
#   ensure_nats_server
#   trap 'stop_garage; stop_nats_server' EXIT
#
# It starts and stops services; it installs nothing. garage (and every other
# test tool) comes from scripts/setup-test-tools.sh, and a missing one fails
# with a message naming that script.
#
# Every function returns non-zero with a message on stderr when it fails, so
# callers running under `set -euo pipefail` stop at the first problem.
#
# After start_garage these are exported (tests/api/helpers.rs reads them):
#   CHANTRA_TEST_S3_ENDPOINT    http://127.0.0.1:<port>
#   CHANTRA_TEST_S3_ACCESS_KEY  key id of a key allowed to create buckets
#   CHANTRA_TEST_S3_SECRET_KEY  its secret
#   CHANTRA_TEST_S3_BUCKET      chantra-test (already exists, key has read/write/owner)
# After ensure_nats_server:
#   CHANTRA_TEST_NATS_SERVER    the nats-server program the NATS tests start
#
# If CHANTRA_TEST_S3_ENDPOINT is already set, start_garage leaves your S3
# server alone and starts nothing.

POSTGRES_HOST=127.0.0.1
POSTGRES_PORT=5432

# Region garage is configured with. Garage checks the region in request
# signatures, so clients must sign with this one (it is also chantra's default).
GARAGE_S3_REGION=us-east-1

# Set by start_garage, used by stop_garage.
GARAGE_PID=""
GARAGE_DIR=""

# ---------------------------------------------------------------- PostgreSQL

ensure_postgres() {
    if pg_isready -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT"; then
        return 0
    fi

    echo "PostgreSQL is not running on $POSTGRES_HOST:$POSTGRES_PORT; starting it." >&2
    local version
    version=$(ls /etc/postgresql)
    # --skip-systemctl-redirect: there is no systemd in these containers.
    if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
        echo "error: could not start PostgreSQL cluster $version/main" >&2
        return 1
    fi

    local waited=0
    while ! pg_isready -q -h "$POSTGRES_HOST" -p "$POSTGRES_PORT"; do
        if [ "$waited" -ge 30 ]; then
            echo "error: PostgreSQL did not accept connections on $POSTGRES_HOST:$POSTGRES_PORT within 30 s" >&2
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# -------------------------------------------------------------------- garage

# Versions, locations and presence checks of the test tools (garage among them).
# shellcheck source=scripts/lib/test-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-tools.sh"

# Path of the garage binary, set by ensure_garage_installed.
GARAGE_BIN=""

# Finds the garage binary (on PATH, or in cargo's bin folder where
# scripts/setup-test-tools.sh puts it). Installs nothing: a missing garage
# fails, naming the setup script.
ensure_garage_installed() {
    require_tools garage || return 1
    if command -v garage >/dev/null 2>&1; then
        GARAGE_BIN=$(command -v garage)
    else
        GARAGE_BIN="$CARGO_BIN/garage"
    fi
}

# Succeeds when something is listening on 127.0.0.1:$1.
# Uses bash's /dev/tcp so we need neither nc nor ss.
port_in_use() {
    (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sets GARAGE_S3_PORT, GARAGE_RPC_PORT and GARAGE_ADMIN_PORT to free ports.
# Garage's usual ports are 3900 (S3), 3901 (RPC) and 3903 (admin); if any of
# them is taken (e.g. another test run), try the same layout 10 ports higher.
pick_garage_ports() {
    local base
    for base in 3900 3910 3920 3930 3940 3950 3960 3970 3980 3990; do
        if ! port_in_use "$base" && ! port_in_use $((base + 1)) && ! port_in_use $((base + 3)); then
            GARAGE_S3_PORT=$base
            GARAGE_RPC_PORT=$((base + 1))
            GARAGE_ADMIN_PORT=$((base + 3))
            return 0
        fi
    done
    echo "error: no free ports for garage between 3900 and 3993" >&2
    return 1
}

random_hex() {
    # $1 = number of random bytes; prints twice as many hex characters.
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

# Runs the garage CLI against the node started by start_garage,
# e.g. `garage_cli bucket list`.
garage_cli() {
    "$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" "$@"
}

start_garage() {
    if [ -n "${CHANTRA_TEST_S3_ENDPOINT:-}" ]; then
        echo "Using the S3 server at $CHANTRA_TEST_S3_ENDPOINT (CHANTRA_TEST_S3_ENDPOINT is set)." >&2
        return 0
    fi
    if [ -z "$GARAGE_BIN" ]; then
        ensure_garage_installed || return 1
    fi

    pick_garage_ports || return 1
    GARAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/chantra-garage.XXXXXX")

    # A throwaway single-node store: sqlite metadata, no replication.
    cat >"$GARAGE_DIR/garage.toml" <<EOF
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$(random_hex 32)"

[s3_api]
s3_region = "$GARAGE_S3_REGION"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
EOF

    # Key id in garage's own format (GK + 24 hex); any id of >= 8 characters works.
    local access_key secret_key bucket=chantra-test
    access_key="GK$(random_hex 12)"
    secret_key=$(random_hex 32)

    # --single-node sets up the cluster layout; --default-bucket creates the
    # key and the bucket (key gets read/write/owner on it) before the S3 port
    # opens. Garage gives this default key the create-bucket permission, so
    # the app can create its own bucket with S3 CreateBucket.
    GARAGE_DEFAULT_ACCESS_KEY="$access_key" \
        GARAGE_DEFAULT_SECRET_KEY="$secret_key" \
        GARAGE_DEFAULT_BUCKET="$bucket" \
        "$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" server --single-node --default-bucket \
        >"$GARAGE_DIR/garage.log" 2>&1 &
    GARAGE_PID=$!

    # Garage opens the S3 port only after the layout, key and bucket exist,
    # so an open port means it is ready to serve the tests.
    local waited=0
    while ! port_in_use "$GARAGE_S3_PORT"; do
        if ! kill -0 "$GARAGE_PID" 2>/dev/null; then
            echo "error: garage exited during startup; its log ($GARAGE_DIR/garage.log):" >&2
            cat "$GARAGE_DIR/garage.log" >&2
            stop_garage
            return 1
        fi
        if [ "$waited" -ge 600 ]; then # tenths of a second: 60 s
            echo "error: garage did not open 127.0.0.1:$GARAGE_S3_PORT within 60 s; its log:" >&2
            cat "$GARAGE_DIR/garage.log" >&2
            stop_garage
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    export CHANTRA_TEST_S3_ENDPOINT="http://127.0.0.1:$GARAGE_S3_PORT"
    export CHANTRA_TEST_S3_ACCESS_KEY="$access_key"
    export CHANTRA_TEST_S3_SECRET_KEY="$secret_key"
    export CHANTRA_TEST_S3_BUCKET="$bucket"
    echo "garage is running at $CHANTRA_TEST_S3_ENDPOINT (pid $GARAGE_PID, files in $GARAGE_DIR)." >&2
}

# Stops the garage started by start_garage and deletes its data.
# Safe to call more than once, and when start_garage started nothing.
stop_garage() {
    if [ -n "$GARAGE_PID" ]; then
        kill "$GARAGE_PID" 2>/dev/null || true
        wait "$GARAGE_PID" 2>/dev/null || true
        GARAGE_PID=""
        # Only unset what we exported; a user-provided endpoint is never touched
        # because GARAGE_PID is empty in that case.
        unset CHANTRA_TEST_S3_ENDPOINT CHANTRA_TEST_S3_ACCESS_KEY CHANTRA_TEST_S3_SECRET_KEY CHANTRA_TEST_S3_BUCKET
    fi
    if [ -n "$GARAGE_DIR" ]; then
        rm -rf "$GARAGE_DIR"
        GARAGE_DIR=""
    fi
}

# ---------------------------------------------------------------- nats-server

# Set by ensure_nats_server when it started one, used by stop_nats_server.
NATS_PID=""

# The NATS tests (tests/api/fanout_nats.rs) start their own nats-server on a
# free port, so that they can stop it; they need the program, which this
# checks by running it. A shared one on 127.0.0.1:4222 (for FANOUT_URL in
# manual runs and tools) is started when none listens there. Fails, never
# skips, when nats-server is missing or cannot start.
ensure_nats_server() {
    require_tools nats-server || return 1
    if ! nats-server --version >/dev/null 2>&1; then
        echo "error: nats-server is installed but does not run" >&2
        return 1
    fi
    export CHANTRA_TEST_NATS_SERVER
    CHANTRA_TEST_NATS_SERVER=$(command -v nats-server)
    if port_in_use 4222; then
        return 0
    fi
    nats-server -a 127.0.0.1 -p 4222 >/dev/null 2>&1 &
    NATS_PID=$!
    local waited=0
    while ! port_in_use 4222; do
        if ! kill -0 "$NATS_PID" 2>/dev/null || [ "$waited" -ge 100 ]; then
            echo "error: nats-server did not listen on 127.0.0.1:4222 within 10 s" >&2
            NATS_PID=""
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

stop_nats_server() {
    if [ -n "$NATS_PID" ]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        NATS_PID=""
    fi
}

# Chantra recipes. `just --list` shows them all.
# Nothing here is required: every recipe is a plain command you can copy.

set dotenv-load := false

default:
    @just --list

# Run every role on the embedded default (SQLite + files under ./data).
run:
    cargo run --release -- serve --role all

# Same as run: all roles in one process.
run-all:
    cargo run --release -- serve --role all

# Only the REST API (:8081).
run-rest:
    cargo run --release -- serve --role rest

# Only the SSE channels role (:8070).
run-channels:
    cargo run --release -- serve --role channels

alias run-channel-connections := run-channels

# Only the MCP server (:8090).
run-mcp:
    cargo run --release -- serve --role mcp

# Only the landing pages (:8080).
run-landing:
    cargo run --release -- serve --role landing

# Release build of the binary.
build:
    cargo build --release

# Whole suite on both backend pairs (installs the test tools once; starts PostgreSQL if stopped, and garage).
test:
    bash scripts/setup-test-tools.sh && bash scripts/test.sh

# Unit tests only (no backends needed).
test-unit:
    cargo nextest run --lib --bins

# Integration tests only, both backend pairs.
test-integration:
    bash scripts/test.sh --test api

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Apply pending migrations to DATABASE_URL (default: the embedded SQLite file).
migrate-up:
    cargo run --release -- migrate up

# Roll back the last migration. DESTROYS the data in the tables it drops.
migrate-down:
    cargo run --release -- migrate down

# Cost of one token hash.
bench-token-hash:
    cargo bench --bench token_hash

# --- Containers and deployment (docs/DEPLOYMENT.md) ---------------------------------

# Local stack in Docker: PostgreSQL, MinIO and the four roles (compose.yaml).
docker-up:
    docker compose -p chantra -f compose.yaml up -d --build

# Stop the local stack (its volumes stay; `docker compose -p chantra down -v` drops them).
docker-down:
    docker compose -p chantra -f compose.yaml down

# Secrets come from the environment or from CHANTRA_ENV_FILE (default .env.prod).
# Build and start production on the `pdfturn` docker context; refuses without TOKEN_SECRET_SALT.
deploy-prod:
    #!/usr/bin/env bash
    set -euo pipefail
    env_file="${CHANTRA_ENV_FILE:-.env.prod}"
    if [[ -f "$env_file" ]]; then set -a; source "$env_file"; set +a; else env_file=$(mktemp); trap 'rm -f "$env_file"' EXIT; fi
    if [[ -z "${TOKEN_SECRET_SALT:-}" ]]; then
        echo "deploy-prod: TOKEN_SECRET_SALT is not set (export it or put it in .env.prod). Refusing to deploy." >&2
        echo "             It keys every token hash: use the production value, never a new one (that invalidates all tokens)." >&2
        exit 1
    fi
    export CHANTRA_TAG="${CHANTRA_TAG:-$(git rev-parse --short=12 HEAD)}"
    echo "deploy-prod: chantra:$CHANTRA_TAG for ${CHANTRA_DOMAIN:-chantra.example.com} on docker context pdfturn"
    # --env-file: never interpolate from a developer's .env.
    docker --context pdfturn compose -p chantra --env-file "$env_file" -f compose.prod.yaml up -d --build

# Roll production back to an earlier image tag (see docs/DEPLOYMENT.md before crossing a migration).
deploy-prod-rollback tag:
    #!/usr/bin/env bash
    set -euo pipefail
    env_file="${CHANTRA_ENV_FILE:-.env.prod}"
    if [[ -f "$env_file" ]]; then set -a; source "$env_file"; set +a; else env_file=$(mktemp); trap 'rm -f "$env_file"' EXIT; fi
    if [[ -z "${TOKEN_SECRET_SALT:-}" ]]; then echo "deploy-prod-rollback: TOKEN_SECRET_SALT is not set. Refusing." >&2; exit 1; fi
    CHANTRA_TAG={{ quote(tag) }} docker --context pdfturn compose -p chantra --env-file "$env_file" -f compose.prod.yaml up -d --no-build

# Stop production (volumes, certificates and data stay).
deploy-prod-down:
    #!/usr/bin/env bash
    set -euo pipefail
    env_file="${CHANTRA_ENV_FILE:-.env.prod}"
    if [[ -f "$env_file" ]]; then set -a; source "$env_file"; set +a; else env_file=$(mktemp); trap 'rm -f "$env_file"' EXIT; fi
    # `down` renders the file too; secrets not given are not needed to stop containers.
    for v in TOKEN_SECRET_SALT INTERNAL_API_TOKEN POSTGRES_PASSWORD MINIO_ROOT_PASSWORD S3_SECRET_KEY; do
        export "$v=${!v:-unused-by-down}"
    done
    docker --context pdfturn compose -p chantra --env-file "$env_file" -f compose.prod.yaml down

# Known vulnerabilities in Cargo.lock (RustSec, via cargo-audit; installed if missing).
# Exit 0: nothing known; 1: vulnerabilities or warnings (or cargo-audit failed);
# 2: the advisory database could not be fetched and no earlier copy exists, so
# NOTHING was checked: that is not a pass.
audit:
    #!/usr/bin/env bash
    set -uo pipefail
    cargo audit --version >/dev/null 2>&1 || cargo install cargo-audit --locked || exit 1
    # The database is fetched here with git, so an unreachable GitHub is told
    # apart from a finding by git's exit status, not by parsing messages.
    db="${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools/advisory-db"
    url=https://github.com/RustSec/advisory-db.git
    have_db() { git -C "$db" rev-parse -q --verify HEAD >/dev/null 2>&1; }
    if have_db; then
        timeout 120 git -C "$db" fetch -q --depth 1 origin main && git -C "$db" reset -q --hard FETCH_HEAD
    else
        rm -rf "$db" && mkdir -p "$(dirname "$db")" && timeout 120 git clone -q --depth 1 "$url" "$db"
    fi
    fetched=$?
    if (( fetched != 0 )); then
        if ! have_db; then
            echo "audit: the RustSec advisory database could not be fetched from $url (exit $fetched): NOTHING WAS CHECKED." >&2
            exit 2
        fi
        echo "audit: the RustSec advisory database could not be updated; checking against the copy of $(git -C "$db" log -1 --format=%cs)." >&2
    fi
    cargo audit --db "$db" --no-fetch --stale --deny warnings

# Validate the deployment files without Docker (compose, Caddyfile, Dockerfile, a real Caddy edge test).
check-deploy:
    bash scripts/check-deploy.sh

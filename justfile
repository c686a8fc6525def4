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

# Whole suite on both backend pairs (starts PostgreSQL if stopped, and garage).
test:
    bash scripts/test.sh

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

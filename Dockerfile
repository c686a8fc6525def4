# One image for every role. The role is chosen at run time:
#   docker run chantra serve --role rest        (or CHANTRA_ROLES=rest)
# compose.yaml and compose.prod.yaml run it four times, one role each, and give
# each service its own healthcheck (`chantra healthcheck --role <role>`).
# Linted by scripts/check-deploy.sh (hadolint).

ARG RUST_VERSION=1.95.0

# --- build ---------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /build
# make: tikv-jemalloc-sys builds jemalloc (the binary's allocator) with it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# Keep symbol names for panic backtraces, drop the debug info (a much smaller binary).
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never

# 1. Dependencies only. The manifests plus an empty stand-in for every target
#    Cargo.toml declares or cargo needs to load the workspace: the chantra
#    binary and library, the workspace crates (chantra-core, chantra-s3, chantra-nats,
#    migration), the `token_hash` bench, and the members never built here
#    (chantra-testkit, a dev-dependency of the tests; tools/chantra-load):
#    only their manifests and stand-ins are needed. This layer is rebuilt only
#    when a Cargo.toml or Cargo.lock changes. `cargo clean -p` then forgets
#    the stand-ins' artifacts so the real sources below are always
#    recompiled, whatever their timestamps.
COPY Cargo.toml Cargo.lock ./
COPY crates/chantra-core/Cargo.toml crates/chantra-core/Cargo.toml
COPY crates/chantra-s3/Cargo.toml crates/chantra-s3/Cargo.toml
COPY crates/chantra-nats/Cargo.toml crates/chantra-nats/Cargo.toml
COPY crates/chantra-testkit/Cargo.toml crates/chantra-testkit/Cargo.toml
COPY migration/Cargo.toml migration/Cargo.toml
COPY tools/chantra-load/Cargo.toml tools/chantra-load/Cargo.toml
RUN mkdir -p src migration/src benches tools/chantra-load/src \
        crates/chantra-core/src crates/chantra-s3/src crates/chantra-nats/src crates/chantra-testkit/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > tools/chantra-load/src/main.rs \
    && touch src/lib.rs migration/src/lib.rs \
        crates/chantra-core/src/lib.rs crates/chantra-s3/src/lib.rs crates/chantra-nats/src/lib.rs \
        crates/chantra-testkit/src/lib.rs \
    && echo 'fn main() {}' > benches/token_hash.rs \
    && cargo build --release --locked --bin chantra \
    && cargo clean --release --package chantra --package migration \
        --package chantra-core --package chantra-s3 --package chantra-nats \
    && rm -rf src migration/src crates/chantra-core/src crates/chantra-s3/src crates/chantra-nats/src

# 2. The application. templates/ and static/ are copied for the landing role,
#    which may embed them at compile time.
COPY src src
COPY crates/chantra-core/src crates/chantra-core/src
COPY crates/chantra-s3/src crates/chantra-s3/src
COPY crates/chantra-nats/src crates/chantra-nats/src
COPY migration/src migration/src
COPY templates templates
COPY static static
RUN cargo build --release --locked --bin chantra \
    && install -D -m 0755 target/release/chantra /out/chantra \
    && /out/chantra --version

# --- edge (compose.prod.yaml's Caddy) ------------------------------------------
# Not part of the chantra image: `docker build --target edge` bakes the
# Caddyfile into Caddy, so a remote engine (docker context) needs no bind mount.
FROM caddy:2.10.2-alpine AS edge
COPY Caddyfile /etc/caddy/Caddyfile
RUN caddy validate --config /etc/caddy/Caddyfile --adapter caddyfile

# --- runtime (the default target) ------------------------------------------------
# No packages are installed: TLS roots (S3 over https) are compiled into the
# binary (webpki-roots), and the healthcheck is the binary itself (no curl).
FROM debian:bookworm-slim AS runtime

LABEL org.opencontainers.image.title="chantra" \
      org.opencontainers.image.description="Anonymous pub/sub channels over HTTP, Server-Sent Events and MCP" \
      org.opencontainers.image.licenses="MIT"

# A fixed, unprivileged UID/GID (so volume ownership and runAsNonRoot are predictable).
RUN groupadd --system --gid 10001 chantra \
    && useradd --system --uid 10001 --gid chantra --no-create-home \
       --home-dir /var/lib/chantra --shell /usr/sbin/nologin chantra \
    && install -d -o chantra -g chantra -m 0750 /var/lib/chantra

COPY --from=builder /out/chantra /usr/local/bin/chantra

# The embedded default (SQLite + payload files) keeps its data on the volume;
# with DATABASE_URL=postgres://… and S3_ENDPOINT set, nothing is written there.
# CHANTRA_ROLES picks the roles (compose sets one per service); no --role in
# CMD, since a flag would override the variable. NO_COLOR: plain `docker logs`.
# The binary's default binds are loopback (a laptop's `serve` is not on the
# network); a container listens on every interface, and `chantra healthcheck`
# reads the same variables, probing them over loopback.
ENV CHANTRA_ROLES=all \
    REST_ADDR=0.0.0.0:8081 \
    CHANNELS_ADDR=0.0.0.0:8070 \
    MCP_ADDR=0.0.0.0:8090 \
    LANDING_ADDR=0.0.0.0:8080 \
    DATA_DIR=/var/lib/chantra \
    DATABASE_URL="sqlite:///var/lib/chantra/chantra.db?mode=rwc" \
    RUST_LOG=info \
    NO_COLOR=1
WORKDIR /var/lib/chantra
VOLUME ["/var/lib/chantra"]

USER 10001:10001

# landing, rest, channels, mcp
EXPOSE 8080 8081 8070 8090

# Matches the default CHANTRA_ROLES=all (`--role all` probes the landing port).
# A single-role container overrides it: compose gives each service
# `chantra healthcheck --role <its role>`; with plain `docker run`, pass
# --health-cmd "chantra healthcheck --role rest" (the exec form has no shell to
# read CHANTRA_ROLES, and `healthcheck` does not read it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["chantra", "healthcheck", "--role", "all"]

ENTRYPOINT ["chantra"]
CMD ["serve"]

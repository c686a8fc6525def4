#!/usr/bin/env bash
# Verifies the deployment files without a Docker engine:
#
#   1. compose.yaml and compose.prod.yaml are valid (`docker-compose config`);
#      compose.prod.yaml refuses to render without its secrets; for every
#      chantra service (image ENV + CMD + the service's environment): each
#      variable is one the binary knows, the configuration is accepted, the
#      service runs exactly its own role, and its healthcheck probes that role.
#   2. The Caddyfile is valid (`caddy validate`), formatted, and its production
#      defaults point at the compose services.
#   3. The Dockerfile passes hadolint, and its dependency-layer stand-ins cover
#      every target and workspace member Cargo.toml declares.
#   4. justfile: `just --list` parses; deploy-prod refuses to run without
#      TOKEN_SECRET_SALT and otherwise runs the documented docker command
#      (against a stand-in `docker` that only records its arguments).
#   5. The edge for real: Caddy on loopback serving the production Caddyfile
#      (plain HTTP, host names mapped to 127.0.0.1) in front of
#      `chantra serve --role all`: api./mcp./apex routing, SSE through
#      /channel unbuffered, /internal never reachable, X-Forwarded-For
#      honoured, tokens redacted from Caddy's log.
#
# Uses, as `bash scripts/setup-test-tools.sh` installs them (and fails naming
# that script when they are missing): a venv with docker-compose 1.29.2 and
# hadolint under ${XDG_CACHE_HOME:-~/.cache}/chantra-tools (CHANTRA_TOOLS_DIR),
# just (on PATH, or installed there), Debian's caddy and jq.
# CHANTRA_BIN=path uses that binary instead of `cargo build --bin chantra`.
# CHECK_DEPLOY_BUILD=1 also replays the Dockerfile's build stage with the
# local toolchain (a release build: about 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
started=$(date +%s)

# TOOLS (the tools folder) and the pinned versions.
# shellcheck source=scripts/lib/test-tools.sh
source scripts/lib/test-tools.sh
VENV="$TOOLS/venv"
DOMAIN=chantra.test            # reserved TLD: never resolves anywhere else
DUMMY_SECRET=check-deploy-dummy-secret-0123456789

failures=0
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*" >&2; failures=$((failures + 1)); }
note() { printf '  note  %s\n' "$*"; }
section() { printf '\n== %s\n' "$*"; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-check-deploy.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools ----------------------------------------------------------------------
section "tools (folder: $TOOLS)"
require_tools deploy-venv caddy just jq
COMPOSE=("$VENV/bin/docker-compose")
HADOLINT="$VENV/bin/hadolint"
PY="$VENV/bin/python"
command -v just >/dev/null 2>&1 || PATH="$TOOLS/just/bin:$PATH"
if [[ -n "${CHANTRA_BIN:-}" ]]; then
  BIN=$(realpath "$CHANTRA_BIN")
else
  cargo build --quiet --bin chantra
  BIN="$ROOT/target/debug/chantra"
fi
echo "  $("${COMPOSE[@]}" version --short 2>/dev/null | sed 's/^/docker-compose /') | $("$HADOLINT" --version) | caddy $(caddy version | cut -d' ' -f1) | $(just --version) | $("$BIN" --version)"

# --- 1. compose ------------------------------------------------------------------
section "compose files"
# Secrets for compose.prod.yaml: dummy values, only to render the file.
prod_env=(TOKEN_SECRET_SALT="$DUMMY_SECRET" INTERNAL_API_TOKEN="$DUMMY_SECRET"
  POSTGRES_PASSWORD=dummy-postgres MINIO_ROOT_PASSWORD=dummy-minio-root S3_SECRET_KEY=dummy-s3-secret)
# An empty --env-file: a developer's .env must not leak into what is checked.
NO_ENV="$WORK/empty.env"
: >"$NO_ENV"
if "${COMPOSE[@]}" --env-file "$NO_ENV" -f compose.yaml config -q; then
  pass "compose.yaml: docker-compose config"
else
  fail "compose.yaml: docker-compose config"
fi
if env "${prod_env[@]}" "${COMPOSE[@]}" --env-file "$NO_ENV" -f compose.prod.yaml config -q; then
  pass "compose.prod.yaml: docker-compose config (dummy secrets)"
else
  fail "compose.prod.yaml: docker-compose config (dummy secrets)"
fi
for secret in TOKEN_SECRET_SALT INTERNAL_API_TOKEN POSTGRES_PASSWORD MINIO_ROOT_PASSWORD S3_SECRET_KEY; do
  without=()
  for kv in "${prod_env[@]}"; do [[ $kv == "$secret="* ]] || without+=("$kv"); done
  if out=$(env -u "$secret" "${without[@]}" "${COMPOSE[@]}" --env-file "$NO_ENV" -f compose.prod.yaml config -q 2>&1); then
    fail "compose.prod.yaml renders without $secret"
  elif grep -q "set $secret" <<<"$out"; then
    pass "compose.prod.yaml refuses to render without $secret"
  else
    fail "compose.prod.yaml without $secret failed for another reason: $out"
  fi
done
if docker compose version >/dev/null 2>&1; then
  docker compose --env-file "$NO_ENV" -f compose.yaml config -q && pass "compose.yaml: docker compose (v2) config" \
    || fail "compose.yaml: docker compose (v2) config"
  env "${prod_env[@]}" docker compose --env-file "$NO_ENV" -f compose.prod.yaml config -q \
    && pass "compose.prod.yaml: docker compose (v2) config" || fail "compose.prod.yaml: docker compose (v2) config"
else
  note "no docker compose v2 plugin here: validated with docker-compose 1.29.2 (compose spec of 2021)"
fi

"${COMPOSE[@]}" --env-file "$NO_ENV" -f compose.yaml config >"$WORK/compose.local.yaml"
env "${prod_env[@]}" "${COMPOSE[@]}" --env-file "$NO_ENV" -f compose.prod.yaml config >"$WORK/compose.prod.yaml"
# What chantra is given: every variable known to the binary; every service's
# configuration accepted (with the image's ENV and CMD, startup gets as far as
# connecting to the database); each service running exactly its own role (the
# same configuration on SQLite, on free loopback ports); healthchecks probing
# that role; the right ports published.
"$PY" - "$BIN" "$WORK" "$WORK/compose.local.yaml" "$WORK/compose.prod.yaml" <<'PY' || failures=$((failures + 1))
import json, re, shlex, socket, subprocess, sys, time, urllib.request, yaml

binary, work, files = sys.argv[1], sys.argv[2], sys.argv[3:]
ROLE_PORT = {"rest": 8081, "channels": 8070, "mcp": 8090, "landing": 8080}
ADDR_VAR = {"rest": "REST_ADDR", "channels": "CHANNELS_ADDR", "mcp": "MCP_ADDR", "landing": "LANDING_ADDR"}

# The runtime stage's ENV and CMD: what a container starts with before compose.
runtime = re.split(r"^FROM ", open("Dockerfile").read(), flags=re.M)[-1].replace("\\\n", " ")
image_env = {}
for line in re.findall(r"^ENV (.*)$", runtime, re.M):
    image_env.update(kv.split("=", 1) for kv in shlex.split(line, comments=True))
image_cmd = json.loads(re.findall(r"^CMD (\[.*\])$", runtime, re.M)[-1])

def known_vars(*subcommand):
    out = subprocess.run([binary, *subcommand, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", out)) | {"RUST_LOG"}

serve_vars, migrate_vars = known_vars("serve"), known_vars("migrate")
bad = 0

def check(ok, what):
    global bad
    print(("  ok    " if ok else "  FAIL  ") + what, file=sys.stdout if ok else sys.stderr)
    bad += 0 if ok else 1

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def healthy(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False

def roles_served(env, command, tag):
    """Runs the service on SQLite with every role address on a free port; which answer?"""
    ports = {role: free_port() for role in ROLE_PORT}
    run_env = {k: v for k, v in env.items() if not k.startswith("S3_")}
    run_env.update({ADDR_VAR[r]: f"127.0.0.1:{p}" for r, p in ports.items()},
                   PATH="/usr/bin:/bin", AUTO_MIGRATE="true", DATA_DIR=f"{work}/roles-{tag}",
                   DATABASE_URL=f"sqlite://{work}/roles-{tag}.db?mode=rwc")
    proc = subprocess.Popen([binary, *command], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and proc.poll() is None and not any(healthy(p) for p in ports.values()):
            time.sleep(0.2)
        time.sleep(0.5)
        return {r for r, p in ports.items() if healthy(p)}
    finally:
        proc.terminate()
        proc.wait(timeout=15)

for path in files:
    name = "compose.prod.yaml" if path.endswith("prod.yaml") else "compose.yaml"
    services = yaml.safe_load(open(path))["services"]
    for svc, spec in sorted(services.items()):
        if name == "compose.prod.yaml":
            check(svc == "caddy" or not spec.get("ports"), f"{name}: {svc} publishes no port")
        if not spec.get("image", "").startswith("chantra:"):
            continue
        given = {k: str(v) for k, v in (spec.get("environment") or {}).items()}
        env = dict(image_env, **given)
        command = spec.get("command") or image_cmd
        shown = " ".join(command) + (f" (CHANTRA_ROLES={env['CHANTRA_ROLES']})" if "CHANTRA_ROLES" in env else "")
        # migrate shares the roles' environment block: it may carry serve's variables.
        known = serve_vars | migrate_vars if command[0] == "migrate" else serve_vars
        unknown = sorted(set(given) - known)
        check(not unknown, f"{name}: {svc}: every variable is one chantra reads"
              + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        # The real configuration, but a database that refuses at once.
        run_env = dict(env, PATH="/usr/bin:/bin", DB_ACQUIRE_TIMEOUT_SECS="1",
                       DATABASE_URL=re.sub(r"@[^/]+/", "@127.0.0.1:1/", env["DATABASE_URL"]))
        proc = subprocess.run([binary, *command], env=run_env, capture_output=True, text=True, timeout=60)
        accepted = proc.returncode == 1 and "DATABASE_URL: cannot connect" in proc.stderr
        check(accepted, f"{name}: {svc}: `chantra {shown}` accepts its configuration"
              + ("" if accepted else f" (exit {proc.returncode}: {proc.stderr.strip()[-300:]})"))
        if command[0] == "migrate":
            check((spec.get("healthcheck") or {}).get("test") == ["NONE"], f"{name}: {svc}: image healthcheck disabled")
            continue
        role = env.get("CHANTRA_ROLES", "")
        served = roles_served(env, command, f"{name}-{svc}")
        check(served == {role}, f"{name}: {svc}: runs exactly the {role} role (serving: {', '.join(sorted(served)) or 'nothing'})")
        test = (spec.get("healthcheck") or {}).get("test") or []
        check(test == ["CMD", "chantra", "healthcheck", "--role", role],
              f"{name}: {svc}: healthcheck probes its own role ({' '.join(test[1:])})")
        hc = subprocess.run([binary, *test[2:]], env=dict(env, PATH="/usr/bin:/bin"),
                            capture_output=True, text=True, timeout=30)
        check(hc.returncode in (0, 1), f"{name}: {svc}: the healthcheck command parses (exit {hc.returncode})")
        if name == "compose.yaml":
            targets = {int(str(p).split(":")[-1].split("/")[0]) for p in spec.get("ports", [])}
            check(targets == {ROLE_PORT[role]}, f"{name}: {svc}: publishes port {ROLE_PORT[role]}")
sys.exit(1 if bad else 0)
PY

# Informational (.env.example is the app's file): variables it does not mention.
undocumented=$(comm -23 <("$BIN" serve --help | grep -o '\[env: [A-Z0-9_]*' | cut -c7- | sort -u) \
  <(grep -oE '^#? ?[A-Z][A-Z0-9_]*=' .env.example | tr -d '# =' | sort -u) | tr '\n' ' ')
[[ -z $undocumented ]] || note ".env.example does not mention: $undocumented"

# --- 2. Caddyfile -----------------------------------------------------------------
section "Caddyfile"
if out=$(CHANTRA_DOMAIN=chantra.example.com caddy validate --config Caddyfile --adapter caddyfile 2>&1); then
  pass "caddy validate"
else
  fail "caddy validate: $out"
fi
if caddy fmt Caddyfile | diff -q Caddyfile - >/dev/null; then
  pass "caddy fmt: formatted"
else
  fail "caddy fmt: run \`caddy fmt --overwrite Caddyfile\`"
fi
# With no CADDY_* test variables: production hosts and compose upstreams.
routes=$(env -u CHANTRA_DOMAIN caddy adapt --config Caddyfile --adapter caddyfile 2>/dev/null \
  | jq -c '[.apps.http.servers[].routes[] | {host: .match[0].host[0],
             dial: [.. | .upstreams? // empty | .[].dial] | unique}] | sort_by(.host)')
expected='[{"host":"api.chantra.example.com","dial":["rest:8081"]},{"host":"chantra.example.com","dial":["channels:8070","landing:8080"]},{"host":"mcp.chantra.example.com","dial":["mcp:8090"]}]'
if [[ $routes == "$expected" ]]; then
  pass "production routes: api.→rest:8081, mcp.→mcp:8090, apex→landing:8080 + channels:8070"
else
  fail "production routes: got $routes"
fi

# --- 3. Dockerfile -----------------------------------------------------------------
section "Dockerfile"
if "$HADOLINT" Dockerfile; then
  pass "hadolint Dockerfile"
else
  fail "hadolint Dockerfile"
fi
# Every target Cargo.toml declares must exist when the dependency layer builds.
if "$PY" - <<'PY'; then
import os, re, sys, tomllib
dockerfile = open("Dockerfile").read()
missing = []
def need(path, what):
    if not re.search(r"(^|\s)" + re.escape(path) + r"(\s|$)", dockerfile, re.M):
        missing.append(f"{path} ({what})")
root = tomllib.load(open("Cargo.toml", "rb"))
for member in root.get("workspace", {}).get("members", ["."]):
    base = "" if member == "." else member.rstrip("/") + "/"
    manifest = tomllib.load(open(base + "Cargo.toml", "rb"))
    if base:
        need(base + "Cargo.toml", "workspace member manifest")
    lib = manifest.get("lib")
    if lib is not None or os.path.exists(base + "src/lib.rs"):
        need(base + (lib or {}).get("path", "src/lib.rs"), "lib")
    for kind, folder in (("bin", "src/bin"), ("bench", "benches"), ("test", "tests"), ("example", "examples")):
        for target in manifest.get(kind, []):
            default = "src/main.rs" if kind == "bin" and target["name"] == manifest["package"]["name"] \
                else f"{folder}/{target['name']}.rs"
            need(base + target.get("path", default), kind + " " + target["name"])
if missing:
    print("  the dependency layer has no stand-in for: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PY
  pass "dependency-layer stand-ins cover every declared target and workspace member"
else
  fail "Dockerfile dependency layer: add the stand-ins listed above"
fi
if [[ "${CHECK_DEPLOY_BUILD:-0}" == 1 ]]; then
  # The builder stage's two RUN steps, replayed in a scratch copy of the context.
  # One snapshot of what the Dockerfile copies (timestamps kept, as COPY does),
  # so edits made during the long build cannot mix two versions.
  ctx="$WORK/docker-build" snap="$WORK/docker-context"
  mkdir -p "$ctx/migration" "$ctx/tools/chantra-load" "$snap/migration" "$snap/crates"
  cp -p Cargo.toml Cargo.lock "$ctx/"
  cp -p migration/Cargo.toml "$ctx/migration/"
  cp -p tools/chantra-load/Cargo.toml "$ctx/tools/chantra-load/"
  for crate in chantra-core chantra-s3 chantra-testkit; do
    mkdir -p "$ctx/crates/$crate" "$snap/crates/$crate"
    cp -p "crates/$crate/Cargo.toml" "$ctx/crates/$crate/"
  done
  cp -rp src templates static "$snap/"
  cp -rp migration/src "$snap/migration/"
  cp -rp crates/chantra-core/src "$snap/crates/chantra-core/"
  cp -rp crates/chantra-s3/src "$snap/crates/chantra-s3/"
  mapfile -t steps < <("$PY" - <<'PY'
import re
builder = re.split(r"^FROM ", open("Dockerfile").read(), flags=re.M)[1]
for command in re.findall(r"^RUN (.*)$", builder.replace("\\\n", " "), re.M):
    print(command.replace("/out/", "../out/"))
PY
  )
  replay() { (cd "$ctx" && env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_STRIP=debuginfo bash -ec "$1"); }
  if [[ ${#steps[@]} == 2 ]] && replay "${steps[0]}" \
    && cp -rp "$snap/src" "$snap/templates" "$snap/static" "$ctx/" && cp -rp "$snap/migration/src" "$ctx/migration/" \
    && cp -rp "$snap/crates/chantra-core/src" "$ctx/crates/chantra-core/" \
    && cp -rp "$snap/crates/chantra-s3/src" "$ctx/crates/chantra-s3/" \
    && replay "${steps[1]}" && "$WORK/out/chantra" serve --help >/dev/null; then
    pass "Dockerfile build stage replayed: dependency layer, then the real binary"
  else
    fail "Dockerfile build stage replay (${#steps[@]} RUN steps found)"
  fi
fi

# --- 4. justfile ---------------------------------------------------------------------
section "justfile"
if just --list >/dev/null; then
  pass "just --list parses ($(just --summary | wc -w) recipes)"
else
  fail "just --list"
fi
mkdir -p "$WORK/fakebin"
cat >"$WORK/fakebin/docker" <<EOF
#!/bin/sh
echo "docker \$*" >>"$WORK/docker.calls"
EOF
chmod +x "$WORK/fakebin/docker"
: >"$WORK/docker.calls"
if out=$(env -u TOKEN_SECRET_SALT PATH="$WORK/fakebin:$PATH" CHANTRA_ENV_FILE=/nonexistent just deploy-prod 2>&1); then
  fail "just deploy-prod ran without TOKEN_SECRET_SALT"
elif [[ -s "$WORK/docker.calls" ]]; then
  fail "just deploy-prod called docker without TOKEN_SECRET_SALT"
else
  pass "just deploy-prod refuses without TOKEN_SECRET_SALT: $(tail -n1 <<<"$out")"
fi
if env "${prod_env[@]}" PATH="$WORK/fakebin:$PATH" CHANTRA_ENV_FILE=/nonexistent just deploy-prod >/dev/null 2>&1 \
  && grep -q -- '--context pdfturn compose .*-f compose.prod.yaml up -d --build' "$WORK/docker.calls"; then
  pass "just deploy-prod with the secrets runs: $(tail -n1 "$WORK/docker.calls")"
else
  fail "just deploy-prod with the secrets: $(cat "$WORK/docker.calls")"
fi

# --- 5. the edge for real ---------------------------------------------------------------
section "edge: Caddy on loopback in front of chantra serve --role all"
# shellcheck source=scripts/lib/ports.sh
source scripts/lib/ports.sh # (the script runs from the repository root)
read -r EDGE_PORT REST_PORT CHANNELS_PORT MCP_PORT LANDING_PORT < <(free_ports 5)
INTERNAL_TOKEN=check-deploy-internal-token

# As in compose.prod.yaml: CHANNEL_HOSTNAME, MCP_PUBLIC_URL, LANDING_REST_URL, TRUSTED_PROXIES
# (Caddy's address), AUTO_MIGRATE=false after `migrate up`; SQLite under $WORK.
chantra_env=(DATABASE_URL="sqlite://$WORK/chantra.db?mode=rwc" DATA_DIR="$WORK/data"
  REST_ADDR=127.0.0.1:$REST_PORT CHANNELS_ADDR=127.0.0.1:$CHANNELS_PORT
  MCP_ADDR=127.0.0.1:$MCP_PORT LANDING_ADDR=127.0.0.1:$LANDING_PORT
  CHANNEL_HOSTNAME=$DOMAIN MCP_PUBLIC_URL=https://mcp.$DOMAIN LANDING_REST_URL=https://api.$DOMAIN
  INTERNAL_API_TOKEN=$INTERNAL_TOKEN
  TRUSTED_PROXIES=127.0.0.1/32 RATE_LIMIT_PER_SECOND=1 RATE_LIMIT_BURST=40
  SSE_KEEPALIVE_SECS=1 AUTO_MIGRATE=false METRICS_ENABLED=true RUST_LOG=warn)
env -i PATH="$PATH" HOME="$WORK" "${chantra_env[@]}" "$BIN" migrate up >/dev/null
env -i PATH="$PATH" HOME="$WORK" "${chantra_env[@]}" "$BIN" serve --role all >"$WORK/chantra.log" 2>&1 &
PIDS+=($!)
CHANTRA_PID=$!
env -i PATH="$PATH" HOME="$WORK" XDG_DATA_HOME="$WORK/caddy-data" XDG_CONFIG_HOME="$WORK/caddy-config" \
  CHANTRA_DOMAIN=$DOMAIN CADDY_SITE_SCHEME=http:// CADDY_HTTP_PORT=$EDGE_PORT CADDY_HTTPS_PORT=1 CADDY_ADMIN=off \
  CADDY_UPSTREAM_REST=127.0.0.1:$REST_PORT CADDY_UPSTREAM_CHANNELS=127.0.0.1:$CHANNELS_PORT \
  CADDY_UPSTREAM_MCP=127.0.0.1:$MCP_PORT CADDY_UPSTREAM_LANDING=127.0.0.1:$LANDING_PORT \
  caddy run --config Caddyfile --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)

EDGE=http://$DOMAIN:$EDGE_PORT API=http://api.$DOMAIN:$EDGE_PORT MCP=http://mcp.$DOMAIN:$EDGE_PORT
RESOLVE=(--resolve "$DOMAIN:$EDGE_PORT:127.0.0.1" --resolve "api.$DOMAIN:$EDGE_PORT:127.0.0.1"
  --resolve "mcp.$DOMAIN:$EDGE_PORT:127.0.0.1")
c() { curl -sS --max-time 5 "${RESOLVE[@]}" "$@"; }
status() { c -o /dev/null -w '%{http_code}' "$@" || true; }

wait_for() { # url, what: at most 60 s
  local i
  for ((i = 0; i < 120; i++)); do
    [[ $(status "$1" 2>/dev/null) == 200 ]] && return 0
    sleep 0.5
  done
  echo "--- chantra.log"; tail -20 "$WORK/chantra.log"; echo "--- caddy.log"; tail -20 "$WORK/caddy.log"
  die "$2 did not answer $1 within 60 s"
}
for port in $REST_PORT $CHANNELS_PORT $MCP_PORT $LANDING_PORT; do
  wait_for "http://127.0.0.1:$port/healthz" "chantra"
done
wait_for "$API/healthz" "caddy"
pass "chantra (4 roles) and caddy (:$EDGE_PORT) are up"

expect() { # description, expected status, curl args...
  local what=$1 want=$2 got
  shift 2
  got=$(status "$@")
  if [[ $got == "$want" ]]; then pass "$what → $got"; else fail "$what → $got (expected $want)"; fi
}

# Routing: each host reaches its role, and only its role.
expect "api.  GET /openapi.json (rest)" 200 "$API/openapi.json"
expect "apex  GET /openapi.json (not rest)" 404 "$EDGE/openapi.json"
expect "mcp.  GET /openapi.json (not rest)" 404 "$MCP/openapi.json"
channel=$(c -X POST "$API/v1/channels")
id=$(jq -r .channel_id <<<"$channel")
publish_token=$(jq -r .publish_token <<<"$channel")
url=$(jq -r .url <<<"$channel")
if [[ $url == "https://$DOMAIN/channel/v1/public/$id" ]]; then
  pass "api.  POST /v1/channels → channel URL $url"
else
  fail "api.  POST /v1/channels → $channel"
fi
path=${url#https://"$DOMAIN"}
expect "api.  GET $path (channels only on the apex)" 404 "$API$path"
expect "mcp.  GET $path (channels only on the apex)" 404 "$MCP$path"

# SSE through /channel/*: headers, retry:, and a message published meanwhile
# arriving while the stream is still open (buffering would hold it back).
c -N --max-time 4 -D "$WORK/sse.headers" "$EDGE$path" >"$WORK/sse.body" 2>/dev/null &
reader=$!
sleep 1
expect "api.  POST /v1/channels/{id}/publish" 201 -X POST "$API/v1/channels/$id/publish" \
  -H "X-Publish-Token: $publish_token" -H 'content-type: text/plain' --data-binary hello-through-caddy
wait "$reader" || true
if grep -qi '^content-type: text/event-stream' "$WORK/sse.headers" && grep -q '^retry:' "$WORK/sse.body" \
  && grep -q "\"encoding\":\"text\",\"payload\":\"hello-through-caddy\"" "$WORK/sse.body"; then
  pass "apex  GET $path streams unbuffered: event-stream, retry:, the live message"
else
  fail "apex  GET $path stream: $(head -c 400 "$WORK/sse.headers" "$WORK/sse.body")"
fi
private=$(c -X POST "$API/v1/channels" -H 'content-type: application/json' -d '{"visibility":"private"}')
pid=$(jq -r .channel_id <<<"$private")
read_token=$(jq -r .read_token <<<"$private")
ppath=/channel/v1/private/$pid
expect "apex  GET $ppath without a token" 401 "$EDGE$ppath"
c -N --max-time 2 "$EDGE$ppath?token=$read_token" >"$WORK/private.body" 2>/dev/null || true
if grep -q '^retry:' "$WORK/private.body"; then
  pass "apex  GET $ppath?token=chr_… streams"
else
  fail "apex  GET $ppath?token=chr_… did not stream"
fi

# The internal API exists on the channels role, and nothing outside reaches it.
ipath=/internal/v1/channels/$id/messages
expect "direct channels GET $ipath (the route exists)" 200 \
  "http://127.0.0.1:$CHANNELS_PORT$ipath" -H "X-Internal-Token: $INTERNAL_TOKEN"
for probe in "$EDGE$ipath" "$API$ipath" "$MCP$ipath" "$EDGE/channel$ipath" "$EDGE/channel/$ipath" \
  "$EDGE/channel/%69nternal/v1/channels/$id/messages" "$EDGE/CHANNEL/internal/v1/channels/$id/messages" \
  "$EDGE/channel/v1/public/../../internal/v1/channels/$id/messages" \
  "$EDGE/channel/v1/public/..%2f..%2finternal%2fv1%2fchannels%2f$id%2fmessages"; do
  got=$(status --path-as-is -H "X-Internal-Token: $INTERNAL_TOKEN" "$probe")
  if [[ $got == 404 || $got == 400 ]]; then
    pass "never internal: ${probe#http://} → $got"
  else
    fail "never internal: ${probe#http://} → $got"
  fi
done

# Metrics are served on the roles' own addresses, never through the edge.
expect "direct rest GET /metrics (the route exists)" 200 "http://127.0.0.1:$REST_PORT/metrics"
for probe in "$EDGE/metrics" "$API/metrics" "$MCP/metrics" "$EDGE/channel/metrics" "$API/metrics/"; do
  got=$(status --path-as-is "$probe")
  if [[ $got == 404 ]]; then
    pass "never metrics: ${probe#http://} → $got"
  else
    fail "never metrics: ${probe#http://} → $got"
  fi
done

# mcp. and the apex deliver what the mcp and landing roles serve.
direct=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MCP_PORT/.well-known/mcp-server" || true)
if [[ $direct == 200 ]]; then
  if [[ $(c "$MCP/.well-known/mcp-server" | jq -r .name) == chantra ]]; then
    pass "mcp.  GET /.well-known/mcp-server → chantra"
  else
    fail "mcp.  GET /.well-known/mcp-server"
  fi
  init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"check-deploy","version":"1"}}}'
  answer=$(c -N -X POST "$MCP/mcp" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -d "$init" || true)
  if grep -q '"serverInfo"' <<<"$answer"; then
    pass "mcp.  POST /mcp initialize → serverInfo"
  else
    fail "mcp.  POST /mcp initialize → $(head -c 300 <<<"$answer")"
  fi
else
  note "this chantra has no mcp role yet (/.well-known/mcp-server → $direct): mcp. checked with /healthz only"
  expect "mcp.  GET /healthz" 200 "$MCP/healthz"
fi
direct=$(curl -sS --max-time 5 -o "$WORK/landing.direct" -w '%{http_code}' "http://127.0.0.1:$LANDING_PORT/" || true)
if [[ $direct == 200 ]]; then
  if c -D "$WORK/landing.headers" "$EDGE/" | cmp -s - "$WORK/landing.direct"; then
    pass "apex  GET / → the landing page"
  else
    fail "apex  GET / differs from the landing role's page"
  fi
  if grep -qi "^content-security-policy:.*connect-src[^;]* https://api.$DOMAIN" "$WORK/landing.headers"; then
    pass "apex  GET / lets the playground call https://api.$DOMAIN (CSP connect-src)"
  else
    fail "apex  GET / CSP: $(grep -i '^content-security-policy' "$WORK/landing.headers")"
  fi
else
  note "this chantra has no landing page yet (GET / → $direct): apex checked with /healthz only"
  expect "apex  GET /healthz" 200 "$EDGE/healthz"
fi

# X-Forwarded-For from Caddy is believed: clients behind the one proxy get
# their own rate-limit buckets, and a client cannot pick another by sending
# the header itself.
limited=0
for ((i = 0; i < 60; i++)); do
  if [[ $(status --interface 127.0.0.2 "$API/healthz") == 429 ]]; then limited=1; break; fi
done
if ((limited)); then
  pass "client 127.0.0.2 through Caddy is rate limited after the burst"
  expect "client 127.0.0.3 through Caddy keeps its own bucket" 200 --interface 127.0.0.3 "$API/healthz"
  expect "client 127.0.0.2 sending X-Forwarded-For: 203.0.113.7 is still limited" 429 \
    --interface 127.0.0.2 -H 'X-Forwarded-For: 203.0.113.7' "$API/healthz"
else
  fail "client 127.0.0.2 was never rate limited through Caddy"
fi

# Caddy's error log describes failed requests: the token must not be there.
kill "$CHANTRA_PID" && wait "$CHANTRA_PID" 2>/dev/null || true
expect "apex  $ppath with chantra stopped" 502 "$EDGE$ppath?token=$read_token" -H "X-Read-Token: $read_token"
sleep 0.5
if grep -q "$ppath" "$WORK/caddy.log" && ! grep -q "$read_token" "$WORK/caddy.log" && grep -q REDACTED "$WORK/caddy.log"; then
  pass "caddy's error log has the request, with the read token REDACTED"
else
  fail "caddy's error log and the read token: $(grep -c "$read_token" "$WORK/caddy.log") occurrence(s)"
fi

# --- summary ------------------------------------------------------------------------
section "summary"
elapsed=$(($(date +%s) - started))
if ((failures)); then
  echo "check-deploy: $failures check(s) FAILED in ${elapsed} s" >&2
  exit 1
fi
echo "check-deploy: all checks passed in ${elapsed} s"

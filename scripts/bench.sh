#!/usr/bin/env bash
# Benchmarks (issue 8): chantra on the embedded default (SQLite + files),
# chantra on PostgreSQL + garage, and nginx + nchan as the reference peer,
# measured by the same tool (chantra-load) with the same scenarios:
#
#   token     (e) cost of one token check: cargo bench --bench token_hash
#   publish   (a) publish throughput: 1 KiB payloads, 64 concurrent publishers; with
#             target postgres, also garage's raw PUT rate at the same sizes (target
#             "garage": chantra-load --scenario s3put, the same S3 client as Chantra's)
#   fanout    (b) one channel × N subscribers, M messages at R/s
#   channels  (c) 10,000 channels × 1 subscriber, messages round-robin
#   idle      (d) N streams held open: memory per stream, all still alive
#   resume    (f) N subscribers dropped at once and reconnected with Last-Event-ID
#   scaleout  (issue 17) 2 rest + 3 channels processes on PostgreSQL + garage,
#             fan-out over LISTEN/NOTIFY (target pg-listen) or NATS (target pg-nats,
#             a private nats-server on a free port): two loads,
#               publishers  P concurrent publishers on a few channels, readers on
#                           every channels process, for S seconds;
#               channels    N channels, R readers each spread over the 3 channels
#                           processes, M messages round-robin over the channels, P publishers;
#             publishes go round-robin through both rest processes. Beside each run
#             bench/scaleout_probe.py samples (every 100 ms) CPU time per process from
#             /proc and PostgreSQL's wait events from pg_stat_activity, and records
#             `perf record -a -e cpu-clock` during the publish phase; the report holds
#             them under "profile", plus each channels process's
#             chantra_fanout_notices_received_total. Run it on its own:
#               BENCH_SCENARIOS=scaleout bash scripts/bench.sh
#             (targets default to "pg-listen pg-nats"; results in
#             docs/bench-results/<date>-scaleout/ and <date>-scaleout.md)
#
# Usage:
#   bash scripts/bench.sh            full sizes; results in docs/bench-results/<date>/
#                                    (one JSON per run) and docs/bench-results/<date>.md
#   BENCH_QUICK=1 bash scripts/bench.sh
#   BENCH_QUICK=1 BENCH_SCENARIOS=scaleout bash scripts/bench.sh
#                                    tiny sizes, every target, results in
#                                    target/bench-results/<date>-quick/
#   bash scripts/bench.sh --smoke    checks the tool itself on the embedded default
#                                    (debug build, a few seconds): every scenario must
#                                    pass, and a run whose deliveries go missing must
#                                    exit non-zero
#
# Every server gets a fresh process per run (so idle memory is a clean
# baseline), listens on free loopback ports and is stopped on exit. Chantra
# runs `serve --role rest,channels --no-sweeper` with RATE_LIMIT_PER_SECOND=0
# and high stream limits. At the end it prints issue 18's targets, each with
# its figure (median over BENCH_REPEAT rounds, and the range) and a verdict
# (bench/results.py targets; also in the markdown). Exit status: 0 when every
# run passed its checks (a missed target is a verdict, not a failure).
#
# Environment (defaults are the issue's sizes; BENCH_QUICK / --smoke shrink them):
#   BENCH_TARGETS         embedded postgres nchan (scaleout alone: pg-listen pg-nats)
#   BENCH_SCENARIOS       token publish fanout channels idle resume wait
#   BENCH_REPEAT          1 (scaleout alone: 3) rounds; each round runs every target once,
#                         so the targets alternate and share the machine's mood
#   BENCH_SCALEOUT_PUBLISHERS 64    BENCH_SCALEOUT_SECS 20 (load publishers)
#   BENCH_SCALEOUT_HOT_CHANNELS 4   BENCH_SCALEOUT_HOT_READERS 48 (a multiple of 3 × channels
#                         puts readers of every channel on every channels process)
#   BENCH_SCALEOUT_CHANNELS 1000    BENCH_SCALEOUT_CHANNELS_MESSAGES 20000
#   BENCH_SCALEOUT_READERS_PER_CHANNEL 1   BENCH_SCALEOUT_CHANNELS_RATE 0 (publishes/s in all;
#                         0 = as fast as they go)                         (load channels)
#   BENCH_SCALEOUT_LOADS  "publishers channels"   BENCH_PERF 1 (0: no perf record)
#   BENCH_PAYLOADS        garage (pg-listen, pg-nats: fs = one shared DATA_DIR instead of S3,
#                         possible only because every process runs on this one machine)
#   BENCH_PUBLISHERS      64        BENCH_PUBLISH_SECS 20   BENCH_PAYLOAD_BYTES 1024
#   BENCH_FANOUT          "5000 10000" (subscribers, one run each)
#   BENCH_FANOUT_MESSAGES 100       BENCH_FANOUT_RATE 10
#   BENCH_CHANNELS        10000     BENCH_CHANNELS_MESSAGES 30000  BENCH_CHANNELS_RATE 1000
#   BENCH_IDLE            20000     BENCH_IDLE_HOLD 30 (seconds)
#   BENCH_RESUME          5000      BENCH_RESUME_MESSAGES 10  BENCH_RESUME_GAP 10
#   BENCH_WAIT            1000      BENCH_WAIT_MESSAGES 20    BENCH_WAIT_RATE 2 (MCP wait_for_messages
#                         calls; Chantra only, the server runs the mcp role too; nchan has no equivalent)
#   BENCH_SOURCE_IPS      127.0.0.1-127.0.0.8 (client source addresses, ~28k ports each)
#   BENCH_DRAIN_SECS      30        BENCH_PROFILE release|debug
#   BENCH_SERVER_ENV      extra settings for Chantra's server, e.g. "SSE_BUFFER=16" (embedded, postgres)
#   BENCH_OUT             where the JSON and markdown go
#   KEEP_WORK=1           keep the temp folder (server logs, tool logs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

MODE=full
case ${1:-} in
  --smoke) MODE=smoke ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  "") [[ ${BENCH_QUICK:-0} == 1 ]] && MODE=quick ;;
  *) die "unknown argument $1 (try --help)" ;;
esac

DATE=$(date -u +%F)
# The scale-out comparison runs on its own targets, several rounds.
SCALEOUT_ONLY=0
if [[ ${BENCH_SCENARIOS:-} == scaleout ]]; then
  SCALEOUT_ONLY=1
  : "${BENCH_TARGETS:=pg-listen pg-nats}"
  [[ $MODE == full ]] && : "${BENCH_REPEAT:=3}"
fi
case $MODE in
  full)
    : "${BENCH_TARGETS:=embedded postgres nchan}" "${BENCH_SCENARIOS:=token publish fanout channels idle resume wait}"
    : "${BENCH_PUBLISHERS:=64}" "${BENCH_PUBLISH_SECS:=20}"
    : "${BENCH_FANOUT:=5000 10000}" "${BENCH_FANOUT_MESSAGES:=100}" "${BENCH_FANOUT_RATE:=10}"
    : "${BENCH_CHANNELS:=10000}" "${BENCH_CHANNELS_MESSAGES:=30000}" "${BENCH_CHANNELS_RATE:=1000}"
    : "${BENCH_IDLE:=20000}" "${BENCH_IDLE_HOLD:=30}"
    : "${BENCH_RESUME:=5000}" "${BENCH_RESUME_MESSAGES:=10}" "${BENCH_RESUME_GAP:=10}"
    : "${BENCH_WAIT:=1000}" "${BENCH_WAIT_MESSAGES:=20}" "${BENCH_WAIT_RATE:=2}"
    : "${BENCH_DRAIN_SECS:=30}" "${BENCH_PROFILE:=release}" "${BENCH_PER_PROCESS:=15000}"
    : "${BENCH_SCALEOUT_PUBLISHERS:=64}" "${BENCH_SCALEOUT_SECS:=20}"
    : "${BENCH_SCALEOUT_HOT_CHANNELS:=4}" "${BENCH_SCALEOUT_HOT_READERS:=48}"
    : "${BENCH_SCALEOUT_CHANNELS:=1000}" "${BENCH_SCALEOUT_CHANNELS_MESSAGES:=20000}"
    ;;
  quick)
    : "${BENCH_TARGETS:=embedded postgres nchan}" "${BENCH_SCENARIOS:=publish fanout channels idle resume wait}"
    : "${BENCH_PUBLISHERS:=8}" "${BENCH_PUBLISH_SECS:=2}"
    : "${BENCH_FANOUT:=200}" "${BENCH_FANOUT_MESSAGES:=20}" "${BENCH_FANOUT_RATE:=40}"
    : "${BENCH_CHANNELS:=200}" "${BENCH_CHANNELS_MESSAGES:=400}" "${BENCH_CHANNELS_RATE:=800}"
    : "${BENCH_IDLE:=500}" "${BENCH_IDLE_HOLD:=2}"
    : "${BENCH_RESUME:=200}" "${BENCH_RESUME_MESSAGES:=10}" "${BENCH_RESUME_GAP:=10}"
    : "${BENCH_WAIT:=50}" "${BENCH_WAIT_MESSAGES:=10}" "${BENCH_WAIT_RATE:=5}"
    : "${BENCH_DRAIN_SECS:=10}" "${BENCH_PROFILE:=release}" "${BENCH_PER_PROCESS:=15000}"
    : "${BENCH_SCALEOUT_PUBLISHERS:=16}" "${BENCH_SCALEOUT_SECS:=3}"
    : "${BENCH_SCALEOUT_HOT_CHANNELS:=4}" "${BENCH_SCALEOUT_HOT_READERS:=12}"
    : "${BENCH_SCALEOUT_CHANNELS:=100}" "${BENCH_SCALEOUT_CHANNELS_MESSAGES:=1000}"
    ;;
  smoke)
    : "${BENCH_TARGETS:=embedded}" "${BENCH_SCENARIOS:=publish fanout channels idle resume wait}"
    : "${BENCH_PUBLISHERS:=4}" "${BENCH_PUBLISH_SECS:=1}"
    : "${BENCH_FANOUT:=20}" "${BENCH_FANOUT_MESSAGES:=5}" "${BENCH_FANOUT_RATE:=50}"
    : "${BENCH_CHANNELS:=20}" "${BENCH_CHANNELS_MESSAGES:=40}" "${BENCH_CHANNELS_RATE:=200}"
    : "${BENCH_IDLE:=60}" "${BENCH_IDLE_HOLD:=1}"
    : "${BENCH_RESUME:=30}" "${BENCH_RESUME_MESSAGES:=3}" "${BENCH_RESUME_GAP:=3}"
    : "${BENCH_WAIT:=10}" "${BENCH_WAIT_MESSAGES:=3}" "${BENCH_WAIT_RATE:=10}"
    # 25 per process: the idle and resume runs also go through worker processes.
    : "${BENCH_DRAIN_SECS:=10}" "${BENCH_PROFILE:=debug}" "${BENCH_PER_PROCESS:=25}"
    : "${BENCH_SCALEOUT_PUBLISHERS:=4}" "${BENCH_SCALEOUT_SECS:=1}"
    : "${BENCH_SCALEOUT_HOT_CHANNELS:=2}" "${BENCH_SCALEOUT_HOT_READERS:=6}"
    : "${BENCH_SCALEOUT_CHANNELS:=30}" "${BENCH_SCALEOUT_CHANNELS_MESSAGES:=90}"
    ;;
esac
: "${BENCH_PAYLOAD_BYTES:=1024}" "${BENCH_SOURCE_IPS:=127.0.0.1-127.0.0.8}" "${BENCH_REPEAT:=1}"
: "${BENCH_PAYLOADS:=garage}" "${BENCH_SCALEOUT_READERS_PER_CHANNEL:=1}" "${BENCH_SCALEOUT_CHANNELS_RATE:=0}" "${BENCH_SCALEOUT_LOADS:=publishers channels}" "${BENCH_PERF:=1}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-bench.XXXXXX")
case $MODE in
  full) : "${BENCH_OUT:=$ROOT/docs/bench-results/$DATE$([[ $SCALEOUT_ONLY == 1 ]] && echo -scaleout)}" ;;
  quick) : "${BENCH_OUT:=${CARGO_TARGET_DIR:-$ROOT/target}/bench-results/$DATE-quick$([[ $SCALEOUT_ONLY == 1 ]] && echo -scaleout)}" ;;
  smoke) : "${BENCH_OUT:=$WORK/results}" ;;
esac
mkdir -p "$BENCH_OUT"

# ---------------------------------------------------------------- cleanup

SERVER_PID=
SERVER_KIND=
PG_DB=
GARAGE_STARTED=0

# shellcheck disable=SC2317 # called from traps
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -n $SERVER_PID ]] && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# shellcheck disable=SC2317 # called from traps
cleanup() {
  stop_server
  stop_cluster
  stop_nats
  if [[ -n $PG_DB ]]; then
    dropdb -h 127.0.0.1 -U postgres --if-exists "$PG_DB" 2>/dev/null || true
    PG_DB=
  fi
  if [[ $GARAGE_STARTED == 1 ]]; then
    stop_garage
    GARAGE_STARTED=0
  fi
  if [[ ${KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build

# chantra-load is its own workspace package (tools/chantra-load), hence the -p flags.
if [[ $BENCH_PROFILE == release ]]; then
  log "building release binaries"
  cargo build --release -p chantra -p chantra-load --bin chantra --bin chantra-load
else
  log "building debug binaries"
  cargo build -p chantra -p chantra-load --bin chantra --bin chantra-load
fi
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$BENCH_PROFILE
CHANTRA=$BIN_DIR/chantra
LOAD=$BIN_DIR/chantra-load

# ---------------------------------------------------------------- servers

# shellcheck source=scripts/lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

wait_healthy() { # url...: waits until each answers /healthz, or the server exits
  local deadline=$((SECONDS + 60)) url
  for url in "$@"; do
    until curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; do
      kill -0 "$SERVER_PID" 2>/dev/null || {
        tail -n 20 "$SERVER_LOG" >&2
        die "the $SERVER_KIND server exited during startup"
      }
      ((SECONDS < deadline)) || die "no /healthz answer from $url within 60 s"
      sleep 0.2
    done
  done
}

# Sets SERVER_PID, SERVER_LOG and TOOL_TARGET (chantra-load's target flags).
# WITH_MCP=1: Chantra runs the mcp role too, its session and wait caps raised.
start_server() { # target name
  local target=$1 name=$2
  SERVER_KIND=$target
  SERVER_LOG=$WORK/$name.server.log
  case $target in
    embedded | postgres)
      local rest channels mcp roles=rest,channels
      read -r rest channels mcp < <(free_ports 3)
      local env=(PATH="$PATH" HOME="$HOME" RUST_LOG=warn
        REST_ADDR="127.0.0.1:$rest" CHANNELS_ADDR="127.0.0.1:$channels"
        CHANNEL_BASE_URL="http://127.0.0.1:$channels"
        RATE_LIMIT_PER_SECOND=0 MAX_STREAMS=100000 MAX_STREAMS_PER_IP=100000 SHUTDOWN_GRACE_SECS=2)
      if [[ ${WITH_MCP:-0} == 1 ]]; then
        roles=rest,channels,mcp
        env+=(MCP_ADDR="127.0.0.1:$mcp" MCP_PUBLIC_URL="http://127.0.0.1:$mcp"
          MCP_MAX_SESSIONS=100000 MCP_MAX_SESSIONS_PER_IP=100000 MCP_MAX_WAITS=100000 MCP_MAX_WAITS_PER_IP=100000)
      fi
      if [[ $target == embedded ]]; then
        env+=(DATABASE_URL="sqlite://$WORK/embedded/chantra.db?mode=rwc" DATA_DIR="$WORK/embedded")
      else
        env+=(DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PG_DB" DATA_DIR="$WORK/postgres"
          TOKEN_SECRET_SALT="$PG_SALT" S3_ENDPOINT="$CHANTRA_TEST_S3_ENDPOINT"
          S3_ACCESS_KEY="$CHANTRA_TEST_S3_ACCESS_KEY" S3_SECRET_KEY="$CHANTRA_TEST_S3_SECRET_KEY"
          S3_BUCKET="$CHANTRA_TEST_S3_BUCKET" S3_REGION=us-east-1)
      fi
      # Settings to try (BENCH_SERVER_ENV="SSE_BUFFER=16 …"), after the defaults above.
      # shellcheck disable=SC2206 # word splitting is the point
      [[ -n ${BENCH_SERVER_ENV:-} ]] && env+=($BENCH_SERVER_ENV)
      # A clean environment: nothing from the caller (DATABASE_URL, S3_*, …) leaks in.
      (exec env -i "${env[@]}" "$CHANTRA" serve --role "$roles" --no-sweeper) >"$SERVER_LOG" 2>&1 &
      SERVER_PID=$!
      REST_URL=http://127.0.0.1:$rest
      CHANNELS_URL=http://127.0.0.1:$channels
      wait_healthy "$REST_URL" "$CHANNELS_URL"
      TOOL_TARGET=(--format chantra
        --create-url "$REST_URL/v1/channels"
        --subscribe-url "$CHANNELS_URL/v1/public/{channel}"
        --publish-url "$REST_URL/v1/channels/{channel}/publish"
        --publish-header "X-Publish-Token: {token}")
      if [[ $roles == *mcp* ]]; then TOOL_TARGET+=(--mcp-url "http://127.0.0.1:$mcp/mcp"); fi
      ;;
    nchan)
      local port dir=$WORK/$name.nginx
      read -r port < <(free_ports 1)
      mkdir -p "$dir"
      sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" "$ROOT/bench/nchan/nginx.conf" >"$dir/nginx.conf"
      # daemon off: $! is nginx's master; its workers are its children (chantra-load adds them in).
      nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$SERVER_LOG" 2>&1 &
      SERVER_PID=$!
      SERVER_LOG=$dir/error.log
      wait_healthy "http://127.0.0.1:$port"
      TOOL_TARGET=(--format raw
        --subscribe-url "http://127.0.0.1:$port/sub?id={channel}"
        --publish-url "http://127.0.0.1:$port/pub?id={channel}")
      ;;
  esac
}

# ------------------------------------------- scale-out cluster (issue 17)

CLUSTER=()   # "name=pid" of each chantra process of the running cluster
NATS_PID=
NATS_URL=

# shellcheck disable=SC2317 # called from traps
stop_cluster() {
  local entry pid
  for entry in "${CLUSTER[@]}"; do kill -TERM "${entry#*=}" 2>/dev/null || true; done
  for entry in "${CLUSTER[@]}"; do
    pid=${entry#*=}
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  CLUSTER=()
}

# A private nats-server on a free loopback port (never the shared one on
# 4222). A port found free may be taken before nats-server binds it (other
# work shares the machine): up to 5 ports are tried.
start_nats() {
  local port attempt tries
  for attempt in 1 2 3 4 5; do
    read -r port < <(free_ports 1)
    nats-server -a 127.0.0.1 -p "$port" >"$WORK/nats-server.log" 2>&1 &
    NATS_PID=$!
    NATS_URL=nats://127.0.0.1:$port
    for tries in $(seq 1 100); do
      (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null && kill -0 "$NATS_PID" 2>/dev/null && return 0
      kill -0 "$NATS_PID" 2>/dev/null || break
      sleep 0.1
    done
    log "nats-server did not start on port $port (attempt $attempt): $(tail -n 1 "$WORK/nats-server.log")"
    stop_nats
  done
  die "nats-server did not start (5 attempts; $WORK/nats-server.log)"
}

# shellcheck disable=SC2317 # called from traps
stop_nats() {
  if [[ -n $NATS_PID ]]; then
    kill -TERM "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    NATS_PID=
  fi
}

# Starts 2 rest and 3 channels processes on the target's database (rest-1
# first: it migrates). Sets CLUSTER, SERVER_LOG (all logs, for the report's
# warnings), CHANNELS_URLS and TOOL_TARGET.
start_cluster() { # target name
  local target=$1 name=$2 r1 r2 c1 c2 c3
  read -r r1 r2 c1 c2 c3 < <(free_ports 5)
  local env=(PATH="$PATH" HOME="$HOME" RUST_LOG=warn METRICS_ENABLED=true
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PG_DB" TOKEN_SECRET_SALT="$PG_SALT"
    CHANNEL_BASE_URL="http://127.0.0.1:$c1" RATE_LIMIT_PER_SECOND=0 MAX_STREAMS=100000
    MAX_STREAMS_PER_IP=100000 SHUTDOWN_GRACE_SECS=2)
  [[ $target == pg-nats ]] && env+=(FANOUT_URL="$NATS_URL")
  if [[ $BENCH_PAYLOADS == fs ]]; then
    env+=(DATA_DIR="$WORK/pg-payloads")
  else
    env+=(S3_ENDPOINT="$CHANTRA_TEST_S3_ENDPOINT" S3_ACCESS_KEY="$CHANTRA_TEST_S3_ACCESS_KEY"
      S3_SECRET_KEY="$CHANTRA_TEST_S3_SECRET_KEY" S3_BUCKET="$CHANTRA_TEST_S3_BUCKET" S3_REGION=us-east-1)
  fi
  SERVER_LOG=$WORK/$name.server.log
  : >"$SERVER_LOG"
  local spec proc role port pool url urls=()
  # The PostgreSQL cluster is shared with other work: 2 × 16 + 3 × 8 pool
  # connections (plus a listener each) stay well under max_connections = 100.
  for spec in rest-1:rest:$r1:16 rest-2:rest:$r2:16 channels-1:channels:$c1:8 channels-2:channels:$c2:8 \
    channels-3:channels:$c3:8; do
    IFS=: read -r proc role port pool <<<"$spec"
    local addr=REST_ADDR migrate=false
    [[ $role == channels ]] && addr=CHANNELS_ADDR
    [[ $proc == rest-1 ]] && migrate=true
    (exec env -i "${env[@]}" "$addr=127.0.0.1:$port" AUTO_MIGRATE=$migrate DB_MAX_CONNECTIONS="$pool" \
      "$CHANTRA" serve --role "$role" --no-sweeper) >"$WORK/$name.$proc.log" 2>&1 &
    CLUSTER+=("$proc=$!")
    url=http://127.0.0.1:$port
    urls+=("$url")
    if [[ $proc == rest-1 ]]; then cluster_healthy "$name" "$url"; fi
  done
  cluster_healthy "$name" "${urls[@]}"
  CHANNELS_URLS=("${urls[@]:2}")
  TOOL_TARGET=(--format chantra
    --create-url "${urls[0]}/v1/channels"
    --subscribe-url "${urls[2]}/v1/public/{channel} ${urls[3]}/v1/public/{channel} ${urls[4]}/v1/public/{channel}"
    --publish-url "${urls[0]}/v1/channels/{channel}/publish ${urls[1]}/v1/channels/{channel}/publish"
    --publish-header "X-Publish-Token: {token}")
}

cluster_healthy() { # name url...: each answers /healthz within 60 s, and no process exited
  local name=$1 deadline=$((SECONDS + 60)) url entry
  shift
  for url in "$@"; do
    until curl -fsS --max-time 1 "$url/healthz" >/dev/null 2>&1; do
      for entry in "${CLUSTER[@]}"; do
        kill -0 "${entry#*=}" 2>/dev/null || {
          tail -n 20 "$WORK/$name.${entry%%=*}.log" >&2
          die "${entry%%=*} exited during startup"
        }
      done
      ((SECONDS < deadline)) || die "no /healthz answer from $url within 60 s"
      sleep 0.2
    done
  done
}

# One scale-out measurement on a fresh cluster: run_scaleout TARGET LOAD ROUND
run_scaleout() {
  local target=$1 load=$2 round=$3
  local name="${target}__scaleout-${load}__r${round}" flags=()
  [[ $load == channels && $BENCH_SCALEOUT_CHANNELS_RATE != 0 ]] && name+="__rate${BENCH_SCALEOUT_CHANNELS_RATE}"
  case $load in
    publishers)
      flags=(--scenario publish --publishers "$BENCH_SCALEOUT_PUBLISHERS" --channels "$BENCH_SCALEOUT_HOT_CHANNELS"
        --subscribers "$BENCH_SCALEOUT_HOT_READERS" --duration-secs "$BENCH_SCALEOUT_SECS" --messages 100000000
        --payload-bytes "$BENCH_PAYLOAD_BYTES")
      ;;
    channels)
      flags=(--scenario channels --publishers "$BENCH_SCALEOUT_PUBLISHERS" --channels "$BENCH_SCALEOUT_CHANNELS"
        --subscribers "$((BENCH_SCALEOUT_CHANNELS * BENCH_SCALEOUT_READERS_PER_CHANNEL))"
        --messages "$BENCH_SCALEOUT_CHANNELS_MESSAGES" --rate "$BENCH_SCALEOUT_CHANNELS_RATE"
        --payload-bytes "$BENCH_PAYLOAD_BYTES")
      ;;
    *) die "unknown scale-out load $load (publishers, channels)" ;;
  esac
  start_cluster "$target" "$name"
  log "$target / scaleout $load / round $round (${CLUSTER[*]})"
  local marks=$WORK/$name.marks stop=$WORK/$name.stop probe_out=$WORK/$name.profile.json status=0
  local procs=() entry perf=()
  for entry in "${CLUSTER[@]}"; do procs+=(--proc "$entry"); done
  [[ -n $NATS_PID ]] && procs+=(--proc "nats-server=$NATS_PID")
  [[ -n ${GARAGE_PID:-} ]] && procs+=(--proc "garage=$GARAGE_PID")
  if [[ $BENCH_PERF == 1 ]] && command -v perf >/dev/null; then perf=(--perf-data "$WORK/$name.perf.data"); fi
  "$LOAD" "${flags[@]}" "${TOOL_TARGET[@]}" --mark-file "$marks" \
    --source-ips "$BENCH_SOURCE_IPS" --per-process "$BENCH_PER_PROCESS" --drain-secs "$BENCH_DRAIN_SECS" \
    >"$BENCH_OUT/$name.json" 2>"$WORK/$name.tool.log" &
  local tool=$!
  python3 "$ROOT/bench/scaleout_probe.py" --db "$PG_DB" --marks "$marks" --stop-file "$stop" --out "$probe_out" \
    "${procs[@]}" --proc "chantra-load=$tool" "${perf[@]}" --max-secs 1800 2>"$WORK/$name.probe.log" &
  local probe=$!
  wait "$tool" || status=$?
  : >"$stop"
  wait "$probe" || log "the probe failed: $(tail -n 3 "$WORK/$name.probe.log")"
  # What each channels process heard from the bus (NATS: only its readers' channels).
  local notices=$WORK/$name.notices.json url alive=1
  {
    echo "{"
    local i=1
    for url in "${CHANNELS_URLS[@]}"; do
      printf '"channels-%d": %s%s\n' "$i" \
        "$(curl -fsS --max-time 5 "$url/metrics" | awk '/^chantra_fanout_notices_received_total/ {print $2}' | grep . || echo null)" \
        "$([[ $i -lt ${#CHANNELS_URLS[@]} ]] && echo ,)"
      i=$((i + 1))
    done
    echo "}"
  } >"$notices"
  for entry in "${CLUSTER[@]}"; do kill -0 "${entry#*=}" 2>/dev/null || alive=0; done
  stop_cluster
  cat "$WORK/$name".{rest,channels}-*.log >"$SERVER_LOG"
  python3 "$ROOT/bench/results.py" annotate "$BENCH_OUT/$name.json" "$target" "scaleout-$load" "$status" "$alive" \
    "$SERVER_LOG" "$WORK/$name.tool.log"
  python3 "$ROOT/bench/results.py" attach "$BENCH_OUT/$name.json" "$probe_out" "$notices" "$round"
  if [[ $status != 0 || $alive != 1 ]]; then
    FAILED+=("$name")
    log "FAILED: $name (tool exit $status, every process alive: $alive); the tool's last lines:"
    tail -n 5 "$WORK/$name.tool.log" >&2
  fi
}

setup_target() {
  case $1 in
    embedded) mkdir -p "$WORK/embedded" ;;
    postgres | pg-listen | pg-nats)
      # shellcheck source=scripts/test-env.sh
      source "$ROOT/scripts/test-env.sh"
      ensure_postgres
      if [[ $1 == postgres || $BENCH_PAYLOADS != fs ]]; then
        ensure_garage_installed
        start_garage
        [[ -n $GARAGE_PID ]] && GARAGE_STARTED=1
      fi
      PG_DB="chantra_bench_$$_$RANDOM"
      createdb -h 127.0.0.1 -U postgres "$PG_DB"
      PG_SALT=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
      mkdir -p "$WORK/postgres"
      if [[ $1 == pg-nats ]]; then
        command -v nats-server >/dev/null || die "nats-server is missing (scripts/setup-test-tools.sh)"
        start_nats
      fi
      ;;
    nchan)
      command -v nginx >/dev/null && [[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]] ||
        die "nginx with nchan is missing: apt-get install -y nginx libnginx-mod-nchan"
      ;;
    *) die "unknown target $1 (embedded, postgres, nchan, pg-listen, pg-nats)" ;;
  esac
}

teardown_target() {
  case $1 in
    postgres | pg-listen | pg-nats)
      stop_nats
      dropdb -h 127.0.0.1 -U postgres --if-exists "$PG_DB" || true
      PG_DB=
      if [[ $GARAGE_STARTED == 1 ]]; then
        stop_garage
        GARAGE_STARTED=0
      fi
      ;;
  esac
}

# ------------------------------------------------------------------- runs

FAILED=()

# One measurement on a fresh server: run TARGET SCENARIO SIZE [tool flags…]
run() {
  local target=$1 scenario=$2 size=$3
  shift 3
  local name="${target}__${scenario}__${size}"
  ((BENCH_REPEAT > 1)) && name+="__r$ROUND"
  start_server "$target" "$name"
  log "$target / $scenario / $size (server pid $SERVER_PID)"
  local status=0
  "$LOAD" --scenario "$scenario" "${TOOL_TARGET[@]}" --server-pid "$SERVER_PID" \
    --source-ips "$BENCH_SOURCE_IPS" --per-process "$BENCH_PER_PROCESS" --drain-secs "$BENCH_DRAIN_SECS" "$@" \
    >"$BENCH_OUT/$name.json" 2>"$WORK/$name.tool.log" || status=$?
  local alive=0
  kill -0 "$SERVER_PID" 2>/dev/null && alive=1
  stop_server
  # A publish run leaves ~100,000 new files behind; flush them now, not during the next run.
  sync
  python3 "$ROOT/bench/results.py" annotate "$BENCH_OUT/$name.json" "$target" "$scenario" "$status" "$alive" \
    "$SERVER_LOG" "$WORK/$name.tool.log"
  if [[ $status != 0 || $alive != 1 ]]; then
    FAILED+=("$name")
    log "FAILED: $name (tool exit $status, server alive: $alive); the tool's last lines:"
    tail -n 5 "$WORK/$name.tool.log" >&2
  fi
}

# The raw PUT rate of the garage Chantra just published to, at the same
# concurrency, size and duration, through the same S3 client (chantra-load
# --scenario s3put): issue 18 wants PostgreSQL + S3 publishing at >= 80 % of
# it. Reported as target "garage", scenario publish; CPU is garage's.
run_raw_s3() {
  local name="garage__publish__${BENCH_PUBLISHERS}" status=0
  ((BENCH_REPEAT > 1)) && name+="__r$ROUND"
  log "garage / raw PUT loop / $BENCH_PUBLISHERS"
  env S3_ENDPOINT="$CHANTRA_TEST_S3_ENDPOINT" S3_ACCESS_KEY="$CHANTRA_TEST_S3_ACCESS_KEY" \
    S3_SECRET_KEY="$CHANTRA_TEST_S3_SECRET_KEY" S3_BUCKET="$CHANTRA_TEST_S3_BUCKET" S3_REGION=us-east-1 \
    "$LOAD" --scenario s3put --publishers "$BENCH_PUBLISHERS" --duration-secs "$BENCH_PUBLISH_SECS" \
    --payload-bytes "$BENCH_PAYLOAD_BYTES" ${GARAGE_PID:+--server-pid "$GARAGE_PID"} \
    >"$BENCH_OUT/$name.json" 2>"$WORK/$name.tool.log" || status=$?
  python3 "$ROOT/bench/results.py" annotate "$BENCH_OUT/$name.json" garage publish "$status" 1 /dev/null \
    "$WORK/$name.tool.log"
  if [[ $status != 0 ]]; then
    FAILED+=("$name")
    log "FAILED: $name (tool exit $status); the tool's last lines:"
    tail -n 5 "$WORK/$name.tool.log" >&2
  fi
}

scenarios_for() {
  local target=$1 round=$2 scenario n load
  for scenario in $BENCH_SCENARIOS; do
    if [[ $target == pg-* && $scenario != scaleout ]]; then
      log "$target / $scenario: skipped ($target is a scale-out target; its scenario is scaleout)"
      continue
    fi
    case $scenario in
      scaleout)
        if [[ $target != pg-* ]]; then
          log "$target / scaleout: skipped (scaleout runs on the targets pg-listen and pg-nats)"
          continue
        fi
        for load in $BENCH_SCALEOUT_LOADS; do run_scaleout "$target" "$load" "$round"; done
        ;;
      token) ;; # once, not per target
      publish)
        run "$target" publish "$BENCH_PUBLISHERS" --publishers "$BENCH_PUBLISHERS" \
          --duration-secs "$BENCH_PUBLISH_SECS" --messages 100000000 --payload-bytes "$BENCH_PAYLOAD_BYTES"
        # (an if, not `&&`: a false test as the loop's last command would end the script under set -e)
        if [[ $target == postgres ]]; then run_raw_s3; fi
        ;;
      fanout)
        for n in $BENCH_FANOUT; do
          run "$target" fanout "$n" --subscribers "$n" --messages "$BENCH_FANOUT_MESSAGES" --rate "$BENCH_FANOUT_RATE"
        done
        ;;
      channels)
        run "$target" channels "$BENCH_CHANNELS" --channels "$BENCH_CHANNELS" \
          --messages "$BENCH_CHANNELS_MESSAGES" --rate "$BENCH_CHANNELS_RATE" --publishers 16
        ;;
      idle) run "$target" idle "$BENCH_IDLE" --subscribers "$BENCH_IDLE" --hold-secs "$BENCH_IDLE_HOLD" ;;
      resume)
        run "$target" resume "$BENCH_RESUME" --subscribers "$BENCH_RESUME" \
          --messages "$BENCH_RESUME_MESSAGES" --gap-messages "$BENCH_RESUME_GAP"
        ;;
      wait)
        if [[ $target == nchan ]]; then
          log "nchan / wait: skipped (nchan has no MCP long-poll tool to compare)"
        else
          WITH_MCP=1 run "$target" wait "$BENCH_WAIT" --subscribers "$BENCH_WAIT" \
            --messages "$BENCH_WAIT_MESSAGES" --rate "$BENCH_WAIT_RATE"
        fi
        ;;
      *) die "unknown scenario $scenario" ;;
    esac
  done
}

# A run whose subscribers read another channel than the one published to:
# every delivery is missing, so the tool must say so and exit 2.
smoke_negative() {
  start_server embedded smoke-negative
  local other status=0 report=$WORK/negative.json
  other=$(curl -fsS -X POST "$REST_URL/v1/channels" | python3 -c 'import json,sys; print(json.load(sys.stdin)["channel_id"])')
  "$LOAD" --scenario fanout --format chantra --create-url "$REST_URL/v1/channels" \
    --subscribe-url "$CHANNELS_URL/v1/public/$other" --publish-url "$REST_URL/v1/channels/{channel}/publish" \
    --publish-header "X-Publish-Token: {token}" --subscribers 5 --messages 3 --rate 50 --drain-secs 2 \
    --server-pid "$SERVER_PID" >"$report" 2>"$WORK/negative.tool.log" || status=$?
  stop_server
  local missing
  missing=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["deliveries"]["missing"])' "$report" 2>/dev/null || echo "?")
  if [[ $status == 2 && $missing == 15 ]]; then
    log "smoke: a run with every delivery missing exits 2 (15 of 15 missing) — as it should"
  else
    FAILED+=("smoke-negative")
    log "FAILED: smoke-negative: expected exit 2 and 15 missing, got exit $status and $missing missing"
    tail -n 5 "$WORK/negative.tool.log" >&2
  fi
}

# meta.txt: what the machine and the servers were; one line per invocation,
# since the results of several invocations on one day share the folder.
if [[ ! -f $BENCH_OUT/meta.txt ]]; then
  {
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
      "file descriptor limit $(ulimit -n) per process. Client and servers share the machine;" \
      "chantra-load's own CPU use is in every figure."
    echo "Chantra: \`serve --role rest,channels --no-sweeper\` (wait: \`--role rest,channels,mcp\`, MCP_MAX_SESSIONS(_PER_IP)" \
      "= MCP_MAX_WAITS(_PER_IP) = 100000), RATE_LIMIT_PER_SECOND=0, MAX_STREAMS(_PER_IP)=100000;" \
      "postgres = PostgreSQL $(psql -V 2>/dev/null | awk '{print $3}') + garage. nchan: bench/nchan/nginx.conf" \
      "(nginx $(if command -v nginx >/dev/null; then nginx -v 2>&1 | sed 's#.*/##'; else echo not installed; fi), 2 workers)."
    echo
    echo "Runs:"
    echo
  } >"$BENCH_OUT/meta.txt"
fi
echo "- $(date -u +%T) UTC, $MODE, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg): targets ${BENCH_TARGETS}; scenarios ${BENCH_SCENARIOS};" \
  "publish ${BENCH_PUBLISHERS} × ${BENCH_PUBLISH_SECS} s × ${BENCH_PAYLOAD_BYTES} B;" \
  "fanout ${BENCH_FANOUT} × ${BENCH_FANOUT_MESSAGES} at ${BENCH_FANOUT_RATE}/s;" \
  "channels ${BENCH_CHANNELS} × ${BENCH_CHANNELS_MESSAGES} at ${BENCH_CHANNELS_RATE}/s;" \
  "idle ${BENCH_IDLE} for ${BENCH_IDLE_HOLD} s;" \
  "resume ${BENCH_RESUME} (${BENCH_RESUME_MESSAGES} + ${BENCH_RESUME_GAP} in the gap + ${BENCH_RESUME_MESSAGES});" \
  "wait ${BENCH_WAIT} × ${BENCH_WAIT_MESSAGES} at ${BENCH_WAIT_RATE}/s;" \
  "scaleout (${BENCH_REPEAT} rounds, loads ${BENCH_SCALEOUT_LOADS}): publishers ${BENCH_SCALEOUT_PUBLISHERS} on" \
  "${BENCH_SCALEOUT_HOT_CHANNELS} channels × ${BENCH_SCALEOUT_HOT_READERS} readers for ${BENCH_SCALEOUT_SECS} s;" \
  "channels ${BENCH_SCALEOUT_CHANNELS} × ${BENCH_SCALEOUT_READERS_PER_CHANNEL} readers," \
  "${BENCH_SCALEOUT_CHANNELS_MESSAGES} messages; payload ${BENCH_PAYLOAD_BYTES} B." \
  >>"$BENCH_OUT/meta.txt"

log "mode $MODE; targets: $BENCH_TARGETS; scenarios: $BENCH_SCENARIOS; results in $BENCH_OUT"
if [[ " $BENCH_SCENARIOS " == *" token "* ]]; then
  log "token check cost: cargo bench --bench token_hash"
  if cargo bench --bench token_hash >"$WORK/token_hash.log" 2>&1; then
    grep -i "^token " "$WORK/token_hash.log" >"$BENCH_OUT/token_hash.txt"
  else
    FAILED+=("token")
    log "FAILED: cargo bench --bench token_hash:"
    tail -n 20 "$WORK/token_hash.log" >&2
  fi
fi
for round in $(seq 1 "$BENCH_REPEAT"); do
  ROUND=$round
  for target in $BENCH_TARGETS; do
    setup_target "$target"
    scenarios_for "$target" "$round"
    [[ $MODE == smoke && $target == embedded && $round == 1 ]] && smoke_negative
    teardown_target "$target"
  done
done

if [[ $MODE == full ]]; then
  python3 "$ROOT/bench/results.py" render "$BENCH_OUT" "$BENCH_OUT.md" "Benchmarks, $DATE"
else
  python3 "$ROOT/bench/results.py" render "$BENCH_OUT" "$BENCH_OUT/results.md" "Benchmarks, $DATE ($MODE)"
  [[ $MODE == quick ]] && cat "$BENCH_OUT/results.md"
fi

# Issue 18's targets: figure and verdict for each (also in the markdown).
python3 "$ROOT/bench/results.py" targets "$BENCH_OUT"

if ((${#FAILED[@]})); then
  log "${#FAILED[@]} run(s) failed their checks: ${FAILED[*]}"
  exit 1
fi
log "every run passed its checks"

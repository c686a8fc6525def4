#!/bin/bash
# 20,000 idle streams over two channels processes (PostgreSQL + garage): the
# deployment model, since one process may hold at most 20,000 files on the
# benchmark machine. Needs the release binaries (scripts/bench.sh builds them).
# Memory is that of the first channels process only (half the streams).
set -e
cd "$(dirname "$0")/.."
source scripts/test-env.sh
ensure_postgres; start_garage >/dev/null 2>&1
trap 'kill $R $C1 $C2 2>/dev/null; stop_garage; dropdb -h 127.0.0.1 -U postgres --force $DB 2>/dev/null' EXIT
DB=bench_two_$$
createdb -h 127.0.0.1 -U postgres $DB
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB S3_ENDPOINT=$CHANTRA_TEST_S3_ENDPOINT S3_ACCESS_KEY=$CHANTRA_TEST_S3_ACCESS_KEY S3_SECRET_KEY=$CHANTRA_TEST_S3_SECRET_KEY S3_BUCKET=$CHANTRA_TEST_S3_BUCKET
export TOKEN_SECRET_SALT=bench-two-processes-secret-salt-0123456789 RATE_LIMIT_PER_SECOND=0 MAX_STREAMS=100000 MAX_STREAMS_PER_IP=100000 RUST_LOG=warn NO_SWEEPER=true
B=${CARGO_TARGET_DIR:-target}/release/chantra
REST_ADDR=127.0.0.1:28181 $B serve --role rest > ${TMPDIR:-/tmp}/chantra-two-r.log 2>&1 & R=$!
sleep 2
CHANNELS_ADDR=127.0.0.1:28171 AUTO_MIGRATE=false $B serve --role channels > ${TMPDIR:-/tmp}/chantra-two-c1.log 2>&1 & C1=$!
CHANNELS_ADDR=127.0.0.1:28172 AUTO_MIGRATE=false $B serve --role channels > ${TMPDIR:-/tmp}/chantra-two-c2.log 2>&1 & C2=$!
sleep 3
${CARGO_TARGET_DIR:-target}/release/chantra-load --scenario idle --subscribers 20000 --hold-secs 30 --source-ips 127.0.0.1-127.0.0.8 \
  --create-url http://127.0.0.1:28181/v1/channels \
  --subscribe-url 'http://127.0.0.1:28171/v1/public/{channel} http://127.0.0.1:28172/v1/public/{channel}' \
  --publish-url 'http://127.0.0.1:28181/v1/channels/{channel}/publish' --publish-header 'X-Publish-Token: {token}' \
  --server-pid $C1 | tee ${TMPDIR:-/tmp}/chantra-two-two.json
echo "exit=$?"
grep -ciE "warn|error" ${TMPDIR:-/tmp}/chantra-two-c1.log ${TMPDIR:-/tmp}/chantra-two-c2.log ${TMPDIR:-/tmp}/chantra-two-r.log || true

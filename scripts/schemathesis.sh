#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document with Schemathesis, against
# a running `chantra serve --role all` on the embedded default (SQLite + files,
# rate limiting off):
#   1. anonymous: every operation, every check (`--checks all`), all phases —
#      examples, coverage, fuzzing and stateful (the document's links:
#      create a channel, then use its id and token);
#   2. authorised: a real private channel, its publish token and one of its
#      grants are pinned, so the paths behind the token (publish, metadata,
#      grants, revoke, delete) are exercised with generated bodies, queries
#      and headers, not only refused.
# Fails on any 5xx, any response that does not conform to the document
# (status, content type, headers, schema) and any other failed check.
# Prints the number of requests sent and of 5xx answers.
#
# Uses the pinned schemathesis venv under $CHANTRA_TOOLS_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/chantra-tools), which
# `bash scripts/setup-test-tools.sh` installs; fails naming that script when
# it is missing.
# Builds target/debug/chantra if missing (CHANTRA_BIN picks another binary).
# SCHEMATHESIS_EXAMPLES (examples per operation and phase, default 300) and
# SCHEMATHESIS_SEED (default 9) size and fix the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# TOOLS and SCHEMATHESIS_VERSION.
# shellcheck source=scripts/lib/test-tools.sh
source "$ROOT/scripts/lib/test-tools.sh"
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-300}
SEED=${SCHEMATHESIS_SEED:-9}

BIN=${CHANTRA_BIN:-$ROOT/target/debug/chantra}
started=$(date +%s)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'schemathesis: %s\n' "$*" >&2; exit 1; }

require_tools schemathesis

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chantra-schemathesis.XXXXXX")
# Also installs the EXIT trap that stops the server and removes $WORK.
# shellcheck source=scripts/lib/chantra-server.sh
source "$ROOT/scripts/lib/chantra-server.sh"

ST=$TOOLS/schemathesis-venv/bin/schemathesis
if [[ ! -x $BIN ]]; then
  log "building chantra (cargo build)"
  cargo build --bin chantra
fi
start_chantra

# The document links a created channel's id to the operations on it, but the
# token a request needs travels in a header the document cannot link from a
# response body on its own: these links (added to the loaded document only,
# never to what is checked) let the stateful phase go create -> publish /
# grant -> revoke -> delete with the real token.
cat >"$WORK/chantra_links.py" <<'PY'
import schemathesis

@schemathesis.hook
def before_load_schema(context, raw_schema):
    paths = raw_schema["paths"]
    auth = {
        "path.channel_id": "$response.body#/channel_id",
        "header.X-Publish-Token": "$response.body#/publish_token",
    }
    paths["/v1/channels"]["post"]["responses"]["201"]["links"] = {
        name: {"operationId": op, "parameters": auth}
        for name, op in [("Get", "get_channel"), ("Publish", "publish_message"),
                         ("Grant", "create_read_grant"), ("Delete", "delete_channel")]
    }
    same_channel = {
        "path.channel_id": "$request.path.channel_id",
        "header.X-Publish-Token": "$request.header.X-Publish-Token",
    }
    grants = paths["/v1/channels/{channel_id}/read-grants"]["post"]["responses"]["201"]
    grants["links"] = {
        "Revoke": {"operationId": "revoke_read_grant",
                   "parameters": {**same_channel, "path.grant_id": "$response.body#/grant_id"}},
        "Get": {"operationId": "get_channel", "parameters": same_channel},
    }
    published = paths["/v1/channels/{channel_id}/publish"]["post"]["responses"]["201"]
    published["links"] = {
        "Get": {"operationId": "get_channel", "parameters": same_channel},
        "Delete": {"operationId": "delete_channel", "parameters": same_channel},
    }
PY

# One run of Schemathesis (in $WORK, so its caches stay out of the tree);
# its HAR file is what the requests are counted from.
# $1: name, $2: config file, then extra options.
run_phase() {
  local name=$1 config=$2
  shift 2
  log "phase $name"
  local status=0
  (cd "$WORK" && SCHEMATHESIS_HOOKS=chantra_links PYTHONPATH="$WORK" timeout 300 \
    "$ST" --config-file "$config" --no-color run "$REST_URL/openapi.json" \
    --checks all --phases examples,coverage,fuzzing,stateful --max-examples "$EXAMPLES" --seed "$SEED" \
    --workers 1 --request-timeout 10 --suppress-health-check all --continue-on-failure \
    --generation-database none --report har --report-har-path "$WORK/$name.har" "$@") >"$WORK/$name.txt" 2>&1 ||
    status=$?
  # Failures, errors and the summary, without the per-operation progress lines.
  sed -n '/^=* \(FAILURES\|ERRORS\|WARNINGS\|SUMMARY\) =*$/,$p' "$WORK/$name.txt"
  if ! grep -q 'SUMMARY' "$WORK/$name.txt"; then tail -n 60 "$WORK/$name.txt"; fi
  return $status
}

# Phase 1: nothing known in advance.
echo '' >"$WORK/anonymous.toml"
anonymous_status=0
run_phase anonymous "$WORK/anonymous.toml" || anonymous_status=$?

# Phase 2: a private channel with a grant, pinned by id and token.
channel=$(curl -fsS -X POST "$REST_URL/v1/channels" -H 'content-type: application/json' -d '{"visibility":"private"}')
channel_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["channel_id"])' <<<"$channel")
publish_token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["publish_token"])' <<<"$channel")
grant=$(curl -fsS -X POST "$REST_URL/v1/channels/$channel_id/read-grants" -H "x-publish-token: $publish_token")
grant_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["grant_id"])' <<<"$grant")
cat >"$WORK/authorised.toml" <<EOF
[parameters]
"path.channel_id" = "$channel_id"
"path.grant_id" = "$grant_id"
"header.X-Publish-Token" = "$publish_token"
EOF
authorised_status=0
# A DELETE would end the pinned channel for every request after it; phase 1's
# stateful links delete channels with their real tokens.
run_phase authorised "$WORK/authorised.toml" --exclude-method DELETE || authorised_status=$?

# Count what was really sent, and the server errors among it.
read -r requests errors authorised_ok < <(python3 - "$WORK/anonymous.har" "$WORK/authorised.har" <<'EOF'
import json, sys
requests = errors = authorised_ok = 0
for i, path in enumerate(sys.argv[1:]):
    try:
        entries = json.load(open(path))["log"]["entries"]
    except (OSError, ValueError, KeyError):
        continue
    for entry in entries:
        status = entry["response"]["status"]
        requests += 1
        errors += status >= 500
        authorised_ok += i == 1 and 200 <= status < 300
print(requests, errors, authorised_ok)
EOF
)
stop_chantra

echo
echo "schemathesis: $requests requests, $errors answered 5xx, $authorised_ok 2xx in the authorised phase"
echo "anonymous phase:  $([[ $anonymous_status == 0 ]] && echo passed || echo "FAILED ($anonymous_status)")"
echo "authorised phase: $([[ $authorised_status == 0 ]] && echo passed || echo "FAILED ($authorised_status)")"
echo "schemathesis finished in $(($(date +%s) - started)) s"
[[ $anonymous_status == 0 && $authorised_status == 0 && $errors == 0 && $requests -gt 0 && $authorised_ok -gt 0 ]]

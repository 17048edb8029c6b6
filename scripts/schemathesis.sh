#!/usr/bin/env bash
# Contract fuzzing: starts a stack of its own (free ports, its own database,
# Redis key prefix and queue), then runs Schemathesis (PyPI, pinned, in a
# virtualenv of the project's) against both committed contracts with every
# check, as a client generated from them would call the services: with a
# valid token (elections:admin + audit:read). Settings: schemathesis.toml.
# Fails when Schemathesis reports a failure (its warnings are printed, and do not fail).
# Usage: scripts/schemathesis.sh [vote|results]   (default: both)
# LIVEVOTE_SCHEMATHESIS_ARGS: more `st run` arguments (e.g. "--include-operation-id create
# --report har --report-dir /tmp/st"), word-split.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh postgres redis sqs schemathesis
st="$(bash scripts/services.sh --print-schemathesis)"
# One client sends everything: the per-viewer limit would answer most votes 429.
export LIVEVOTE_RATE_VOTER_PER_SEC=0
source scripts/private-stack.sh
private_stack_up schemathesis
token="$("$bin/livevote" token --sub "schemathesis|client" --admin --auditor --ttl-secs 3600)"

# Real identifiers for the operations no link leads to (schemathesis.toml reads them): an open
# election, one of its candidates, and the client's own vote in it, so votes can be accepted
# and receipts found.
api() { # method url [json]
  python3 - "$@" <<'PY'
import json, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=body, method=method, headers={
    "authorization": "Bearer " + __import__("os").environ["ST_TOKEN"],
    "content-type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=10))))
PY
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
export ST_TOKEN="$token"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ) later=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)
election=$(api POST "http://127.0.0.1:$results/api/v1/admin/elections" \
  "{\"title\":\"schemathesis\",\"startsAt\":\"$now\",\"endsAt\":\"$later\",\"candidates\":[{\"name\":\"A\"},{\"name\":\"B\"}]}")
export LIVEVOTE_ST_ELECTION_ID=$(echo "$election" | field '["electionId"]')
export LIVEVOTE_ST_CANDIDATE_ID=$(echo "$election" | field '["candidates"][0]["candidateId"]')
# Scheduled with a start that has passed: voting is open.
api PATCH "http://127.0.0.1:$results/api/v1/admin/elections/$LIVEVOTE_ST_ELECTION_ID/status" \
  '{"status":"SCHEDULED"}' >/dev/null
sleep 1.2 # ingestion's election cache
export LIVEVOTE_ST_VOTE_ID=$(api POST "http://127.0.0.1:$ingestion/api/v1/votes" \
  "{\"electionId\":\"$LIVEVOTE_ST_ELECTION_ID\",\"candidateId\":\"$LIVEVOTE_ST_CANDIDATE_ID\"}" | field '["voteId"]')

run() {
  local contract="$1" url="$2"
  echo "schemathesis: contracts/$contract against $url"
  "$st" --config-file schemathesis.toml run "contracts/$contract" --url "$url" \
    --header "Authorization: Bearer $token" ${LIVEVOTE_SCHEMATHESIS_ARGS:-}
}

which="${1:-both}"
status=0
if [ "$which" = both ] || [ "$which" = vote ]; then
  run vote-service.yaml "http://127.0.0.1:$ingestion" || status=1
fi
if [ "$which" = both ] || [ "$which" = results ]; then
  run results-service.yaml "http://127.0.0.1:$results" || status=1
fi
exit "$status"

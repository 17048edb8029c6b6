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

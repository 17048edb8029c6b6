#!/usr/bin/env bash
# The hostile-input suite: starts a stack of its own (free ports, its own
# database, Redis key prefix and queue), runs livevote-hostile against it,
# prints the table (case, expected, pass, observed) and stops the stack.
# Exit status: livevote-hostile's (1 when any case fails).
# Usage: scripts/hostile.sh [--only <text>]
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
bash scripts/services.sh postgres redis sqs
cargo build --locked -q --bins
bin="$CARGO_TARGET_DIR/debug"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
id="$(date +%s)-$$"
export LIVEVOTE_STACK_DIR="${TMPDIR:-/tmp}/livevote-hostile-$id"
export LIVEVOTE_BIN_DIR="$bin"
export LIVEVOTE_STACK_DATABASE="livevote_test_hostile_${id//-/_}"
export LIVEVOTE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$LIVEVOTE_STACK_DATABASE"
export LIVEVOTE_REDIS_PREFIX="lvtest-hostile-$id"
export LIVEVOTE_QUEUE_NAME="lvtest-hostile-$id"
ingestion=$(free_port) processor=$(free_port) results=$(free_port) issuer=$(free_port)
export LIVEVOTE_INGESTION_URL="http://127.0.0.1:$ingestion" LIVEVOTE_RESULTS_URL="http://127.0.0.1:$results"
# The local issuer, whose JWKS fetch count shows the refetch throttle.
export LIVEVOTE_ISSUER_URL="http://127.0.0.1:$issuer"

cleanup() {
  "$bin/livevote" stack down >/dev/null 2>&1 || echo "hostile: stack down failed (see $LIVEVOTE_STACK_DIR)" >&2
  rm -rf "$LIVEVOTE_STACK_DIR"
}
trap cleanup EXIT
"$bin/livevote" stack up --ingestion-port "$ingestion" --processor-port "$processor" \
  --results-port "$results" --issuer-port "$issuer" >/dev/null
"$bin/livevote-hostile" "$@"

# Sourced by scripts/hostile.sh and scripts/schemathesis.sh: builds the debug
# binaries and brings up a `livevote stack` of its own (free ports, its own
# database, Redis key prefix and queue, named after $1), stopped on exit.
# Sets bin, ingestion, processor, results and issuer (the ports).
set -euo pipefail

private_stack_up() {
  local name="$1"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
  cargo build --locked -q --bins
  bin="$CARGO_TARGET_DIR/debug"
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  local id
  id="$(date +%s)-$$"
  export LIVEVOTE_STACK_DIR="${TMPDIR:-/tmp}/livevote-$name-$id"
  export LIVEVOTE_BIN_DIR="$bin"
  export LIVEVOTE_STACK_DATABASE="livevote_test_${name}_${id//-/_}"
  export LIVEVOTE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$LIVEVOTE_STACK_DATABASE"
  export LIVEVOTE_REDIS_PREFIX="lvtest-$name-$id"
  export LIVEVOTE_QUEUE_NAME="lvtest-$name-$id"
  ingestion=$(free_port) processor=$(free_port) results=$(free_port) issuer=$(free_port)
  export LIVEVOTE_INGESTION_URL="http://127.0.0.1:$ingestion" LIVEVOTE_RESULTS_URL="http://127.0.0.1:$results"
  trap private_stack_down EXIT
  "$bin/livevote" stack up --ingestion-port "$ingestion" --processor-port "$processor" \
    --results-port "$results" --issuer-port "$issuer" >/dev/null
}

private_stack_down() {
  "$bin/livevote" stack down >/dev/null 2>&1 || echo "stack down failed (see $LIVEVOTE_STACK_DIR)" >&2
  rm -rf "$LIVEVOTE_STACK_DIR"
}

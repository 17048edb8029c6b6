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
  local id
  id="$(date +%s)-$$"
  export LIVEVOTE_STACK_DIR="${TMPDIR:-/tmp}/livevote-$name-$id"
  export LIVEVOTE_BIN_DIR="$bin"
  export LIVEVOTE_STACK_DATABASE="livevote_test_${name}_${id//-/_}"
  export LIVEVOTE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$LIVEVOTE_STACK_DATABASE"
  export LIVEVOTE_REDIS_PREFIX="lvtest-$name-$id"
  export LIVEVOTE_QUEUE_NAME="lvtest-$name-$id"
  # Four distinct free ports: all sockets are held until the four are chosen.
  read -r ingestion processor results issuer < <(python3 -c '
import socket
held = [socket.socket() for _ in range(4)]
for s in held: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))')
  export LIVEVOTE_INGESTION_URL="http://127.0.0.1:$ingestion" LIVEVOTE_RESULTS_URL="http://127.0.0.1:$results"
  trap private_stack_down EXIT
  "$bin/livevote" stack up --ingestion-port "$ingestion" --processor-port "$processor" \
    --results-port "$results" --issuer-port "$issuer" >/dev/null
}

private_stack_down() {
  "$bin/livevote" stack down >/dev/null 2>&1 || echo "stack down failed (see $LIVEVOTE_STACK_DIR)" >&2
  rm -rf "$LIVEVOTE_STACK_DIR"
}

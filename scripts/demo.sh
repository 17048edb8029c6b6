#!/usr/bin/env bash
# The README's first command: builds the binaries, brings the local stack up
# (installing and starting PostgreSQL, Redis and the local SQS endpoint when
# missing), and runs the demo: `livevote stack up && livevote demo`.
# Arguments go to `livevote demo` (e.g. --voters 5000 --rate 300 --seconds 30).
# `scripts/demo.sh --embedded` runs the in-memory demo instead (no servers, not durable).
# Stop the stack afterwards with: "$CARGO_TARGET_DIR/release/livevote" stack down
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
echo "building livevote (release; several minutes the first time)" >&2
cargo build --locked --release -q -p livevote-cli -p livevote-ingestion -p livevote-processor -p livevote-results
bin="$CARGO_TARGET_DIR/release"
if [ "${1:-}" = "--embedded" ]; then
  shift
  exec "$bin/livevote" demo --embedded "$@"
fi
"$bin/livevote" stack up
exec "$bin/livevote" demo "$@"

#!/usr/bin/env bash
# Storage and processor benchmark (release build): persist_batch vs a plain
# batched INSERT into the same schema, Redis claim+confirm pairs/s, and the
# livevote-processor binary draining a pre-filled queue into PostgreSQL, next
# to the plain INSERT rate of the same run (ratio). Arguments are passed to
# adapter-bench (e.g. --votes 100000 --batch 1000 --workers 4 --rounds 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
bash scripts/services.sh postgres redis sqs
cargo build --release --locked -q -p livevote-loadtests -p livevote-processor
"$CARGO_TARGET_DIR/release/adapter-bench" --processor-bin "$CARGO_TARGET_DIR/release/livevote-processor" "$@"

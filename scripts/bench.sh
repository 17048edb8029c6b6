#!/usr/bin/env bash
# Storage adapter benchmark (release build): persist_batch vs a plain batched
# INSERT into the same schema, and Redis claim+confirm pairs/s. Arguments are
# passed to adapter-bench (e.g. --votes 100000 --batch 1000 --workers 4 --rounds 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
bash scripts/services.sh postgres redis
cargo run --release --locked -q -p livevote-loadtests --bin adapter-bench -- "$@"

#!/usr/bin/env bash
# Ingestion benchmark (release build): the full vote path of livevote-ingestion
# (JWT, limits, election cache, Redis claim/confirm, SQS publish) against a bare
# axum handler parsing the same JSON, same client, same run; prints votes/s,
# p50/p99 and the ratio. Arguments go to ingest-bench
# (e.g. --votes 10000 --concurrency 64 --rounds 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
bash scripts/services.sh postgres redis sqs
cargo build --release --locked -q -p livevote-ingestion -p livevote-loadtests
"$CARGO_TARGET_DIR/release/ingest-bench" --ingestion-bin "$CARGO_TARGET_DIR/release/livevote-ingestion" "$@"

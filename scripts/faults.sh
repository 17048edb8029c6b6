#!/usr/bin/env bash
# The fault suite: builds the services with their crash points compiled in
# (the `failpoints` feature; release builds never have them), then runs
# livevote-faults, which starts its own PostgreSQL, Redis and SQS endpoint on
# free ports, a stack per case on them, a load per case, breaks one thing
# per case and prints the table (case, expected, pass, observed).
# Exit status: livevote-faults's (1 when any case fails).
# Usage: scripts/faults.sh [--only <text>] [--rate N] [--duration-secs N]
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
# redis-server/redis-cli and the PostgreSQL server binaries, and the local SQS endpoint's binary.
bash scripts/services.sh redis postgres sqs
state="${LIVEVOTE_STATE_DIR:-$HOME/.cache/livevote}"
export LIVEVOTE_FAULTS_SQS_BIN="${LIVEVOTE_FAULTS_SQS_BIN:-$state/target-sqs-local/release/livevote-sqs-local}"

# The fault build: same dependencies as the test build, so only the two
# services (and what links them) compile again. Kept apart from the normal binaries.
cargo build --locked -q --workspace --bins \
  --features livevote-ingestion/failpoints,livevote-processor/failpoints
bins="$CARGO_TARGET_DIR/failpoints-bin"
mkdir -p "$bins"
for b in livevote livevote-ingestion livevote-processor livevote-results livevote-load livevote-faults; do
  cp -f "$CARGO_TARGET_DIR/debug/$b" "$bins/$b"
done
export LIVEVOTE_BIN_DIR="$bins"
"$bins/livevote-faults" "$@"

#!/usr/bin/env bash
# A flame graph (SVG) of livevote-ingestion under the closed-loop load of
# ingest-bench: `perf record` samples the service during the first full
# round, inferno folds the stacks and draws them.
#
# Usage: scripts/flamegraph-ingestion.sh OUT.svg [INGESTION_BIN]
# Without INGESTION_BIN the service is built from this checkout (release).
# Needs perf (Debian package linux-perf) and inferno (cargo install inferno).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: $0 OUT.svg [INGESTION_BIN]}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "inferno is missing: cargo install inferno" >&2; exit 1; }
bash scripts/services.sh postgres redis sqs
cargo build --release --locked -q -p livevote-ingestion -p livevote-loadtests
bin="${2:-$CARGO_TARGET_DIR/release/livevote-ingestion}"
data="$(mktemp -d)/perf.data"
"$CARGO_TARGET_DIR/release/ingest-bench" --ingestion-bin "$bin" --rounds 1 --votes 20000 --open-seconds 1 \
  --perf-record "$data"
perf script -i "$data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "livevote-ingestion under ingest-bench" > "$out"
echo "flame graph: $out"

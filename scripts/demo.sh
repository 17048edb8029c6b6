#!/usr/bin/env bash
# The README's first command. Until the operator CLI and the local stack land,
# this runs the embedded demo: all use cases in one process on the in-memory
# adapters (not durable). Arguments: [voters] [repeat-percent].
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
exec cargo run --locked --release -p livevote-results --example embedded_demo -- "$@"

#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Formatting, lints, the dependency rules of the hexagon, then every test.
# scripts/services.sh starts (and on a fresh machine installs) the servers the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build output lives outside the clone so CI runs on a fresh clone build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livevote/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"
# Keep the shared target directory from growing without bound.
max_gib="${LIVEVOTE_TARGET_MAX_GIB:-20}"
used_gib=$(du -s --block-size=1G "$CARGO_TARGET_DIR" 2>/dev/null | cut -f1 || echo 0)
if [ "${used_gib:-0}" -gt "$max_gib" ]; then
  echo "target dir is ${used_gib} GiB (> ${max_gib}): cleaning" >&2
  cargo clean
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }

echo "== format"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== dependency rules"
bash scripts/check-deps.sh

echo "== local services"
bash scripts/services.sh postgres redis sqs moto chromium promtool schemathesis

echo "== infrastructure"
# Alert rules: syntax, then their unit tests (which alerts fire when).
promtool check config infra/prometheus/prometheus.yml
promtool test rules infra/prometheus/alerts_test.yml
# Dashboards: the committed JSON is what infra/grafana/build.py generates.
python3 infra/grafana/build.py --check
if command -v terraform >/dev/null; then
  terraform fmt -check -recursive -diff infra/terraform
else
  echo "warning: terraform not installed: the terraform fmt check did not run" >&2
fi
# Each PostgreSQL test creates its own database; drop those of earlier runs.
if command -v psql >/dev/null; then
  # A failed clean-up only leaves disk behind, so it warns instead of failing the run.
  if ! old_dbs=$(psql -h 127.0.0.1 -U postgres -d postgres -qAtc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'livevote_test_%'"); then
    echo "warning: could not list old test databases (see psql's message above)" >&2
    old_dbs=""
  fi
  for db in $old_dbs; do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null ||
      echo "warning: could not drop old test database $db" >&2
  done
fi

# Each Redis test uses its own key prefix lvtest-<uuid>; delete the keys of earlier runs.
if command -v redis-cli >/dev/null; then
  if ! redis-cli -h 127.0.0.1 -p 6379 --scan --pattern 'lvtest-*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null; then
    echo "warning: could not delete old Redis test keys" >&2
  fi
fi

echo "== tests"
# The SQS adapter's integration tests run against the project's endpoint here,
# and once more against moto below (same code, endpoint chosen by variables).
export LIVEVOTE_TEST_SQS_ENDPOINT="${LIVEVOTE_TEST_SQS_ENDPOINT:-http://127.0.0.1:4566}"
export LIVEVOTE_TEST_SQS_SERVER="${LIVEVOTE_TEST_SQS_SERVER:-awsim}"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== hostile input (scripts/hostile.sh)"
bash scripts/hostile.sh

echo "== contracts fuzzed (scripts/schemathesis.sh)"
# Both contracts, every Schemathesis check, as a generated client would call the services;
# bounded: about 2 minutes here, stopped after 15.
timeout 900 bash scripts/schemathesis.sh

echo "== faults (scripts/faults.sh)"
bash scripts/faults.sh

echo "== SQS adapter against moto"
moto_env=(LIVEVOTE_TEST_SQS_ENDPOINT="${LIVEVOTE_TEST_MOTO_ENDPOINT:-http://127.0.0.1:4567}" LIVEVOTE_TEST_SQS_SERVER=moto)
if command -v cargo-nextest >/dev/null 2>&1; then
  # A filter on the whole workspace keeps the feature set, so nothing rebuilds.
  env "${moto_env[@]}" cargo nextest run --workspace --locked --no-fail-fast -E 'package(livevote-sqs) & test(/^queue::/)'
else
  env "${moto_env[@]}" cargo test --locked --no-fail-fast -p livevote-sqs --test it queue::
fi

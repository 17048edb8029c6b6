#!/usr/bin/env bash
# Enforces the direction apps -> adapters -> ports -> domain and keeps the
# domain and the ports free of runtimes, serialisation and infrastructure
# crates (full dependency tree: normal, build and dev edges). Also: no
# adapter depends on another adapter, and no service ships the test-support
# crate (normal and build edges; dev-dependencies are where tests get them).
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(tokio|serde|serde_json|sqlx|axum|fred|aws-[a-z-]+|hyper|reqwest) '
status=0

# grep that treats "no match" (exit 1) as an empty result but still fails on real errors (exit 2).
lines_matching() { grep "$@" || [ $? -eq 1 ]; }

check() {
  local crate="$1" allowed_ours="$2"
  local tree
  tree=$(cargo tree -p "$crate" --locked --prefix none --edges normal,build,dev)
  local bad
  bad=$(lines_matching -E "$forbidden" <<<"$tree" | sort -u)
  if [ -n "$bad" ]; then
    echo "FAIL: $crate depends on forbidden crates:"; echo "$bad" | sed 's/^/  /'
    status=1
  fi
  local ours
  ours=$(lines_matching -E '^livevote-' <<<"$tree" | cut -d' ' -f1 | sort -u | lines_matching -vxE "$allowed_ours")
  if [ -n "$ours" ]; then
    echo "FAIL: $crate depends on $(echo $ours) (only $allowed_ours allowed)"
    status=1
  fi
  [ $status -eq 0 ] && echo "ok: $crate"
}

# What `crate` reaches through normal and build edges only (what its binary links).
shipped() {
  cargo tree -p "$1" --locked --prefix none --edges normal,build | lines_matching -E '^livevote-' | cut -d' ' -f1 | sort -u
}

check livevote-domain 'livevote-domain'
check livevote-ports 'livevote-(domain|ports)'

adapters=(livevote-auth0 livevote-http livevote-memory livevote-metrics livevote-postgres livevote-redis livevote-sqs livevote-turnstile)
for adapter in "${adapters[@]}"; do
  others=$(shipped "$adapter" | lines_matching -vxE "$adapter|livevote-(domain|ports)")
  if [ -n "$others" ]; then
    echo "FAIL: adapter $adapter depends on $(echo $others) (adapters depend on the ports and the domain only)"
    status=1
  else
    echo "ok: $adapter depends on no other adapter"
  fi
done

for service in livevote-ingestion livevote-processor livevote-results livevote-cli; do
  if shipped "$service" | grep -qx 'livevote-testkit'; then
    echo "FAIL: $service ships livevote-testkit (test support belongs in [dev-dependencies])"
    status=1
  else
    echo "ok: $service ships no test support"
  fi
done
exit $status

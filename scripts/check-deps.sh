#!/usr/bin/env bash
# Enforces the direction apps -> adapters -> ports -> domain and keeps the
# domain and the ports free of runtimes, serialisation and infrastructure
# crates. Reads the full dependency tree (normal, build and dev edges).
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

check livevote-domain 'livevote-domain'
check livevote-ports 'livevote-(domain|ports)'
exit $status

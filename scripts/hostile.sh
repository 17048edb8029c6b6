#!/usr/bin/env bash
# The hostile-input suite: starts a stack of its own (free ports, its own
# database, Redis key prefix and queue), runs livevote-hostile against it,
# prints the table (case, expected, pass, observed) and stops the stack.
# Exit status: livevote-hostile's (1 when any case fails).
# Usage: scripts/hostile.sh [--only <text>]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh postgres redis sqs
source scripts/private-stack.sh
private_stack_up hostile
# The local issuer, whose JWKS fetch count shows the refetch throttle.
export LIVEVOTE_ISSUER_URL="http://127.0.0.1:$issuer"
"$bin/livevote-hostile" "$@"

#!/usr/bin/env bash
# Makes sure the local servers the tests need are running, installing them
# from Debian's packages when missing. Usage: scripts/services.sh postgres redis sqs moto chromium
#   sqs   the project's local SQS + CloudWatch metrics endpoint (infra/local/sqs-local,
#         built on first use) on 127.0.0.1:4566
#   moto  moto_server (PyPI moto[server], pinned, in a venv) on 127.0.0.1:4567
#   chromium  Debian's headless browser and its WebDriver (chromedriver) for the page tests (installed, not started)
#   promtool  the Prometheus rule checker for the alert tests (Debian's prometheus
#             package; installed, not started)
#   schemathesis  the contract fuzzer (PyPI schemathesis, pinned, in a venv; installed,
#             not started); `scripts/services.sh --print-schemathesis` prints its path
# Local development and CI only: a freshly installed PostgreSQL is set to
# trust connections from 127.0.0.1.
set -euo pipefail

log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port="$1" what="$2"
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 0.5; done
  log "$what did not start listening on 127.0.0.1:$port"; return 1
}

apt_install() {
  command -v apt-get >/dev/null || { log "apt-get not found: install $* by hand"; return 1; }
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

ensure_postgres() {
  port_open 5432 && return 0
  local fresh=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "PostgreSQL is not installed: installing the Debian package"
    apt_install postgresql
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  if [ "$fresh" = 1 ]; then
    # Trust local TCP connections, as the tests connect without a password.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  log "starting PostgreSQL $version"
  # pg_ctlcluster fails when the cluster is already starting; the port check below decides.
  if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
    log "pg_ctlcluster could not start PostgreSQL $version (see its message above); waiting for the port anyway"
  fi
  wait_port 5432 PostgreSQL
}

ensure_redis() {
  # The tests also start private redis-servers of their own, so the binary must exist.
  if ! command -v redis-server >/dev/null; then
    log "redis-server is not installed: installing the Debian package"
    apt_install redis-server
  fi
  port_open 6379 && return 0
  local dir="${LIVEVOTE_STATE_DIR:-$HOME/.cache/livevote}/redis"
  mkdir -p "$dir"
  log "starting redis-server on 127.0.0.1:6379 (no persistence, noeviction; log in $dir)"
  # noeviction as in production: an evicted claim would weaken "one vote per viewer".
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --maxmemory-policy noeviction --dir "$dir" --logfile "$dir/redis.log"
  wait_port 6379 Redis
}

state_dir() { local d="${LIVEVOTE_STATE_DIR:-$HOME/.cache/livevote}"; mkdir -p "$d"; echo "$d"; }

SQS_LOCAL_PORT=4566
MOTO_PORT=4567
MOTO_VERSION=5.2.5
SCHEMATHESIS_VERSION=4.32.5

ensure_sqs_local() {
  port_open "$SQS_LOCAL_PORT" && return 0
  local dir root
  dir=$(state_dir)
  root="$(cd "$(dirname "$0")/.." && pwd)"
  command -v cargo >/dev/null || { log "cargo not found: needed to build the local SQS endpoint"; return 1; }
  log "building the local SQS endpoint (infra/local/sqs-local; a few minutes the first time)"
  CARGO_TARGET_DIR="$dir/target-sqs-local" cargo build --release --locked -q \
    --manifest-path "$root/infra/local/sqs-local/Cargo.toml"
  log "starting the local SQS endpoint on 127.0.0.1:$SQS_LOCAL_PORT (log in $dir/sqs-local.log)"
  nohup "$dir/target-sqs-local/release/livevote-sqs-local" "127.0.0.1:$SQS_LOCAL_PORT" \
    >"$dir/sqs-local.log" 2>&1 </dev/null &
  wait_port "$SQS_LOCAL_PORT" "the local SQS endpoint"
}

ensure_moto() {
  port_open "$MOTO_PORT" && return 0
  local dir venv
  dir=$(state_dir)
  venv="$dir/moto-venv"
  if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/pip" show moto 2>/dev/null | grep -qx "Version: $MOTO_VERSION"; then
    command -v python3 >/dev/null || apt_install python3
    python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
    log "installing moto[server]==$MOTO_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  log "starting moto_server on 127.0.0.1:$MOTO_PORT (log in $dir/moto.log)"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$dir/moto.log" 2>&1 </dev/null &
  wait_port "$MOTO_PORT" moto_server
}

schemathesis_bin() { echo "$(state_dir)/schemathesis-venv/bin/st"; }

ensure_schemathesis() {
  # Not a server: scripts/schemathesis.sh fuzzes both contracts with it.
  local venv
  venv="$(state_dir)/schemathesis-venv"
  if [ -x "$venv/bin/st" ] && "$venv/bin/pip" show schemathesis 2>/dev/null | grep -qx "Version: $SCHEMATHESIS_VERSION"; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  log "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

ensure_chromium() {
  # Not a server: the browser the page tests load the on-air and audit pages in,
  # driven over WebDriver by chromedriver (each test starts its own).
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  log "chromium or chromedriver is not installed: installing the Debian packages (for the page tests)"
  apt_install --no-install-recommends chromium chromium-driver
}

ensure_promtool() {
  # Not a server: checks and unit-tests infra/prometheus/alerts.yml.
  command -v promtool >/dev/null && return 0
  log "promtool is not installed: installing Debian's prometheus package (for the alert tests)"
  apt_install --no-install-recommends prometheus
}

for service in "$@"; do
  case "$service" in
    --print-schemathesis) schemathesis_bin ;;
    schemathesis) ensure_schemathesis ;;
    postgres) ensure_postgres ;;
    redis) ensure_redis ;;
    sqs) ensure_sqs_local ;;
    moto) ensure_moto ;;
    chromium) ensure_chromium ;;
    promtool) ensure_promtool ;;
    *) log "unknown service $service"; exit 2 ;;
  esac
done

#!/usr/bin/env bash
# Makes sure the local servers the tests need are running, installing them
# from Debian's packages when missing. Usage: scripts/services.sh postgres redis
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

for service in "$@"; do
  case "$service" in
    postgres) ensure_postgres ;;
    redis) ensure_redis ;;
    *) log "unknown service $service"; exit 2 ;;
  esac
done

# Shared helpers for the make targets (sourced, not run).

# The PostgreSQL server to use: DATABASE_URL's server if set, else local.
pg_server_url() {
  local url="${TEST_DATABASE_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
  echo "$url"
}

# "postgres://user@host:port/db?x" -> "postgres://user@host:port/NAME?x"
url_with_database() {
  local url="$1" name="$2"
  python3 - "$url" "$name" <<'PY'
import sys, urllib.parse as u
url, name = sys.argv[1], sys.argv[2]
p = u.urlsplit(url)
print(u.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment)))
PY
}

# Does the server of URL $1 (postgres://, amqp://, amqps://) accept TCP
# connections?
tcp_reachable() {
  python3 - "$1" <<'PY'
import socket, sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
default = {"amqp": 5672, "amqps": 5671}.get(p.scheme, 5432)
try:
    socket.create_connection((p.hostname or "127.0.0.1", p.port or default), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

pg_reachable() { tcp_reachable "$1"; }

# Makes sure PostgreSQL answers at $1, starting the local cluster if it is
# installed but stopped; otherwise says what to do.
ensure_postgres() {
  local url="$1"
  pg_reachable "$url" && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "==> starting the local PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_reachable "$url" && return 0; sleep 1; done
  fi
  echo "error: PostgreSQL is not reachable at $url" >&2
  echo "  install and start it (Debian: apt-get install postgresql), or set DATABASE_URL to a server you can use" >&2
  return 1
}

psql_admin() {
  psql "$(url_with_database "$(pg_server_url)" postgres)" -v ON_ERROR_STOP=1 -qAt "$@"
}

# Drops and creates database $1 on pg_server_url's server with tronpay's
# tables (the release CLI must be built: release_build); prints its URL.
# Each benchmark starts from one.
fresh_database() {
  local url
  url="$(url_with_database "$(pg_server_url)" "$1")"
  psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  DATABASE_URL="$url" "$RELEASE_DIR/tronpay" db create-tables >/dev/null
  echo "$url"
}

# "amqp://user:pass@host:port/vhost" reachable?
amqp_reachable() { tcp_reachable "$1"; }

# Makes sure RabbitMQ answers at $1, starting the local server if it is
# installed but stopped; otherwise says what to do.
ensure_rabbitmq() {
  local url="$1"
  amqp_reachable "$url" && return 0
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "==> starting the local RabbitMQ server"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do amqp_reachable "$url" && return 0; sleep 1; done
  fi
  echo "error: RabbitMQ is not reachable at $url" >&2
  echo "  install and start it (Debian: apt-get install rabbitmq-server), or set RABBITMQ_URL to a broker you can use" >&2
  return 1
}

# The release binaries, built as `make build` (the Makefile's RELEASE_BUILD)
# builds them: `make up`, the benchmarks and the image ask cargo for the same
# packages, so none rebuilds what another built. They land in $RELEASE_DIR.
RELEASE_DIR="${CARGO_TARGET_DIR:-target}/release"
release_build() {
  echo "==> building release binaries (make build)"
  "${MAKE:-make}" --no-print-directory -s build
}

# Waits until GET $1 answers 2xx (up to $2 seconds); says which log to read
# ($4, default the log make up keeps for service $3).
wait_http() {
  local url="$1" seconds="$2" name="$3" log="${4:-$STATE_DIR/logs/$3.log}"
  for _ in $(seq 1 $((seconds * 5))); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "error: $name did not answer $url within ${seconds}s; see $log" >&2
  tail -n 20 "$log" >&2 || true
  return 1
}

# Whether process $1 runs (a zombie waiting to be reaped does not).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Where make up keeps pids, logs and the webhook secret.
STATE_DIR=.local

# The pid make up recorded for service $1, if that process still runs and
# still is that service (pids get reused).
service_pid() {
  local pidfile="$STATE_DIR/run/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" || return 1
  echo "$pid"
}

# PgBouncer >= 1.21 (prepared statements in transaction mode) for the tests
# that run the services behind it. Debian 12 ships 1.18, so this builds
# 1.24.1 from Debian's source tarball (checksum-verified) into
# .local/pgbouncer once; prints the binary's path.
PGBOUNCER_VERSION=1.24.1
PGBOUNCER_SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
ensure_pgbouncer() {
  local prefix="$PWD/$STATE_DIR/pgbouncer-$PGBOUNCER_VERSION"
  if [ -x "$prefix/bin/pgbouncer" ]; then echo "$prefix/bin/pgbouncer"; return 0; fi
  echo "==> building PgBouncer $PGBOUNCER_VERSION into $prefix" >&2
  if ! pkg-config --exists libevent 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -q libevent-dev pkg-config >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libevent-dev pkg-config >/dev/null; }
    else
      echo "error: PgBouncer needs libevent to build: apt-get install libevent-dev pkg-config" >&2
      return 1
    fi
  fi
  local work
  work="$(mktemp -d)"
  # (Called inside $(...), where set -e is off: every step says if it failed.)
  curl -fsS --retry 3 -o "$work/pgbouncer.tar.gz" \
    "http://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_$PGBOUNCER_VERSION.orig.tar.gz" ||
    { echo "error: downloading PgBouncer's source failed" >&2; return 1; }
  echo "$PGBOUNCER_SHA256  $work/pgbouncer.tar.gz" | sha256sum -c --quiet - >&2 ||
    { echo "error: PgBouncer's source tarball does not have the expected sha256; not building it" >&2; return 1; }
  tar -xzf "$work/pgbouncer.tar.gz" -C "$work" || return 1
  (
    cd "$work/pgbouncer-$PGBOUNCER_VERSION"
    ./configure --prefix="$prefix" --without-openssl --without-cares --without-systemd \
      --without-pam --without-ldap >"$work/build.log" 2>&1 &&
      make -j2 >>"$work/build.log" 2>&1 && make install >>"$work/build.log" 2>&1
  ) || { echo "error: building PgBouncer failed; see $work/build.log" >&2; return 1; }
  rm -rf "$work"
  echo "$prefix/bin/pgbouncer"
}

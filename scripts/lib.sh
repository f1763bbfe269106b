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

pg_reachable() {
  python3 - "$1" <<'PY'
import socket, sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
try:
    socket.create_connection((p.hostname or "127.0.0.1", p.port or 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

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

# "amqp://user:pass@host:port/vhost" reachable?
amqp_reachable() {
  python3 - "$1" <<'PY'
import socket, sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
try:
    socket.create_connection((p.hostname or "127.0.0.1", p.port or 5672), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

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

# Waits until GET $1 answers 2xx (up to $2 seconds); says which log to read.
wait_http() {
  local url="$1" seconds="$2" name="$3"
  for _ in $(seq 1 $((seconds * 5))); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "error: $name did not answer $url within ${seconds}s; see $STATE_DIR/logs/$name.log" >&2
  tail -n 20 "$STATE_DIR/logs/$name.log" >&2 || true
  return 1
}

# Whether process $1 runs (a zombie waiting to be reaped does not).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Where make up keeps pids, logs and the webhook secret.
STATE_DIR=.local

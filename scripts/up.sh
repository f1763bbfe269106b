#!/usr/bin/env bash
# make up: runs tronpay locally against the local PostgreSQL (native
# processes; logs and pids under .local/). The chain watcher, webhook
# dispatcher and sandbox node join the stack in later issues.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

API_BIND="${API_BIND:-127.0.0.1:5000}"
server="$(pg_server_url)"
ensure_postgres "$server"
export DATABASE_URL="${DATABASE_URL:-$(url_with_database "$server" tronpay)}"

mkdir -p .local/logs .local/run
echo "==> building release binaries"
cargo build --release --quiet -p tronpay-api -p tronpay-cli

dbname="$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).path.lstrip("/"))' "$DATABASE_URL")"
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$dbname'")" != "1" ]; then
  echo "==> creating database $dbname"
  psql_admin -c "CREATE DATABASE \"$dbname\""
fi
./target/release/tronpay db create-tables

start() {
  local name="$1"; shift
  local pidfile=".local/run/$name.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "==> $name already running (pid $(cat "$pidfile"))"
    return
  fi
  nohup "$@" >>".local/logs/$name.log" 2>&1 &
  echo $! >"$pidfile"
  echo "==> started $name (pid $!, log .local/logs/$name.log)"
}

start tronpay-api env BIND="$API_BIND" ./target/release/tronpay-api
for _ in $(seq 1 50); do
  curl -fsS "http://$API_BIND/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://$API_BIND/health" >/dev/null || { echo "tronpay-api did not become healthy; see .local/logs/tronpay-api.log" >&2; exit 1; }

cat <<EOT

tronpay is up.
  API       http://$API_BIND   (health: http://$API_BIND/health)
  database  $(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p.hostname, p.port or 5432, p.path)' "$DATABASE_URL")
  logs      .local/logs/     stop with: make down

Try it:
  curl -s -X POST http://$API_BIND/create_payment -H 'Content-Type: application/json' \\
    -d '{"wallet_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "expected_amount_usdt": 12.34,
         "callback_url": "https://shop.example.com/hook", "order_id": "order-1"}'
  curl -s http://$API_BIND/payment_status/<payment_id>
  curl -s http://$API_BIND/stats
EOT

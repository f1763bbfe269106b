#!/usr/bin/env bash
# make up: the whole tronpay stack on this machine — PostgreSQL, RabbitMQ,
# migrations, tronpay-api, tronpay-chain-watcher, tronpay-webhook-dispatcher
# and tronpay-sandbox (a TRON node of its own: a block a second, final three
# blocks later). With Docker Compose when a Docker engine answers, otherwise
# as native processes against the local PostgreSQL and RabbitMQ (pids and
# logs under .local/). `make down` stops what this started.
#
# Overrides (environment): API_BIND (127.0.0.1:5000), SANDBOX_BIND
# (127.0.0.1:8090), WATCHER_BIND (127.0.0.1:5001), DISPATCHER_BIND
# (127.0.0.1:5002), DATABASE_URL, RABBITMQ_URL, WEBHOOK_SECRET,
# UP_MODE=native|compose (default: compose when `docker info` works),
# TRONPAY_BIN_DIR (use these binaries instead of building release ones).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

API_BIND="${API_BIND:-127.0.0.1:5000}"
SANDBOX_BIND="${SANDBOX_BIND:-127.0.0.1:8090}"
WATCHER_BIND="${WATCHER_BIND:-127.0.0.1:5001}"
DISPATCHER_BIND="${DISPATCHER_BIND:-127.0.0.1:5002}"
mkdir -p "$STATE_DIR/logs" "$STATE_DIR/run"

mode="${UP_MODE:-}"
if [ -z "$mode" ]; then
  if docker info >/dev/null 2>&1; then mode=compose; else mode=native; fi
fi

# Prints where everything listens and the trial; $1 is the callback URL the
# dispatcher can reach the sandbox's receiver at.
summary() {
  local callback="$1" secret="$2" logs="$3" workers
  if [ "$mode" = compose ]; then
    # No host ports: they scale (docker compose up --scale …).
    workers="  watcher, dispatcher in the compose network (no host port: they scale); health: make ps"
  else
    workers="  chain watcher       http://$WATCHER_BIND/health
  webhook dispatcher  http://$DISPATCHER_BIND/health"
  fi
  local address=TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt order="trial-$(date +%s)"
  cat <<EOT

tronpay is up ($mode).
  API                 http://$API_BIND          (health: /health)
$workers
  sandbox TRON node   http://$SANDBOX_BIND          (status: /sandbox/status)
  webhook receiver    http://$SANDBOX_BIND/sandbox/webhooks
  webhook secret      $secret
  logs                $logs        stop with: make down

Try it — create a payment, pay it with one transfer on the sandbox chain:
  curl -s -X POST http://$API_BIND/create_payment -H 'Content-Type: application/json' -d '{"wallet_address": "$address", "expected_amount_usdt": 12.34, "callback_url": "$callback", "order_id": "$order"}'
  curl -s -X POST http://$SANDBOX_BIND/sandbox/transfer -H 'Content-Type: application/json' -d '{"to": "$address", "amount": "12.34"}'
About five seconds later (three blocks to finality) it is completed, and the
signed webhook has arrived at the sandbox's receiver ("verified": true):
  curl -s http://$API_BIND/payment_status/<payment_id>
  curl -s http://$SANDBOX_BIND/sandbox/webhooks
EOT
}

if [ "$mode" = compose ]; then
  # The secret the dispatcher signs with and the sandbox checks, kept
  # between runs.
  secret_file="$STATE_DIR/webhook-secret"
  [ -s "$secret_file" ] || echo "whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$secret_file"
  export WEBHOOK_SECRET="${WEBHOOK_SECRET:-$(cat "$secret_file")}"
  export SANDBOX_WEBHOOK_SECRET="$WEBHOOK_SECRET"
  export TRON_NODE_URL=http://tronpay-sandbox:8090 BLOCK_INTERVAL_MS=1000 CALLBACK_ALLOW_PRIVATE=true
  export API_PORT="${API_BIND##*:}" SANDBOX_PORT="${SANDBOX_BIND##*:}"
  # Recorded first, so that make down stops whatever part of it started.
  echo compose >"$STATE_DIR/run/mode"
  echo "==> docker compose: building the image, the database and its tables"
  docker compose --profile sandbox build
  docker compose up -d --wait postgres rabbitmq
  docker compose run --rm migrate
  if [ -z "$(docker compose --profile sandbox ps -q --status running tronpay-sandbox)" ]; then
    # A new sandbox is a new chain: the watcher starts again at its final
    # block (its cursor lives on in the database volume).
    docker compose stop tronpay-chain-watcher >/dev/null 2>&1 || true
    docker compose run --rm --no-deps migrate tronpay chain reset --yes >/dev/null
  fi
  echo "==> docker compose --profile sandbox up"
  docker compose --profile sandbox up -d --wait
  summary "http://tronpay-sandbox:8090/sandbox/webhooks" "$WEBHOOK_SECRET" "make logs"
  exit 0
fi

server="$(pg_server_url)"
ensure_postgres "$server"
export DATABASE_URL="${DATABASE_URL:-$(url_with_database "$server" tronpay)}"
export RABBITMQ_URL="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
ensure_rabbitmq "$RABBITMQ_URL"

if [ -n "${TRONPAY_BIN_DIR:-}" ]; then
  bin="$TRONPAY_BIN_DIR"
else
  release_build
  bin="$RELEASE_DIR"
fi

dbname="$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).path.lstrip("/"))' "$DATABASE_URL")"
if [ "$(psql "$(url_with_database "$DATABASE_URL" postgres)" -qAt -c "SELECT 1 FROM pg_database WHERE datname = '$dbname'")" != "1" ]; then
  echo "==> creating database $dbname"
  psql "$(url_with_database "$DATABASE_URL" postgres)" -v ON_ERROR_STOP=1 -qAt -c "CREATE DATABASE \"$dbname\""
fi
"$bin/tronpay" db create-tables

running() { service_pid "$1" >/dev/null; }

# start NAME VAR=value… -- COMMAND…: runs a service in the background with
# its log under $STATE_DIR/logs and its pid under $STATE_DIR/run.
start() {
  local name="$1"; shift
  if running "$name"; then
    echo "==> $name already running (pid $(cat "$STATE_DIR/run/$name.pid"))"
    return
  fi
  nohup env "$@" >>"$STATE_DIR/logs/$name.log" 2>&1 &
  echo $! >"$STATE_DIR/run/$name.pid"
  echo "==> started $name (pid $!, log $STATE_DIR/logs/$name.log)"
}

# The secret the dispatcher signs with: WEBHOOK_SECRET, else the stored one
# (created now if there is none, as the dispatcher would on its first start).
if [ -n "${WEBHOOK_SECRET:-}" ]; then
  secret="$WEBHOOK_SECRET"
else
  # (`sed -n 1p`, not `grep -m1`: a reader that stops early could close the
  # pipe before tronpay has printed its last line, which then fails.)
  secret="$("$bin/tronpay" webhooks secret | grep '^whsec_' | sed -n 1p || true)"
  [ -n "$secret" ] || secret="$("$bin/tronpay" webhooks rotate-secret | grep '^whsec_' | sed -n 1p)"
fi

if ! running tronpay-sandbox; then
  # A new sandbox is a new chain: the watcher starts again at its final block.
  if running tronpay-chain-watcher; then
    echo "error: the chain watcher runs but the sandbox does not; run make down first" >&2
    exit 1
  fi
  "$bin/tronpay" chain reset --yes >/dev/null
fi
start tronpay-sandbox SANDBOX_WEBHOOK_SECRET="$secret" "$bin/tronpay-sandbox" \
  --bind "$SANDBOX_BIND" --block-ms 1000 --solid-lag 3
wait_http "http://$SANDBOX_BIND/sandbox/status" 30 tronpay-sandbox

start tronpay-chain-watcher TRON_NODE_URL="http://$SANDBOX_BIND" BLOCK_INTERVAL_MS=1000 \
  WATCHER_BIND="$WATCHER_BIND" "$bin/tronpay-chain-watcher"
start tronpay-webhook-dispatcher CALLBACK_ALLOW_PRIVATE=true DISPATCHER_BIND="$DISPATCHER_BIND" \
  "$bin/tronpay-webhook-dispatcher"
start tronpay-api CALLBACK_ALLOW_PRIVATE=true BIND="$API_BIND" "$bin/tronpay-api"

wait_http "http://$WATCHER_BIND/health" 30 tronpay-chain-watcher
wait_http "http://$DISPATCHER_BIND/health" 30 tronpay-webhook-dispatcher
wait_http "http://$API_BIND/health" 30 tronpay-api
echo native >"$STATE_DIR/run/mode"

summary "http://$SANDBOX_BIND/sandbox/webhooks" "$secret" "$STATE_DIR/logs/ (make logs)"

#!/usr/bin/env bash
# make down: stops exactly what make up started (its recorded processes, or
# its Compose project). PostgreSQL and RabbitMQ, shared by everything on the
# machine, keep running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
shopt -s nullglob

if [ "$(cat "$STATE_DIR/run/mode" 2>/dev/null)" = compose ]; then
  docker compose --profile sandbox down
  rm -f "$STATE_DIR/run/mode"
  exit 0
fi

# SIGTERM first (each service finishes what it has in hand), the watcher
# and dispatcher before the sandbox they talk to.
for pidfile in "$STATE_DIR"/run/tronpay-api.pid "$STATE_DIR"/run/tronpay-webhook-dispatcher.pid \
               "$STATE_DIR"/run/tronpay-chain-watcher.pid "$STATE_DIR"/run/*.pid; do
  [ -f "$pidfile" ] || continue
  name="$(basename "$pidfile" .pid)"
  # Only a process that still is the one we started (pids get reused).
  if pid="$(service_pid "$name")"; then
    kill -TERM "$pid"
    for _ in $(seq 1 350); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "==> $name did not stop within 35 s; killing it"
      kill -KILL "$pid"
    fi
    echo "==> stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
rm -f "$STATE_DIR/run/mode"

#!/usr/bin/env bash
# make down: stops exactly the processes make up started.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
for pidfile in .local/run/*.pid; do
  name="$(basename "$pidfile" .pid)"
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "==> stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done

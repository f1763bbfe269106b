#!/usr/bin/env bash
# make ps: what make up started, whether it still runs and where it listens.
cd "$(dirname "$0")/.."
. scripts/lib.sh
shopt -s nullglob
if [ "$(cat "$STATE_DIR/run/mode" 2>/dev/null)" = compose ]; then
  exec docker compose --profile sandbox ps
fi
found=0
for pidfile in "$STATE_DIR"/run/*.pid; do
  found=1
  name="$(basename "$pidfile" .pid)"
  pid="$(cat "$pidfile")"
  if service_pid "$name" >/dev/null; then state=running; else state=stopped; fi
  printf '%-28s pid %-8s %-8s log %s\n' "$name" "$pid" "$state" "$STATE_DIR/logs/$name.log"
done
[ "$found" = 1 ] || echo "nothing started by make up"

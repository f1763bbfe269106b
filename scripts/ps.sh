#!/usr/bin/env bash
# make ps: what make up started and whether it still runs.
cd "$(dirname "$0")/.."
shopt -s nullglob
found=0
for pidfile in .local/run/*.pid; do
  found=1
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then state=running; else state=stopped; fi
  printf '%-28s pid %-8s %s\n' "$(basename "$pidfile" .pid)" "$pid" "$state"
done
[ "$found" = 1 ] || echo "nothing started by make up"

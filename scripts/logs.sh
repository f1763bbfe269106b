#!/usr/bin/env bash
# make logs: follows the logs of what make up started.
cd "$(dirname "$0")/.."
. scripts/lib.sh
if [ "$(cat "$STATE_DIR/run/mode" 2>/dev/null)" = compose ]; then
  exec docker compose --profile sandbox logs -f --tail 50
fi
shopt -s nullglob
logs=("$STATE_DIR"/logs/*.log)
[ ${#logs[@]} -gt 0 ] || { echo "no logs yet: run make up"; exit 0; }
exec tail -n 50 -F "${logs[@]}"

#!/usr/bin/env bash
# make bench-checkout: the checkout page and its status streams (issue 13).
# A release tronpay-api against PostgreSQL; tronpay-bench, a separate
# process, renders GET /pay/{id} under load (pages/s), then holds
# BENCH_STREAMS (default 5,000) status streams open on the one API process and
# cancels 500 of their payments in the database, printing each change's
# commit-to-event latency (target: p99 under 1 s with 5,000 streams) and the
# API's resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECONDS_PER_RUN="${BENCH_SECONDS:-15}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
STREAMS="${BENCH_STREAMS:-5000}"
PORT="${BENCH_PORT:-5078}"
DB=tronpay_bench_checkout

server="$(pg_server_url)"
ensure_postgres "$server"
release_build
db_url="$(fresh_database "$DB")"

work="$(mktemp -d)"
cleanup() {
  [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# Each stream is a file descriptor on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

DATABASE_URL="$db_url" RUST_LOG=warn BIND="127.0.0.1:$PORT" "$RELEASE_DIR/tronpay-api" >"$work/api.log" 2>&1 &
api_pid=$!
wait_http "http://127.0.0.1:$PORT/health" 10 tronpay-api "$work/api.log"

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
bench() { "$RELEASE_DIR/tronpay-bench" "$@" --url "http://127.0.0.1:$PORT"; }
# Payments to show (more than the streams need).
bench create --ids-out "$work/ids.txt" --seconds 5 --connections "$CONNECTIONS" >/dev/null
echo "==> $(wc -l <"$work/ids.txt") payments; $SECONDS_PER_RUN s per run after a 2 s warm-up, $CONNECTIONS connections"
bench checkout --ids "$work/ids.txt" --seconds "$SECONDS_PER_RUN" --connections "$CONNECTIONS"
echo "==> $STREAMS status streams on one API process"
bench streams --ids "$work/ids.txt" --streams "$STREAMS" --database-url "$db_url" --api-pid "$api_pid"

#!/usr/bin/env bash
# make bench: the API over HTTP against PostgreSQL, driven by tronpay-bench
# from a separate process. Prints requests/s and p50/p99 per endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECONDS_PER_RUN="${BENCH_SECONDS:-15}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
PORT="${BENCH_PORT:-5077}"
DB=tronpay_bench

server="$(pg_server_url)"
ensure_postgres "$server"
release_build

db_url="$(url_with_database "$server" "$DB")"
psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL="$db_url" "$RELEASE_DIR/tronpay" db create-tables >/dev/null

work="$(mktemp -d)"
cleanup() {
  [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

# Per-request logging is turned down to warnings: the figure is the
# service's, not the terminal's.
DATABASE_URL="$db_url" RUST_LOG="${BENCH_API_LOG:-warn}" BIND="127.0.0.1:$PORT" "$RELEASE_DIR/tronpay-api" >"$work/api.log" 2>&1 &
api_pid=$!
wait_http "http://127.0.0.1:$PORT/health" 10 tronpay-api "$work/api.log"

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
echo "==> $SECONDS_PER_RUN s per run after a 2 s warm-up, $CONNECTIONS connections, API and PostgreSQL on this machine"
bench() { "$RELEASE_DIR/tronpay-bench" "$@" --url "http://127.0.0.1:$PORT" --seconds "$SECONDS_PER_RUN" --connections "$CONNECTIONS"; }
rate() { sed -n 's/.*: \([0-9]*\) requests\/s.*/\1/p' "$1"; }
bench create --ids-out "$work/ids.txt" | tee "$work/create.txt"
bench status --ids "$work/ids.txt"

# The merchant API v1 with a key (issue 11): its create must stay within
# 15 % of the original create's figure of this run.
key="$(DATABASE_URL="$db_url" "$RELEASE_DIR/tronpay" keys create --name bench --scopes payments:read,payments:write |
  grep -o 'tpk_[A-Za-z0-9_-]*' | head -n1)"
TRONPAY_BENCH_KEY="$key" bench v1-create | tee "$work/v1-create.txt"
TRONPAY_BENCH_KEY="$key" bench v1-list
original="$(rate "$work/create.txt")" v1="$(rate "$work/v1-create.txt")"
python3 -c "print(f'POST /v1/payments: {int($v1) / int($original) * 100:.0f} % of POST /create_payment in this run (target: at least 85 %)')"

# Receiving addresses (issue 12): the same API restarted in each mode that
# assigns the address, v1 creates without one (unique_amount: a different
# whole amount per order, as a shop's are), against the given-address v1
# create above (target: within 25 %).
restart_api() {
  kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  env "$@" DATABASE_URL="$db_url" RUST_LOG="${BENCH_API_LOG:-warn}" BIND="127.0.0.1:$PORT" "$RELEASE_DIR/tronpay-api" >"$work/api.log" 2>&1 &
  api_pid=$!
  wait_http "http://127.0.0.1:$PORT/health" 10 tronpay-api "$work/api.log"
}
# The account key of the BIP39 test mnemonic (a bench has no money).
restart_api ADDRESS_MODE=xpub XPUB=xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd
echo "==> ADDRESS_MODE=xpub"
TRONPAY_BENCH_KEY="$key" bench v1-create --without-address | tee "$work/xpub.txt"
restart_api ADDRESS_MODE=unique_amount RECEIVE_ADDRESS=TBA6CypYJizwA9XdC7Ubgc5F1bxrQ7SqPt
echo "==> ADDRESS_MODE=unique_amount"
TRONPAY_BENCH_KEY="$key" bench v1-create --without-address --vary-amount | tee "$work/unique.txt"
xpub="$(rate "$work/xpub.txt")" unique="$(rate "$work/unique.txt")"
python3 -c "print(f'xpub: {int($xpub) / int($v1) * 100:.0f} %, unique_amount: {int($unique) / int($v1) * 100:.0f} % of the given-address v1 create (target: at least 75 %)')"

# Export streams: peak memory stays flat whatever the table size.
if [ -x /usr/bin/time ]; then
  rows="$(psql "$db_url" -qAtc 'SELECT count(*) FROM payments')"
  start=$(date +%s.%N)
  peak_kib="$( { DATABASE_URL="$db_url" /usr/bin/time -f '%M' "$RELEASE_DIR/tronpay" db export --file "$work/export.json" >/dev/null; } 2>&1 | tail -n1)"
  end=$(date +%s.%N)
  size_kib=$(( $(stat -c %s "$work/export.json") / 1024 ))
  python3 -c "print(f'tronpay db export: {int($rows)} payments in {$end - $start:.1f} s, file {$size_kib/1024:.0f} MiB, peak RSS {$peak_kib/1024:.1f} MiB')"
fi

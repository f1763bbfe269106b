#!/usr/bin/env bash
# make bench-probes: /health and /stats with 10 million payments (PRODUCT
# §12: probes that stay cheap at any size). Bulk-loads the payments with SQL
# into a fresh database, lets the API fold the count deltas, then times 500
# requests to each probe over one kept-alive connection and prints p50, p99
# and max, next to what counting the table row by row takes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROWS="${BENCH_PROBE_ROWS:-10000000}"
PORT="${BENCH_PORT:-5078}"
DB=tronpay_bench_probes

server="$(pg_server_url)"
ensure_postgres "$server"
release_build
db_url="$(fresh_database "$DB")"
work="$(mktemp -d)"
cleanup() {
  [ -n "${api_pid:-}" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
echo "==> loading $ROWS payments (1,000,000 per statement; a mix of statuses)"
start=$(date +%s)
for from in $(seq 1 1000000 "$ROWS"); do
  to=$((from + 999999 < ROWS ? from + 999999 : ROWS))
  psql "$db_url" -v ON_ERROR_STOP=1 -qAt -c "
    INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at,
      last_checked_timestamp, callback_attempts, callback_success, expires_at)
    SELECT md5(n::text), 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 10 + n % 100, 'https://shop.example.com/hook',
      'order-' || n, (ARRAY['completed','completed','completed','expired','failed','pending']::payment_status[])[1 + n % 6],
      (now() AT TIME ZONE 'utc') - (n % 86400) * interval '1 second', 0, 0, false,
      (now() AT TIME ZONE 'utc') + interval '1 day'
    FROM generate_series($from, $to) AS n"
done
psql "$db_url" -qAt -c "VACUUM ANALYZE payments" >/dev/null
echo "    loaded in $(( $(date +%s) - start )) s"

DATABASE_URL="$db_url" RUST_LOG=warn BIND="127.0.0.1:$PORT" "$RELEASE_DIR/tronpay-api" >"$work/api.log" 2>&1 &
api_pid=$!
wait_http "http://127.0.0.1:$PORT/health/live" 10 tronpay-api "$work/api.log"
# The API folds the load's count deltas (one per payment loaded) into the
# totals; the probes are timed once it has (a shop never creates millions of
# payments between two folds, 2 s apart).
fold_start=$(date +%s)
for _ in $(seq 1 600); do
  [ "$(psql "$db_url" -qAt -c 'SELECT count(*) FROM payment_status_deltas')" = 0 ] && break
  sleep 1
done
echo "    the API folded the load's $ROWS count deltas in about $(( $(date +%s) - fold_start )) s"

python3 - "http://127.0.0.1:$PORT" "$ROWS" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse
base, rows = sys.argv[1], int(sys.argv[2])
parts = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
def timed(path, count=500):
    times = []
    body = None
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status == 200, (path, response.status, body[:200])
    times.sort()
    return times, json.loads(body)
for path, target, key in [("/health", 10, "total_payments"), ("/stats", 50, "total_payments")]:
    timed(path, 20)  # warm-up
    times, body = timed(path)
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    assert body[key] == rows, (path, body[key], rows)
    print(f"GET {path} with {rows:,} payments: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {times[-1]:.2f} ms "
          f"over {len(times)} requests (target: under {target} ms); {key} = {body[key]:,} (exact)")
PY
# What counting the table row by row (as before) takes, for comparison.
psql "$db_url" -qAt -c "\\timing on" -c "SELECT status, count(*) FROM payments GROUP BY status" |
  sed -n 's/^Time: \(.*\)$/count(*) over the table by status (the old probe query): \1/p'

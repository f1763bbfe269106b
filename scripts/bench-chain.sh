#!/usr/bin/env bash
# The chain watcher: catch-up in blocks/s over busy blocks with 100,000
# watched addresses, node calls per block, and the latency from a block
# becoming final to its payment completing. Real processes (sandbox node,
# watcher, API) against PostgreSQL and RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DB=tronpay_bench_chain
server="$(pg_server_url)"
ensure_postgres "$server"
release_build
db_url="$(url_with_database "$server" "$DB")"
fresh_db() { fresh_database "$DB" >/dev/null; }
trap 'psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
run() {
  fresh_db
  "$RELEASE_DIR/tronpay-bench" chain --bin-dir "$RELEASE_DIR" --database-url "$db_url" --rabbitmq-url "${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" "$@"
}
echo "==> 3,000 blocks x 200 transfers, 100,000 watched addresses, no payment among them (scanning only)"
run --hits-per-block 0 --catch-up-only
echo "==> the same, one payment every 3 blocks (about 10,000 payments a day)"
run --hits-per-block 1 --hit-every 3 --catch-up-only
echo "==> the same, 2 payments in every block (about 57,600 payments a day); then steady-state latency"
run --hits-per-block 2 --latency-blocks "${BENCH_LATENCY_BLOCKS:-60}" --latency-block-ms 1000 --solid-lag 19

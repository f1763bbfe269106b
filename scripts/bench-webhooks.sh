#!/usr/bin/env bash
# The webhook dispatcher: deliveries per second to a local receiver (10,000
# completions at once), the latency from a payment's commit to its webhook's
# arrival (200 completions/s for 10 s), and fairness: the time until a
# healthy receiver gets its webhook when it comes after N deliveries to a
# receiver that never answers (9 with WEBHOOK_CONCURRENCY=4, 64 with the
# default 64). A real dispatcher process against PostgreSQL and RabbitMQ; the
# receivers run in tronpay-bench. Arguments go to `tronpay-bench webhooks`
# (e.g. --fairness-only, --fairness 9@4); BENCH_DISPATCHER_DIR runs another
# build of the dispatcher (e.g. an older one, for a before/after figure).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DB=tronpay_bench_webhooks
bin="$RELEASE_DIR"
server="$(pg_server_url)"
ensure_postgres "$server"
release_build
trap 'psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
db_url="$(fresh_database "$DB")"
echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
"$bin/tronpay-bench" webhooks --bin-dir "${BENCH_DISPATCHER_DIR:-$bin}" --database-url "$db_url" \
  --rabbitmq-url "${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" "$@"

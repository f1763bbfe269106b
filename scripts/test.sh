#!/usr/bin/env bash
# make test: every test of the workspace, against a real PostgreSQL.
# Uses TEST_DATABASE_URL or DATABASE_URL (their server; each test creates and
# drops its own database), else the local server, starting it if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

server="$(pg_server_url)"
ensure_postgres "$server"

# Databases left behind by a test run that was killed; a database still in
# use refuses the DROP and is left alone.
if command -v psql >/dev/null 2>&1; then
  psql_admin -c "SELECT datname FROM pg_database WHERE datname LIKE 'tronpay\_test\_%'" 2>/dev/null |
    while read -r stale; do psql_admin -c "DROP DATABASE IF EXISTS \"$stale\"" >/dev/null 2>&1 || true; done ||
    true
fi

# The reference implementation the webhook signature tests check against
# (the official Standard Webhooks Python package), in a local virtualenv.
venv=.local/venv
if ! "$venv/bin/python" -c "import standardwebhooks" >/dev/null 2>&1; then
  echo "==> installing the standardwebhooks Python package into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check standardwebhooks
fi
export TRONPAY_PYTHON="$PWD/$venv/bin/python"

# schemathesis runs against the API's /openapi.json (crates/api/tests/v1),
# pinned so that its seeded run generates the same cases everywhere.
SCHEMATHESIS_VERSION=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export TRONPAY_SCHEMATHESIS="$PWD/$venv/bin/schemathesis"

# bip_utils: the independent derivation `tronpay addresses derive` is
# checked against (crates/cli/tests/addresses.rs).
BIP_UTILS_VERSION=2.12.3
if ! "$venv/bin/python" -c "import bip_utils, sys; sys.exit(bip_utils.__version__ != '$BIP_UTILS_VERSION')" >/dev/null 2>&1; then
  echo "==> installing bip_utils $BIP_UTILS_VERSION into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "bip_utils==$BIP_UTILS_VERSION"
fi

# The browser tests (crates/e2e/tests/browser.rs): Debian's Chromium and a
# small CJK font (the 简体中文 screenshots; 5 MB), and playwright-core
# (drives it) and axe-core (accessibility) from npm, pinned, in .local/node.
if { [ -z "${TRONPAY_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; } ||
  [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  echo "==> installing Debian's chromium and fonts-wqy-microhei (browser tests)"
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  export DEBIAN_FRONTEND=noninteractive
  packages="fonts-wqy-microhei"
  [ -n "${TRONPAY_CHROMIUM:-}" ] || packages="chromium $packages"
  $as_root apt-get install -y -qq $packages >/dev/null ||
    { $as_root apt-get update -qq && $as_root apt-get install -y -qq $packages >/dev/null; }
fi
PLAYWRIGHT_VERSION=1.65.1
AXE_VERSION=4.14.1
node_dir=.local/node
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" "$node_dir/node_modules/playwright-core/package.json" ||
  ! grep -qs "\"version\": \"$AXE_VERSION\"" "$node_dir/node_modules/axe-core/package.json"; then
  echo "==> installing playwright-core $PLAYWRIGHT_VERSION and axe-core $AXE_VERSION into $node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent \
    "playwright-core@$PLAYWRIGHT_VERSION" "axe-core@$AXE_VERSION" >/dev/null
fi
export TRONPAY_NODE_MODULES="$PWD/$node_dir/node_modules"

# --- deployment files (Dockerfile, docker-compose.yml, deploy/): offline checks ---
if ! "$venv/bin/python" -c "import yaml, kubernetes_validate" >/dev/null 2>&1; then
  echo "==> installing pyyaml and kubernetes-validate into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyyaml kubernetes-validate
fi
# promtool checks and unit-tests deploy/monitoring/alerts.yml.
if ! command -v promtool >/dev/null 2>&1; then
  echo "==> installing Debian's prometheus (promtool, for deploy/monitoring)"
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
    { $as_root apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
echo "==> checking the deployment files (tests/deploy)"
"$venv/bin/python" -m unittest discover -s tests/deploy -v
# --- end of deployment checks ---

# PgBouncer in transaction mode, for the tests that run the services behind it.
if [ -z "${TRONPAY_PGBOUNCER:-}" ]; then
  TRONPAY_PGBOUNCER="$(ensure_pgbouncer)"
fi
export TRONPAY_PGBOUNCER

export TEST_DATABASE_URL="$server"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast "$@"
fi

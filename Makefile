# tronpay — the two commands you need are `make up` and `make test`.

.PHONY: up down ps logs test bench bench-api bench-chain bench-webhooks bench-checkout bench-probes build fmt lint check

# The one release build: every binary of the workspace (the services, the
# sandbox, the CLI, tronpay-bench). `make up`, `make bench-*` and the
# Dockerfile run exactly this command (a test checks the Dockerfile's copy).
# Cargo unifies features over the packages a build asks for, so builds of
# different package sets compile the shared crates again; with one set, each
# of them — and `cargo build --release --workspace` — finds the others' work
# fresh.
RELEASE_BUILD = cargo build --release --locked --workspace

up:            ## run tronpay locally (API on 127.0.0.1:5000)
	@scripts/up.sh

down:          ## stop what make up started
	@scripts/down.sh

ps:            ## show what make up started
	@scripts/ps.sh

logs:          ## follow the logs of what make up started
	@scripts/logs.sh

test:          ## run every test (needs only PostgreSQL; started if installed)
	@scripts/test.sh

bench:         ## benchmarks; figures go to docs/BENCHMARKS.md
	@scripts/bench-api.sh
	@scripts/bench-chain.sh
	@scripts/bench-webhooks.sh
	@scripts/bench-checkout.sh
	@scripts/bench-probes.sh

bench-probes:  ## /health and /stats with 10 million payments
	@scripts/bench-probes.sh

bench-checkout: ## the checkout page: pages/s, and status streams held at once with their latency
	@scripts/bench-checkout.sh

bench-webhooks: ## the webhook dispatcher: deliveries/s, latency, and fairness (a healthy receiver beside hanging ones)
	@scripts/bench-webhooks.sh

bench-api:     ## the API over HTTP
	@scripts/bench-api.sh

bench-chain:   ## the chain watcher: catch-up and latency
	@scripts/bench-chain.sh

build:         ## the release binaries (as make up, make bench-* and the Dockerfile build them)
	$(RELEASE_BUILD)

fmt:
	cargo fmt --all

lint:          ## formatting and clippy, as CI expects them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

check: lint test

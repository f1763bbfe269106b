# syntax=docker/dockerfile:1
#
# One image for every tronpay service; the command picks the binary:
#   tronpay-api | tronpay-chain-watcher | tronpay-webhook-dispatcher
#   tronpay-sandbox | tronpay (operator CLI, e.g. `tronpay db create-tables`)
#
#   docker build -t ghcr.io/tronpay/tronpay:0.1.0 .
#
# The compile step runs exactly the Makefile's RELEASE_BUILD (`make -s -n build`
# prints it; tests/deploy/test_deploy.py checks the two agree), so the image
# holds the same binaries `make up` builds natively.

# ---------------------------------------------------------------------------
# 1. planner: the workspace reduced to its manifests plus empty stub sources.
#    This stage re-runs on every source change, but its output only changes
#    when a Cargo.toml, Cargo.lock or the set of targets changes; Docker keys
#    the `COPY --from=planner` below on file contents (not mtimes), so the
#    dependency layer stays cached while only .rs files change. (The same idea
#    as cargo-chef, without a third-party tool.)
# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS planner
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# For every workspace member (members = ["crates/*"]): its Cargo.toml, and a
# stub for each target root cargo would discover (src/lib.rs, src/main.rs,
# src/bin/*, build.rs) or that the manifest names with `path = "….rs"`.
# Crates that are never deployed (bench, e2e, testkit) need stubs too: cargo
# loads every member of the workspace.
RUN set -eu; \
    mkdir -p /plan/crates; \
    cp Cargo.toml Cargo.lock /plan/; \
    for manifest in crates/*/Cargo.toml; do \
      crate="${manifest%/Cargo.toml}"; \
      mkdir -p "/plan/$crate"; \
      cp "$manifest" "/plan/$crate/"; \
      targets="$( (cd "$crate" && find . \( -path ./src/lib.rs -o -path ./src/main.rs -o -path './src/bin/*.rs' -o -path ./build.rs \) -type f); \
                  sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest" )"; \
      for target in $targets; do \
        target="${target#./}"; \
        mkdir -p "/plan/$crate/$(dirname "$target")"; \
        case "$target" in \
          src/lib.rs) : > "/plan/$crate/$target" ;; \
          *) echo 'fn main() {}' > "/plan/$crate/$target" ;; \
        esac; \
      done; \
    done; \
    find /plan -type f | sort

# ---------------------------------------------------------------------------
# 2. build: dependencies first (cached), then the workspace's own crates.
# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY --from=planner /plan/ ./
# The same command as the real build below, so dependencies are compiled with
# the same profile and the same unified feature set and are reused as-is.
RUN cargo build --release --locked --workspace
COPY crates crates
# tronpay-db embeds the migrations at compile time.
COPY migrations migrations
# COPY keeps the files' modification times from the build context, which can
# be older than the stub build above; cargo would then consider the stubs
# fresh and ship them. Touching the real sources forces the rebuild.
RUN find crates migrations -type f -exec touch {} +
RUN cargo build --release --locked --workspace

# ---------------------------------------------------------------------------
# 3. runtime: the five binaries on Debian slim (glibc matches the build
#    stage's bookworm), CA certificates for TronGrid/HTTPS callbacks, curl for
#    container health checks.
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tronpay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
         --home-dir /nonexistent --shell /usr/sbin/nologin tronpay
COPY --from=build /src/target/release/tronpay-api /usr/local/bin/
COPY --from=build /src/target/release/tronpay-chain-watcher /usr/local/bin/
COPY --from=build /src/target/release/tronpay-webhook-dispatcher /usr/local/bin/
COPY --from=build /src/target/release/tronpay-sandbox /usr/local/bin/
COPY --from=build /src/target/release/tronpay /usr/local/bin/
# An empty, root-owned working directory: the binaries read an optional .env
# from the working directory, and nothing is written to the filesystem (so a
# read-only root filesystem works).
WORKDIR /app
# Numeric user, so Kubernetes can verify runAsNonRoot without runAsUser.
USER 10001:10001
# The binaries default to loopback (right for `make up`); in a container every
# service must listen on all interfaces to be reachable and health-checked.
ENV BIND=0.0.0.0:5000 \
    WATCHER_BIND=0.0.0.0:5001 \
    DISPATCHER_BIND=0.0.0.0:5002 \
    SANDBOX_BIND=0.0.0.0:8090
# api, chain-watcher (health), webhook-dispatcher (health), sandbox
EXPOSE 5000 5001 5002 8090
# All services stop gracefully on SIGTERM (Docker's default stop signal).
CMD ["tronpay-api"]

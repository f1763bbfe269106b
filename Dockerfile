# tronpay services. Built by `docker compose build`; the binaries are the
# ones `make up` builds natively (cargo build --release).
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY crates crates
COPY migrations migrations
RUN cargo build --release --locked -p tronpay-api -p tronpay-cli

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home tronpay
COPY --from=build /src/target/release/tronpay-api /src/target/release/tronpay /usr/local/bin/
USER tronpay
ENV BIND=0.0.0.0:5000
EXPOSE 5000
CMD ["tronpay-api"]

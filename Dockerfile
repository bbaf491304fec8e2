# Multi-stage build: compile with the Rust toolchain, run on a small Debian
# image with CA certificates (for TLS to hosted Postgres and providers).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin podforge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data podforge \
 && mkdir -p /data && chown podforge /data
COPY --from=build /src/target/release/podforge /usr/local/bin/podforge
USER podforge
WORKDIR /data
ENV PODFORGE_ENV=production \
    PODFORGE_BIND=0.0.0.0:8080 \
    PODFORGE_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["podforge"]
CMD ["serve"]

# Multi-stage build: compile with the Rust toolchain, run on a small Debian
# image with CA certificates (for TLS to hosted Postgres and providers) and
# espeak-ng (phonemes for the embedded speech engine).
FROM rust:1.95-slim-bookworm AS build
# mp3lame-sys builds LAME from source with make.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src ./src
COPY migrations ./migrations
# Cargo.toml declares the benches, so the manifest does not load without them.
COPY benches ./benches
RUN cargo build --release --locked --bin podforge

FROM debian:bookworm-slim
# The runtime packages are listed once, in scripts/runtime-packages.txt, which
# scripts/runtime-root.sh also installs to prove this stage without Docker.
COPY scripts/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && grep -v '^#' /tmp/runtime-packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --home-dir /data podforge \
 && mkdir -p /data && chown podforge /data
COPY --from=build /src/target/release/podforge /usr/local/bin/podforge
USER podforge
WORKDIR /data
# The offline assets (embedded model, speech model, ONNX Runtime, voices;
# about 220 MB, checksum-verified) are fetched into /data on first start of a
# machine with a volume: `podforge model fetch` (fly.toml's release command
# runs migrations; run the fetch once per volume, or bake it in with
#   RUN podforge model fetch
# after USER to ship them in the image).
ENV PODFORGE_ENV=production \
    PODFORGE_BIND=0.0.0.0:8080 \
    PODFORGE_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["podforge"]
CMD ["serve"]

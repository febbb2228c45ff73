# syntax=docker/dockerfile:1.7
# One image for every role: `signalbox serve | api | edge | migrate`.
#
#   docker build -t signalbox .
#   docker run --read-only -p 8080:8080 -v sb-data:/data signalbox serve
#
# Build stage: the workspace compiled in release mode. The cache mounts keep crates.io
# downloads and the target directory between builds (BuildKit); the binary is copied out of
# the cached target directory because a cache mount is not part of the image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads: every workspace member's manifest and sources (cargo needs all
# members), the lock file, and the migrations that `sqlx::migrate!` embeds in the binary.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY proto proto
COPY services services
COPY sdk/rust sdk/rust
COPY tests tests
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signalbox \
    && install -D -m 0755 target/release/signalbox /out/signalbox

# Runtime stage: distroless "cc" (glibc and libgcc, which the binary links; no shell, no
# package manager), as its unprivileged `nonroot` user. TLS roots are compiled into the
# binary, so the image's CA store does not matter. Nothing is written outside /data (only
# `signalbox serve` writes there), so the root filesystem can be mounted read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="signalbox" \
      org.opencontainers.image.description="Signalbox: a multi-tenant serverless realtime platform (serve, api, edge, migrate)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/signalbox-dev/signalbox"
COPY --from=build /out/signalbox /usr/local/bin/signalbox
# In a container every role listens on all interfaces (`serve` defaults to loopback
# otherwise), /metrics included on its own port 9090 (publish it only to your monitoring),
# and the embedded mode keeps its data in the /data volume.
ENV SIGNALBOX_LISTEN=0.0.0.0:8080 \
    SIGNALBOX_METRICS_LISTEN=0.0.0.0:9090 \
    SIGNALBOX_DATA_DIR=/data \
    SIGNALBOX_LOG_FORMAT=json
WORKDIR /data
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/signalbox"]
CMD ["serve"]

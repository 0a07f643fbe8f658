# The lab's two images, from one builder that compiles the workspace's dependencies once.
# Build context: the repository root (`make images` runs both):
#   docker build --target operator -t tracing-lab-operator:0.1.0 .
#   docker build --target service  -t tracing-lab-service:0.1.0 .
# Stages: chef (toolchain + C build tools) -> planner (dependency recipe) -> builder (dependencies
# in their own cached layer, then both binaries from the crates they are made of) -> operator |
# service (one binary each on a slim base, non-root).
ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
# librdkafka is built from source (rdkafka's cmake-build feature).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --release --locked -p tracing-lab-operator -p tracing-lab-service --recipe-path recipe.json
# The crates the binaries are made of, and the workspace's manifests; the tests crate keeps the
# placeholder sources cook left, so a change to the tests does not rebuild the images.
COPY Cargo.toml Cargo.lock ./
COPY tests/Cargo.toml tests/
COPY lab-config lab-config
COPY telemetry telemetry
COPY operator operator
COPY services services
RUN cargo build --release --locked -p tracing-lab-operator -p tracing-lab-service

# The binaries need glibc, libgcc_s and zlib (librdkafka): all in bookworm-slim, zlib not in distroless/cc.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Numeric, so the kubelet can enforce runAsNonRoot.
USER 65532:65532
EXPOSE 8080

FROM runtime AS operator
COPY --from=builder /src/target/release/tracing-lab-operator /usr/local/bin/tracing-lab-operator
ENTRYPOINT ["/usr/local/bin/tracing-lab-operator"]
CMD ["run"]

# api, processing, notification, analytics, loadgen: the subcommand picks the role. The IO
# workloads write under TMPDIR, which the operator mounts as an emptyDir (read-only root filesystem).
FROM runtime AS service
COPY --from=builder /src/target/release/tracing-lab-service /usr/local/bin/tracing-lab-service
ENV TMPDIR=/tmp
ENTRYPOINT ["/usr/local/bin/tracing-lab-service"]

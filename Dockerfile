# ironlb's image: one static binary, `ironlb`, run as `ironlb controller` (Deployment) or
# `ironlb speaker` (DaemonSet); see deploy/.
#
# NOT BUILT IN CI: the build machine has no container runtime. Kept minimal so that it can be
# checked by reading. Build: docker build -t REGISTRY/ironlb:TAG .

# --- build: a fully static x86_64 binary (musl) ---------------------------------------------------
FROM docker.io/library/rust:1.89-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ironlb --bin ironlb --target x86_64-unknown-linux-musl \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/ironlb /out/ironlb

# --- run: nothing but the binary ----------------------------------------------------------------
FROM scratch
COPY --from=build /out/ironlb /ironlb
# Non-root by default (the controller). The speaker's DaemonSet overrides it with UID 0 and the
# single capability NET_RAW, which Kubernetes grants to root processes only.
USER 65532:65532
ENTRYPOINT ["/ironlb"]

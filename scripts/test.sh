#!/usr/bin/env bash
# Runs every check and test of ironlb on a fresh Debian 12 machine, as root (namespace tests need it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

# A target directory outside the clone, so repeated runs on one machine reuse the build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ironlb-target}"
export CARGO_TERM_COLOR=never

echo "== fmt"
cargo fmt --all -- --check

echo "== core crates stay free of tokio and Kubernetes types"
# The gossip core is checked without its default `driver` feature (the tokio driver).
for core in "ironlb-alloc" "ironlb-labels" "ironlb-gossip --no-default-features"; do
  # shellcheck disable=SC2086
  if cargo tree -p $core -e normal --prefix none | grep -E '^(tokio|kube|k8s-openapi) ' ; then
    echo "$core must not depend on tokio or Kubernetes crates" >&2
    exit 1
  fi
done

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build the binary (end-to-end tests run it as a process)"
cargo build --locked -p ironlb

echo "== tests"
cargo test --workspace --locked --no-fail-fast

#!/usr/bin/env bash
# Builds ironlb on a fresh Debian 12 machine and runs its main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ironlb-target}"
# A debug build: it shares the test build cache, and the offline tools need no optimisation.
cargo build --locked -p ironlb
# Until `ironlb demo` exists (issue 11), the main job is the offline one: validate the example
# manifests exactly as the controller would, then show which IP every Service in them would get.
ironlb="$CARGO_TARGET_DIR/debug/ironlb"
for f in examples/*.yaml; do
  echo "== $f"
  "$ironlb" config check "$f"
  "$ironlb" plan "$f"
done

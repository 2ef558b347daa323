#!/usr/bin/env bash
# Builds ironlb on a fresh Debian 12 machine and runs its main job, `ironlb demo`: a cluster in
# network namespaces (API stand-in, controller, a speaker per node), a LoadBalancer Service
# reached by a client, the serving node killed, the outage measured. Run as root.
# Arguments go to `ironlb demo` (e.g. --scenario all --json demo.json --plot demo.svg --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: network namespaces need root: sudo $0 $*" >&2
  exit 1
fi
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ironlb-target}"
# A debug build: it shares the test build cache and is fast enough for the demo.
cargo build --locked -p ironlb
exec "$CARGO_TARGET_DIR/debug/ironlb" demo "$@"

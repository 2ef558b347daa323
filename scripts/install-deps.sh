#!/usr/bin/env bash
# Installs what ironlb's build, demo and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail

packages=(
  build-essential pkg-config          # C toolchain for -sys crates (ring)
  iproute2 iputils-ping ethtool       # network namespaces, veth, bridges
  arping ndisc6 tcpdump curl          # L2 tests: Linux's own ARP/NDP tools, captures, HTTP client
  procps                              # kill(1), used by the BGP interop tests to SIGSTOP a peer
  frr bird2 gobgpd                    # BGP/BFD interop peers
  serf keepalived                     # peers the failover benchmarks compare against
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian starts FRR and BIRD as system services on install; the tests run their own instances
# inside network namespaces, so the host-wide ones are stopped (harmless if none runs).
for svc in frr bird keepalived serf; do
  systemctl stop "$svc" >/dev/null 2>&1 || true
done

for tool in cargo kubectl; do
  if ! command -v "$tool" >/dev/null; then
    echo "install-deps: '$tool' is required but not installed (it is not in Debian 12's archive;" >&2
    echo "install it from your distribution of Rust / Kubernetes tools)" >&2
    exit 1
  fi
done

# scripts/test.sh runs `cargo fmt` and `cargo clippy`: add the components where rustup manages Rust.
for component in rustfmt clippy; do
  sub=${component/rustfmt/fmt}
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null; then
      rustup component add "$component"
    else
      echo "install-deps: 'cargo $sub' is missing (install the $component component)" >&2
      exit 1
    fi
  fi
done

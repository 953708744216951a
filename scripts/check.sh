#!/usr/bin/env bash
# Lint and type checks (run before each commit).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check microkube tests
.venv/bin/mypy microkube

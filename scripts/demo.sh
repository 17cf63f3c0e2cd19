#!/usr/bin/env bash
# Install (first run only), then run the demo: phoenix-stream demo [--duration S] [--rate R]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec phoenix-stream demo "$@"

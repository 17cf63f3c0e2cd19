#!/usr/bin/env bash
# Lint, type-check and run every test against the real embedded services.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

ruff check .
ruff format --check .
# mypy reads the strict editable install's link tree, where agents/, tables/ and web/
# are phoenix_stream.agents, ... (the repository folders alone are not a package).
MYPYPATH="$(ls -d build/__editable__.phoenix_stream-*-py3-none-any)" mypy
set +e
pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"

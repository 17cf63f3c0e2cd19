#!/usr/bin/env bash
# Lint, type-check and run every test against the real embedded services.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

ruff check .
ruff format --check .
# mypy cannot follow the editable install's import hook, and the repository folders
# alone are not one package: it checks a plain build of the package instead, where
# agents/, tables/ and web/ are phoenix_stream.agents, ... as users import them.
# build/lib too: setuptools would copy stale modules from an earlier build into it.
rm -rf build/typecheck build/lib && mkdir -p build
python -m pip install --quiet --no-deps --no-build-isolation --target build/typecheck . \
  2> build/typecheck.log || { cat build/typecheck.log >&2; exit 1; }
MYPYPATH=build/typecheck mypy
# The Apache Kafka tier needs the broker's jars: fetched once with Maven into a cache
# (~/.cache/phoenix-stream), reused offline after that. PHOENIX_TEST_BROKERS=tansu skips it.
if [[ ",${PHOENIX_TEST_BROKERS:-tansu,kafka}," == *",kafka,"* ]]; then
  python -c 'from phoenix_stream.embedded.kafka_jars import main; main()'
fi
run_pytest() {
  set +e
  pytest "$@"
  local code=$?
  set -e
  if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  return "$code"
}
if [ "$#" -gt 0 ]; then
  run_pytest "$@"
  exit $?
fi
# Every test: first the integration scenarios with wall-clock targets, alone (marker
# solo, tests/conftest.py); then the rest of the integration tier on two processes, a
# module's tests all in one of them (--dist loadfile: its workers and fixtures are set up
# once, and its tests run in their order). Its tests wait on brokers and workers about
# half the time (one process used 0.96 of the 2 cores). Then the unit, property and fuzz
# tests, CPU-bound and independent, on two processes as well.
echo "set-up (venv, lint, types, jars): ${SECONDS} s"
status=0
run_pytest -m "integration and solo" --durations=10 || status=$?
echo "set-up and integration scenarios: ${SECONDS} s"
run_pytest -m "integration and not solo" -n 2 --dist loadfile --durations=15 || status=$?
echo "set-up and integration tier: ${SECONDS} s"
run_pytest -m "not integration" -n 2 --durations=5 || status=$?
echo "whole run: ${SECONDS} s"
exit "$status"

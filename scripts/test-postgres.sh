#!/usr/bin/env bash
# Runs the Rust core suite (tests/core) against the PostgreSQL store: starts a
# throwaway PostgreSQL server (scripts/lib/services.sh), points the tests at
# it with TEST_NOOM_POSTGRES_URL, and stops it afterwards.
#
#   bash scripts/test-postgres.sh            # as .ci/run does
#   bash scripts/test-postgres.sh -- filter  # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

start_postgres "${TEST_NOOM_POSTGRES_PORT:-55432}"
shift_args=()
if [ "${1:-}" = "--" ]; then
    shift
    shift_args=("$@")
fi
TEST_NOOM_POSTGRES_URL="$POSTGRES_URL" cargo test --test core -- "${shift_args[@]}"

#!/usr/bin/env bash
# Runs the cluster suite (tests/cluster): several nodes in one process sharing
# a throwaway Redis and PostgreSQL (scripts/lib/services.sh), which the tests
# find in TEST_NOOM_REDIS_URL and TEST_NOOM_POSTGRES_URL. The tests restart
# Redis themselves (redis-server must be on the PATH).
#
#   bash scripts/test-cluster.sh            # as .ci/run does
#   bash scripts/test-cluster.sh -- filter  # extra arguments go to cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/services.sh

start_postgres "${TEST_NOOM_POSTGRES_PORT:-55433}"
start_redis "${TEST_NOOM_REDIS_PORT:-56379}"
shift_args=()
if [ "${1:-}" = "--" ]; then
    shift
    shift_args=("$@")
fi
TEST_NOOM_POSTGRES_URL="$POSTGRES_URL" TEST_NOOM_REDIS_URL="$REDIS_URL" \
    cargo test --test cluster -- "${shift_args[@]}"

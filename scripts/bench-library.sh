#!/usr/bin/env bash
# Library query benchmark: req/s and latency of the library query served
# directly, with PODFORGE_DB_POOLER=transaction on the same server, and
# through PgBouncer in transaction mode (needs Debian's pgbouncer and the
# local PostgreSQL). Release build; pass --profile dev for a debug one.
# Usage: bash scripts/bench-library.sh [seconds] [concurrency] [--profile dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=(--profile "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cargo bench "${profile[@]}" --bench library -- "${args[@]}"

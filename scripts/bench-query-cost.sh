#!/usr/bin/env bash
# Worst time the serving schema takes to accept or refuse a document, over
# generated fragment DAGs, fan-out chains and 2 MiB bodies (release build, no
# database). Usage: bash scripts/bench-query-cost.sh [number of generated documents]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --quiet --bench query_cost -- "${1:-2000}"

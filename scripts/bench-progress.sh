#!/usr/bin/env bash
# Progress fan-out benchmark: 100 and 1,000 websocket subscribers on one
# podcast against a release `podforge serve`. Needs the local PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
for n in 100 1000; do
  cargo bench --bench progress -- "$n" 200
done

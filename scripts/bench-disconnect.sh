#!/usr/bin/env bash
# Disconnect benchmark: 300 websocket subscribers (2 subscriptions each)
# opened and killed with a TCP reset, 10 times, against one `podforge serve`;
# prints the server's RSS after each cycle. Flat RSS across cycles means the
# memory kept after the first is allocator retention, not a leak.
# Needs the local PostgreSQL. Debug build (the server's own code unoptimised,
# as in the tests); PODFORGE_BIN=/path/to/podforge measures another build.
# Usage: bash scripts/bench-disconnect.sh [subscribers] [cycles]
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
cargo bench --profile dev --bench disconnect -- "${1:-300}" "${2:-10}"

#!/usr/bin/env bash
# Sign-in flood benchmark: two bursts of 64 parallel logins (wrong password,
# production Argon2id cost) against one `podforge serve`; prints the answers
# and the server's RSS after each burst. Runs with the default throttling and
# with throttling off (every attempt hashes: the hashing budget alone bounds
# memory). Needs the local PostgreSQL. Debug build (argon2 is optimised in
# it, see Cargo.toml); PODFORGE_BIN=/path/to/podforge measures another build.
# Usage: bash scripts/bench-signin.sh [parallel]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-64}"
cargo bench --profile dev --bench signin -- "$n"
cargo bench --profile dev --bench signin -- "$n" --unthrottled

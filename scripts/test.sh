#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: starts PostgreSQL if it is down,
# installs what the tests need, then runs every test against real parts.
# Usage: bash scripts/test.sh [extra cargo-nextest / cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL on 127.0.0.1:5432 (tests create and drop their own databases).
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "test.sh: PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 1; done
fi

# The real npm clients used by tests/it/clients.rs (graphql-ws, subscriptions-transport-ws,
# Apollo Client, urql, graphql-http's audits; pinned by package-lock.json).
if [ ! -d tests/clients/node_modules ] || [ tests/clients/package-lock.json -nt tests/clients/node_modules ]; then
  npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
fi

# espeak-ng turns text into phonemes for the embedded speech engine (run as
# a separate program; GPL-3, never linked). Installed only when missing.
if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "test.sh: installing espeak-ng"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null; }
fi

# PgBouncer (Debian's, transaction pooling) for tests/it/pooler.rs, which
# start their own instances in front of the test server. Installed only
# when missing.
if ! [ -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null 2>&1; then
  echo "test.sh: installing pgbouncer"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; }
  # The package starts a system instance on port 6432; the tests run their own.
  as_root service pgbouncer stop >/dev/null 2>&1 || true
fi

# The embedded model for tests/it/local.rs and the speech assets for
# tests/it/speech.rs (kept in the data directory, so later runs only verify
# their checksums).
cargo run --quiet --locked -- model fetch

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi

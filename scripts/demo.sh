#!/usr/bin/env bash
# The main job, offline: turns the example web page shipped in examples/ into
# a 3-minute episode written by the embedded model and read aloud by the
# embedded speech engine (Kokoro-82M, two voices), stored in the library of
# the local user and written to out/episode.json, out/script.md and
# out/episode.mp3 (-16 LUFS, ID3 chapters).
# Needs only PostgreSQL on 127.0.0.1:5432 (started here if it is down).
# Extra arguments go to `podforge generate` (e.g. --minutes 5 --hosts Ada,Grace).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "demo.sh: PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 1; done
fi

# espeak-ng turns text into phonemes for the embedded speech engine (run as
# a separate program; GPL-3, never linked). Installed only when missing.
if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "demo.sh: installing espeak-ng"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null; }
fi

# The first build takes about 10 minutes on 2 cores; later ones are instant.
cargo build --locked
cargo run --quiet --locked -- model fetch
exec cargo run --quiet --locked -- generate \
  --topic "What Creative Commons does and why it matters" \
  --source examples/creativecommons-about-en.html \
  --hosts Alex,Sam --minutes 3 --out out "$@"

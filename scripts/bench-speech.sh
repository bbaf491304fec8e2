#!/usr/bin/env bash
# The embedded speech engine (Kokoro-82M on ONNX Runtime): session load time,
# real-time factor (synthesis seconds per audio second, after a warm-up) on 1
# and 2 intra-op threads, and peak memory (max RSS) of the whole process.
# Reads a 4-sentence passage (about 22 s of audio) with af_heart. Not a test.
# Needs the assets (`podforge model fetch`, run here) and espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet --example speech_bench --bin podforge
dir="${CARGO_TARGET_DIR:-target}/release"
"$dir/podforge" model fetch >/dev/null 2>&1
voice="${1:-af_heart}"
for threads in 1 2; do
  out=$(mktemp)
  if command -v /usr/bin/time >/dev/null; then
    line=$(/usr/bin/time -v -o "$out" "$dir/examples/speech_bench" "$threads" "$voice")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MB", $2 / 1024}' "$out")
  else
    line=$("$dir/examples/speech_bench" "$threads" "$voice")
    rss="(install GNU time for peak memory)"
  fi
  rm -f "$out"
  echo "$line peak_rss=$rss"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (other work slows both figures)"
# The media chain after speech: mixing, resampling, loudness, MP3, decoding.
cargo build --release --locked --quiet --example master_bench
"$dir/examples/master_bench" "${MINUTES:-10}"

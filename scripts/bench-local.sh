#!/usr/bin/env bash
# The embedded model on the main job: a 3-minute episode from the example page
# with the release binary. Reports end-to-end time, tokens/s (completion
# tokens over the run, prompt processing included) and peak memory (max RSS).
# Uses its own database (podforge_bench) on the local PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/podforge"
"$bin" model fetch >/dev/null
out=$(mktemp -d)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/podforge_bench?sslmode=disable" RUST_LOG=warn
start=$(date +%s.%N)
if command -v /usr/bin/time >/dev/null; then
  /usr/bin/time -v -o "$out/time.txt" "$bin" generate --topic "What Creative Commons does and why it matters" \
    --source examples/creativecommons-about-en.html --minutes 3 --out "$out" 2>"$out/progress.txt"
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
else
  "$bin" generate --topic "What Creative Commons does and why it matters" \
    --source examples/creativecommons-about-en.html --minutes 3 --out "$out" 2>"$out/progress.txt"
  rss="(install GNU time for peak memory)"
fi
end=$(date +%s.%N)
python3 - "$out/episode.json" "$start" "$end" "$rss" <<'PY'
import json, sys
episode = json.load(open(sys.argv[1]))
start, end, rss = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
usage = episode["usage"]
completion = sum(u["completion_tokens"] for u in usage.values())
prompt = sum(u["prompt_tokens"] for u in usage.values())
model_ms = sum(u["latency_ms"] for u in usage.values())
print(f"model: {episode['model']}")
print(f"episode: {episode['wordCount']} words, estimated {episode['estimatedDurationSeconds']} s (target {episode['targetDurationSeconds']} s), {len(episode['outline']['segments'])} segments")
print(f"end to end: {end - start:.1f} s (process start to files written, model load included)")
# The model runs one call at a time (concurrent segment calls queue), so the
# rate is completion tokens over the whole run, prompt processing included.
print(f"tokens: {prompt} prompt, {completion} completion: {completion / (end - start):.1f} completion tokens/s over the run")
print(f"peak memory: {rss} KiB")
PY
rm -rf "$out"

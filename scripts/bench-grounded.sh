#!/usr/bin/env bash
# Issue 12's benchmark: every corpus document (tests/fixtures/corpus) as the
# source of an episode written by the embedded model at 1, 2 and 3 minutes,
# with the quality figures the program measured on each (episode.json's
# `quality`). Not a CI gate: the structural figures hold by construction,
# citation coverage depends on the model.
#
# Usage: bash scripts/bench-grounded.sh [MINUTES...]   (default: 1 2 3)
#   DOCS="cat-en.html rfc6455-websocket-en.txt" to run a subset.
# Uses its own database (podforge_bench_grounded) on the local PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=("$@"); [ ${#minutes[@]} -eq 0 ] && minutes=(1 2 3)
corpus=tests/fixtures/corpus
docs=${DOCS:-$(cd "$corpus" && ls *.html *.txt)}
cargo build --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/debug/podforge"
"$bin" model fetch >/dev/null
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/podforge_bench_grounded?sslmode=disable" RUST_LOG=error PODFORGE_LLM=local
topic_of() {
  case "$1" in
    cat-en.html) echo "The domestic cat";;
    cat-zh.html) echo "家猫";;
    creativecommons-about-en.html) echo "What Creative Commons does";;
    franklin-autobiography-en.txt) echo "Benjamin Franklin's early life";;
    mozilla-wikipedia-page-en.html) echo "The history of Mozilla";;
    new-zealand-wikipedia-page-en.html) echo "New Zealand";;
    python-unicode-howto-en.html) echo "Unicode in Python";;
    rfc6455-websocket-en.txt) echo "How the WebSocket protocol works";;
    *) echo "${1%.*}";;
  esac
}
printf '%-36s %3s %6s %5s %6s %5s %5s %5s %5s %6s %5s %5s %s\n' document min status words ratio cover dangl unfin rep overlap leaks frame missed
for doc in $docs; do
  lang=en; [[ "$doc" == *-zh.* ]] && lang=zh
  for m in "${minutes[@]}"; do
    out=$(mktemp -d)
    start=$(date +%s)
    if "$bin" generate --topic "$(topic_of "$doc")" --source "$corpus/$doc" --minutes "$m" --language "$lang" \
        --hosts Alex,Sam --out "$out" >"$out/stdout.txt" 2>"$out/progress.txt"; then
      python3 - "$out/episode.json" "$doc" "$m" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); q = e.get("quality") or {}
frame = f"{q.get('introTurns')}/{q.get('outroTurns')}{'' if q.get('everyHostInFraming') else '!'}"
print(f"{sys.argv[2]:<36} {sys.argv[3]:>3} {'ok':>6} {q.get('words',0):>5} {q.get('wordsRatio',0):>6.2f} "
      f"{q.get('citationCoverage',0):>5.2f} {q.get('danglingCitations'):>5} {q.get('unfinishedTurns'):>5} "
      f"{q.get('repeatedTurns'):>5} {q.get('maxSegmentOverlap',0):>6.3f} {q.get('leaks'):>5} {frame:>5} "
      f"{'; '.join(q.get('floorsMissed', [])) or '-'} ({sys.argv[4]} s)")
PY
    else
      printf '%-36s %3s %6s %s\n' "$doc" "$m" FAILED "$(grep -o '[A-Z_]\{6,\}:.*' "$out/progress.txt" | tail -1)"
    fi
    rm -rf "$out"
  done
done

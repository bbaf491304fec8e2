#!/usr/bin/env bash
# Proves the Dockerfile's runtime stage without a container engine (none runs
# on this kind of machine): builds the release binary, makes a minimal Debian
# bookworm root with debootstrap holding only what the runtime stage installs
# (scripts/runtime-packages.txt, the same list the Dockerfile reads), then,
# inside that root with chroot and as the unprivileged `podforge` user, runs
# `podforge migrate`, `podforge serve` and one generation against the mock
# provider (served from outside the root) read aloud by the embedded speech
# engine (its assets copied into the root's data directory, as a volume or a
# baked image would hold them), fetches the MP3 through its signed URL with a
# range request, and stops the server with SIGTERM.
#
# Needs root (debootstrap, chroot, mounts), PostgreSQL on 127.0.0.1:5432 and
# the Debian mirror. Prints the root's size and the binary's size.
# Usage: bash scripts/runtime-root.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/podforge/target}"
CACHE="${PODFORGE_RUNTIME_CACHE:-$HOME/.cache/podforge/runtime-root}"
BASE="$CACHE/base"
ROOT="$CACHE/image"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DB="podforge_runtime_$$"

command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl

echo "== release build from exactly what the Dockerfile's build stage copies"
CONTEXT="$CACHE/context"
rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from/ {for (i = 2; i < NF; i++) print $i}' Dockerfile |
  while read -r item; do cp -r "$item" "$CONTEXT/"; done
cargo build --release --locked --bin podforge --manifest-path "$CONTEXT/Cargo.toml"
cargo build --locked --example mock_provider

echo "== base root (debootstrap --variant=minbase bookworm, cached)"
if [ ! -x "$BASE/bin/sh" ]; then
  rm -rf "$BASE"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase bookworm "$BASE" "$MIRROR"
fi

echo "== runtime stage: packages from scripts/runtime-packages.txt"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
cleanup() {
  set +e
  [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
  [ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null
  mountpoint -q "$ROOT/proc" && umount "$ROOT/proc"
  mountpoint -q "$ROOT/dev" && umount -l "$ROOT/dev"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/dev/pts"
# shellcheck disable=SC2046
chroot "$ROOT" /bin/sh -c "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(grep -v '^#' scripts/runtime-packages.txt | xargs) >/dev/null && rm -rf /var/lib/apt/lists/*"
chroot "$ROOT" /bin/sh -c "useradd --system --uid 10001 --home-dir /data podforge && mkdir -p /data && chown podforge /data"
install -m 0755 "$CARGO_TARGET_DIR/release/podforge" "$ROOT/usr/local/bin/podforge"
# The speech assets `podforge model fetch` keeps (fetched here first if missing).
SPEECH="${PODFORGE_DATA_DIR:-$HOME/.local/share/podforge}/speech"
[ -f "$SPEECH/kokoro-v1.0.int8.onnx" ] || "$CARGO_TARGET_DIR/release/podforge" model fetch
cp -r "$SPEECH" "$ROOT/data/speech"
chroot "$ROOT" /bin/sh -c "chown -R podforge /data"

# The command prefix that runs a program inside the root as `podforge`, with
# only the environment the image would have (plus what this run needs).
in_root() {
  IN_ROOT=(chroot --userspec=podforge:podforge "$ROOT" /usr/bin/env -i HOME=/data PATH=/usr/local/bin:/usr/bin:/bin
    PODFORGE_ENV=production PODFORGE_DATA_DIR=/data
    JWT_SECRET=runtime-root-check-secret-of-at-least-32-bytes
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
    OPENAI_BASE_URL="$OPENAI_BASE_URL" OPENAI_API_KEY=mock PODFORGE_LLM_MODEL=mock PODFORGE_TTS=local
    PODFORGE_BIND=127.0.0.1:18089 RUST_LOG=warn)
}

echo "== mock provider (outside the root)"
"$CARGO_TARGET_DIR/debug/examples/mock_provider" >"$CACHE/mock.out" &
MOCK_PID=$!
for _ in $(seq 1 50); do grep -q OPENAI_BASE_URL "$CACHE/mock.out" 2>/dev/null && break; sleep 0.1; done
OPENAI_BASE_URL="$(sed -n 's/^OPENAI_BASE_URL=//p' "$CACHE/mock.out")"
export OPENAI_BASE_URL

in_root
echo "== podforge migrate (inside the root)"
"${IN_ROOT[@]}" podforge migrate

echo "== podforge serve (inside the root)"
# chroot and env exec, so this PID is podforge's own and receives the SIGTERM.
"${IN_ROOT[@]}" podforge serve >"$CACHE/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18089/readyz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:18089/readyz; echo

gql() {
  curl -sf http://127.0.0.1:18089/graphql -H 'content-type: application/json' ${TOKEN:+-H "authorization: Bearer $TOKEN"} \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$1")"
}
TOKEN="$(gql 'mutation { register(input: {email: "ops@example.com", password: "runtime root check"}) { accessToken } }' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["register"]["accessToken"])')"
ID="$(gql 'mutation { generatePodcast(input: {topic: "How tides work", targetMinutes: 2, sources: [{title: "Tides", text: "Tides are caused by the gravity of the moon and the sun. Spring tides are higher than neap tides. Most coasts see two high tides a day."}]}) { id } }' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["generatePodcast"]["id"])')"
echo "generation $ID"
STATUS=""
for _ in $(seq 1 300); do
  STATUS="$(gql "query { podcast(id: \"$ID\") { status } }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["podcast"]["status"])')"
  case "$STATUS" in COMPLETED | FAILED | CANCELLED) break ;; esac
  sleep 0.2
done
echo "status: $STATUS"
gql "query { podcast(id: \"$ID\") { title wordCount error { code message } audio { bytes durationSeconds loudnessLufs truePeakDbtp } } }"
echo
URL="$(gql "query { podcast(id: \"$ID\") { audio { url } } }" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["podcast"]["audio"]["url"])')"
RANGE_STATUS="$(curl -s -o "$CACHE/range.bin" -w '%{http_code}' -H 'Range: bytes=0-1023' "$URL")"
echo "range request: HTTP $RANGE_STATUS, $(stat -c %s "$CACHE/range.bin") bytes"

echo "== SIGTERM"
kill -TERM "$SERVE_PID"
SERVE_STATUS=0
wait "$SERVE_PID" || SERVE_STATUS=$?
SERVE_PID=""
echo "serve exited with $SERVE_STATUS"

echo "== sizes"
du -shx --apparent-size "$ROOT" | awk '{print "runtime root: " $1}'
du -sh --apparent-size "$ROOT/usr/local/bin/podforge" | awk '{print "podforge binary: " $1}'
ldd "$ROOT/usr/local/bin/podforge" | awk '{print "links: " $1}'

[ "$STATUS" = COMPLETED ] && [ "$SERVE_STATUS" = 0 ] && [ "$RANGE_STATUS" = 206 ] && echo "runtime root: PASS"

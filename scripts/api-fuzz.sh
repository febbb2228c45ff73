#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI document with Schemathesis (PyPI): a real
# `signalbox serve` on a free port, a tenant, an app and a key, then every operation with the
# credential it takes — the documented examples, the coverage phase and stateless fuzzing,
# every check on (exceptions, with their reasons: tests/api-fuzz/schemathesis.toml).
# Any failure fails the script. Run by scripts/test.sh; alone: scripts/api-fuzz.sh [BINARY].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
VERSION=4.32.5
BIN=${1:-${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/signalbox}}
ST="$CACHE/schemathesis/bin/schemathesis"
EXAMPLES=${SIGNALBOX_FUZZ_EXAMPLES:-25}
SEED=${SIGNALBOX_FUZZ_SEED:-20261206}

log() { printf '\033[1m[api-fuzz]\033[0m %s\n' "$*" >&2; }

if ! "$ST" --version 2>/dev/null | grep -q "$VERSION"; then
  log "installing schemathesis $VERSION from PyPI into .cache/schemathesis"
  rm -rf "$CACHE/schemathesis"
  python3 -m venv "$CACHE/schemathesis"
  "$CACHE/schemathesis/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN="sba_api_fuzz_operator_token_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

SIGNALBOX_ADMIN_TOKEN="$ADMIN" SIGNALBOX_LOG=error "$BIN" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 200); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fsS "$BASE/readyz" >/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }

# POST JSON with a bearer; print one field of the answer.
post() { # url bearer body field
  curl -fsS -X POST "$BASE$1" -H "Authorization: Bearer $2" -H 'content-type: application/json' -d "$3" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['$4'])"
}
TENANT=$(post /v1/tenants "$ADMIN" '{"name":"fuzz"}' token)
APP=$(post /v1/apps "$TENANT" '{"name":"fuzz","history":{"groups":["*"]}}' id)
KEY=$(post "/v1/apps/$APP/keys" "$TENANT" '{"name":"fuzz"}' credential)

STATUS=0
run() { # what bearer tags...
  local what=$1 bearer=$2
  shift 2
  local tags=()
  for tag in "$@"; do tags+=(--include-tag "$tag"); done
  local attempt
  for attempt in 1 2; do
    log "fuzzing the $what operations"
    # One worker: with two threads, CPython 3.11's ast module (which Hypothesis calls to
    # describe its filters) can fail with "AST constructor recursion depth mismatch". That
    # error is the interpreter's, not a finding: a run that fails with it alone runs again.
    if "$ST" --config-file "$ROOT/tests/api-fuzz/schemathesis.toml" run "$BASE/openapi.json" \
      --header "Authorization: Bearer $bearer" "${tags[@]}" \
      --checks all --phases examples,coverage,fuzzing --max-examples "$EXAMPLES" --seed "$SEED" \
      --workers 1 --no-color --suppress-health-check all 2>&1 | tee "$WORK/run.log"; then
      return
    fi
    if [ "$attempt" -eq 1 ] && grep -q "AST constructor recursion depth mismatch" "$WORK/run.log" &&
      ! grep -qE "^- ST[0-9]+ " "$WORK/run.log"; then
      log "an interpreter error, not a finding: running the $what operations again"
      continue
    fi
    STATUS=1
    return
  done
}
run operator "$ADMIN" tenants
run tenant "$TENANT" apps keys webhooks tokens
run "app key" "$KEY" tokens messages groups connections presence
exit $STATUS

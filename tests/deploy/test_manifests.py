"""Deployment artefacts: Kubernetes manifests validated offline against the bundled schemas (base and the
rendered production overlay), the compose file and the Dockerfile checked for what operators rely on."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from deploy.feeds import feeds_of
from deploy.services import ALL, SERVICES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"


def _load_kustomization(directory: Path) -> list[dict]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for res in kust.get("resources", []):
        path = (directory / res).resolve()
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _merge(base, patch):
    """Strategic merge for the shapes the overlay uses: dicts merge, lists of named items merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                  for i in base + patch):
        out = [dict(i) for i in base]
        for item in patch:
            for idx, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[idx] = _merge(existing, item)
                    break
            else:
                out.append(item)
        return out
    return patch


def render(directory: Path) -> list[dict]:
    """A small kustomize: resources, namespace, images, replicas, labels and patches (what this repo uses)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = [copy.deepcopy(d) for d in _load_kustomization(directory)]
    for patch_ref in kust.get("patches", []):
        patch = yaml.safe_load((directory / patch_ref["path"]).read_text())
        matched = [i for i, d in enumerate(docs)
                   if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        assert matched, f"patch {patch_ref['path']} matches nothing"
        for i in matched:
            docs[i] = _merge(docs[i], patch)
    for d in docs:
        if kust.get("namespace") and d["kind"] != "Namespace":
            d["metadata"]["namespace"] = kust["namespace"]
        for lab in kust.get("labels", []):
            d["metadata"].setdefault("labels", {}).update(lab["pairs"])
        for r in kust.get("replicas", []):
            if d["kind"] == "Deployment" and d["metadata"]["name"] == r["name"]:
                d["spec"]["replicas"] = r["count"]
        if d["kind"] in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                for img in kust.get("images", []):
                    name, _, tag = c["image"].partition(":")
                    if name == img["name"]:
                        c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}"
    return docs


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def manifests(request) -> list[dict]:
    return render(K8S / request.param)


def test_every_manifest_validates_strictly(manifests):
    for doc in manifests:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validator_catches_a_broken_manifest(manifests):
    broken = copy.deepcopy(next(d for d in manifests if d["kind"] == "Deployment"))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_process_has_probes_and_runs_unprivileged(manifests):
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    assert set(deployments) == {s.name.replace("_", "-") for s in ALL}
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        want = "/healthz" if name == "departments" else "/readyz"
        assert c["readinessProbe"]["httpGet"]["path"] == want
        assert c["args"] == ["serve", name.replace("-", "_")]


def test_scaling_disruption_budgets_migration_and_network(manifests):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    assert {("HorizontalPodAutoscaler", "gateway"), ("HorizontalPodAutoscaler", "svc-services")} <= kinds
    assert {("PodDisruptionBudget", s.name.replace("_", "-")) for s in ALL} <= kinds
    assert ("Job", "onenet-migrate") in kinds
    assert ("ConfigMap", "onenet-config") in kinds and ("Secret", "onenet-database-urls") in kinds
    policies = [d for d in manifests if d["kind"] == "NetworkPolicy"]
    open_to_all = [p for p in policies for rule in p["spec"].get("ingress", []) if "from" not in rule]
    assert [p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in open_to_all] == ["gateway"]
    assert any(p["spec"]["podSelector"] == {} and p["spec"].get("ingress") is None for p in policies)


def test_every_process_gets_the_metrics_token_from_a_secret(manifests):
    """/metrics answers its bearer token only (issue 23, finding 8): every process is given it, from a Secret."""
    secrets = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Secret"}
    assert "token" in secrets["onenet-metrics"]["stringData"]
    for d in (d for d in manifests if d["kind"] == "Deployment"):
        env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["ONENET_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "onenet-metrics", "key": "token"}, \
            d["metadata"]["name"]


def test_overlay_changes_what_it_says():
    prod = {(d["kind"], d["metadata"]["name"]): d for d in render(K8S / "overlays" / "production")}
    assert prod[("Deployment", "svc-residents")]["spec"]["replicas"] == 3
    gw = prod[("Deployment", "gateway")]["spec"]["template"]["spec"]["containers"][0]
    assert gw["image"] == "registry.example.internal/onenet:0.1.0" and gw["resources"]["limits"]["cpu"] == "2"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the patch merged, it did not replace
    assert all(d["metadata"].get("namespace") == "onenet" for k, d in prod.items() if k[0] != "Namespace")


def test_compose_runs_every_process_after_bootstrap():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "bootstrap"} <= set(services)
    for spec in ALL:
        svc = services[spec.name]
        assert svc["command"] == ["serve", spec.name]
        assert svc["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["gateway"]
    assert all(services[spec.name]["environment"]["ONENET_METRICS_TOKEN"] for spec in ALL)


def test_compose_runs_the_edge_in_front_of_the_gateway_as_kubernetes_does():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    gw, edge = compose["services"]["gateway"], compose["services"]["edge"]
    pod = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "deployments.yaml").read_text())
               if d["metadata"]["name"] == "gateway")["spec"]["template"]["spec"]["containers"]
    k8s = {c["name"]: {e["name"]: e.get("value") for e in c["env"]} for c in pod}
    assert edge["command"] == ["edge"] and edge["network_mode"] == "service:gateway"  # one network, as in the pod
    assert gw["ports"] == ["8000:8000"] and edge["environment"]["ONENET_EDGE_LISTEN"].endswith(":8000")
    assert gw["environment"]["ONENET_PORT"] == k8s["gateway"]["ONENET_PORT"]
    assert gw["environment"]["ONENET_EDGE_CONTROL_URL"] == k8s["gateway"]["ONENET_EDGE_CONTROL_URL"]
    for name in ("ONENET_EDGE_GATEWAY_URL", "ONENET_EDGE_CONTROL_PORT", "ONENET_EDGE_PREFIX"):
        assert edge["environment"][name] == k8s["edge"][name], name
    assert edge["environment"]["ONENET_EDGE_SECRET"] == gw["environment"]["ONENET_EDGE_SECRET"]
    keys = [k for k in k8s["edge"] if k.startswith("ONENET_ASSERTION_KEY_")]
    assert keys and all(edge["environment"][k] == gw["environment"][k] for k in keys)


def test_dockerfile_runs_as_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and 'ENTRYPOINT ["onenet"]' in text
    assert 'CMD ["onenet", "healthcheck"]' in text


def test_healthcheck_command_answers_for_the_service_port():
    """`onenet healthcheck` (the image's HEALTHCHECK) exits 0 when /healthz answers 200, 1 when nothing listens."""
    import http.server
    import os
    import socket
    import subprocess
    import sys
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from deploy.cli import main; main()", "healthcheck"]
    try:
        up = subprocess.run(cmd, env={**os.environ, "ONENET_PORT": str(server.server_port)}, timeout=60)
        down = subprocess.run(cmd, env={**os.environ, "ONENET_PORT": str(closed_port)}, timeout=60)
    finally:
        server.shutdown()
    assert (up.returncode, down.returncode) == (0, 1)


def test_the_gateway_pod_runs_its_edge_in_front(manifests):
    """The edge (docs/adr/0012) runs in the gateway's pod: the pod's public port is the edge's, the gateway listens
    where the edge sends what it does not answer, both hold the same secret and assertion keys, and the edge's
    nginx configuration renders from that environment."""
    from gateway.edge.config import Runtime, render
    from gateway.settings import GatewaySettings

    docs = {(d["kind"], d["metadata"]["name"]): d for d in manifests}
    pod = docs[("Deployment", "gateway")]["spec"]["template"]["spec"]
    gateway, edge = pod["containers"]
    assert (gateway["name"], edge["name"], edge["args"]) == ("gateway", "edge", ["edge"])
    env_gw = {e["name"]: e for e in gateway["env"]}
    env_edge = {e["name"]: e for e in edge["env"]}
    assert {p["name"]: p["containerPort"] for p in edge["ports"]} == {"http": 8000}
    assert docs[("Service", "gateway")]["spec"]["ports"][0]["targetPort"] == "http"
    assert env_edge["ONENET_EDGE_GATEWAY_URL"]["value"] == f"http://127.0.0.1:{env_gw['ONENET_PORT']['value']}"
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"app": int(env_gw["ONENET_PORT"]["value"])}
    assert env_gw["ONENET_EDGE_CONTROL_URL"]["value"] == \
        f"http://127.0.0.1:{env_edge['ONENET_EDGE_CONTROL_PORT']['value']}/_edge/state"
    assert env_gw["ONENET_EDGE_SECRET"]["valueFrom"] == env_edge["ONENET_EDGE_SECRET"]["valueFrom"]
    keys = {n for n in env_gw if n.startswith("ONENET_ASSERTION_KEY_")}
    assert len(keys) == 5 and all(env_edge[n] == env_gw[n] for n in keys)
    assert env_edge["ONENET_REDIS_URL"] == env_gw["ONENET_REDIS_URL"]  # the same rate-limit buckets
    assert edge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}  # ready when both are
    assert edge["securityContext"]["readOnlyRootFilesystem"] is True
    assert env_edge["ONENET_EDGE_PREFIX"]["value"].startswith("/tmp/")  # nginx writes there: an emptyDir
    assert {m["mountPath"] for m in edge["volumeMounts"]} == {"/tmp"}
    config = docs[("ConfigMap", "onenet-config")]["data"]
    settings = GatewaySettings(_env_file=None, **{k[len("ONENET_"):].lower(): v for k, v in config.items()
                                                  if k.startswith("ONENET_UPSTREAM_")})
    conf = render(settings, Runtime(nginx="/usr/sbin/nginx", modules=(), lua_cpath="/x/?.so"),
                  listen=env_edge["ONENET_EDGE_LISTEN"]["value"], control_port=8007,
                  gateway=env_edge["ONENET_EDGE_GATEWAY_URL"]["value"], secret="s" * 32, prefix=Path("/tmp/edge"))
    assert "listen 0.0.0.0:8000 reuseport;" in conf and "server 127.0.0.1:8006" in conf
    assert "server svc-services:8001" in conf and "server departments:8005" in conf


def test_the_image_carries_the_edge():
    """The image installs Debian's nginx and Lua modules, and the package ships the edge's Lua."""
    text = (ROOT / "Dockerfile").read_text()
    for package in ("nginx", "libnginx-mod-http-lua", "lua-resty-core", "lua-cjson", "lua-nginx-redis"):
        assert f" {package} " in text or f" {package}\n" in text, package
    assert '"*.lua"' in (ROOT / "pyproject.toml").read_text()


def _declared_feeds(env: dict[str, str], service: str) -> dict[str, tuple[str, str, str]]:
    """A process's ONENET_OUTBOX_SUBSCRIBERS and _KEYS as {prefix: (subscriber, path, key reference)}."""
    subs = json.loads(env.get("ONENET_OUTBOX_SUBSCRIBERS") or "{}")
    keys = json.loads(env.get("ONENET_OUTBOX_SUBSCRIBER_KEYS") or "{}")
    assert set(subs) == set(keys), (service, "every feed needs its subscriber's key")
    out = {}
    for prefix, url in subs.items():
        u = urlsplit(url)
        out[prefix] = (u.hostname.replace("-", "_"), u.path, keys[prefix])
    return out


def _wanted_feeds(service: str) -> dict[str, tuple[str, str]]:
    return {f.prefix: (f.subscriber, f.path) for f in feeds_of(service)}


def _key_names(subscriber: str) -> set[str]:
    return {f"ONENET_{subscriber.upper()}_GATEWAY_ASSERTION_KEY", f"ONENET_{subscriber.upper()}_ASSERTION_KEY"}


def test_compose_and_kubernetes_wire_the_feeds_of_the_launchers_table(manifests):
    """deploy/feeds.py is the one table of which feed goes where: `onenet up` reads it, and compose and every
    Kubernetes overlay must say the same (subscriber, path, and the subscriber's own assertion key)."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    pods = {d["metadata"]["name"]: d for d in manifests if d.get("kind") == "Deployment"}
    for spec in SERVICES:
        want = _wanted_feeds(spec.name)
        container = pods[spec.name.replace("_", "-")]["spec"]["template"]["spec"]["containers"][0]
        k8s_env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
        for where, env in (("compose", compose[spec.name]["environment"]), ("kubernetes", k8s_env)):
            got = _declared_feeds(env, spec.name)
            assert {p: (sub, path) for p, (sub, path, _) in got.items()} == want, (where, spec.name)
            for prefix, (sub, _, key) in got.items():
                assert any(name in key for name in _key_names(sub)), (where, spec.name, prefix, key)

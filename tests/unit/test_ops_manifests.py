"""ops/k8s and ops/container: valid Kubernetes objects that name the image, ports, probes and
arguments the node really uses (the manifests are checked against the code, not a copy)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kernel.admin.routes import ReadRoutes
from kernel.cli.entry import build_parser
from kernel.config import load_config

OPS = Path(__file__).resolve().parents[2] / "ops"
MANIFESTS = sorted((OPS / "k8s").glob("*.yaml"))
K8S_VERSION = "1.30.0"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _image() -> str:
    match = re.search(r"-t (\S+) \.", (OPS / "container" / "Containerfile").read_text())
    assert match, "the Containerfile's first line names the image it builds"
    return match.group(1)


def _admin_paths() -> set[str]:
    routes = ReadRoutes(None, retry_after=1, events_buffer=1, max_streams=1).table()  # type: ignore[arg-type]
    return {route.template for route in routes}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_validate_accepts_every_object(path: Path) -> None:
    for doc in _docs(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in _docs(path):
            if doc["kind"] in ("StatefulSet", "Deployment"):
                found.append((doc["kind"], doc["spec"]["template"]["spec"]))
    return found


def test_pods_run_the_image_with_arguments_ronctl_accepts() -> None:
    kinds = sorted(kind for kind, _ in _pod_specs())
    assert kinds == ["Deployment", "StatefulSet"]
    for kind, pod in _pod_specs():
        (container,) = pod["containers"]
        assert container["image"] == _image()
        args = build_parser().parse_args(["run", *container["args"]])
        assert args.profile == ("macronode" if kind == "StatefulSet" else "micronode")
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["RON_RUNTIME_DIR"] == args.runtime_dir  # `kubectl exec ... ronctl` finds it
        cfg = load_config(args.profile, env=env)  # the RONK_* names and values are valid
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {
            "admin": int(cfg.observability.admin_addr.rsplit(":", 1)[1]),
            "gateway": int(cfg.gateway.addr.rsplit(":", 1)[1]),
            "overlay": int(cfg.overlay.addr.rsplit(":", 1)[1]),
        }
        assert cfg.amnesia.enabled is (kind == "Deployment")
        for probe, path in (
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "admin"}
            assert path in _admin_paths()
        assert pod["terminationGracePeriodSeconds"] > cfg.supervisor.shutdown_deadline + 2
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        run = volumes[mounts["/run/ron"]]
        assert run["emptyDir"]["medium"] == "Memory"  # the runtime dir is tmpfs (amnesia)


def test_the_statefulset_has_a_pvc_and_a_headless_service_naming_its_peers() -> None:
    docs = {doc["kind"]: doc for doc in _docs(OPS / "k8s" / "macronode.yaml")}
    sts, svc = docs["StatefulSet"], docs["Service"]
    assert (
        svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    )
    assert {p["name"] for p in svc["spec"]["ports"]} >= {"overlay"}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/ron"} in mounts
    assert "RONK_OVERLAY_PEERS" in docs["ConfigMap"]["data"]


def test_the_containerfile_runs_ronctl_as_a_user_with_the_ports_it_exposes() -> None:
    text = (OPS / "container" / "Containerfile").read_text()
    assert 'ENTRYPOINT ["ronctl", "run"]' in text and "USER 10001" in text
    assert "EXPOSE 9909 8080 9410" in text

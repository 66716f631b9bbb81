"""deploy/: what can be validated without Docker or Kubernetes. The files parse and hold what
they must; the manifests validate against the Kubernetes API schemas; the systemd unit passes
``systemd-analyze verify``; the image's command line runs as the image runs it, with its
environment, and the site's configuration file wins; the example configurations load."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from adapter.config import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_dockerfile_is_slim_pinned_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert "slim" in base and ":3.11." in base  # a pinned patch release, not :latest
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/healthz" in text
    assert "--constraint constraints.txt" in text
    # the image sets no setting a site's TOML could not override: only where the file is
    assert set(image_env()) - {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PIP_NO_CACHE_DIR",
    } == {"ADAPTER_CONFIG"}


def test_compose_file() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "hapi", "adapter", "subscribe"} <= set(services)
    assert services["subscribe"]["command"] == ["subscribe"]
    assert services["subscribe"]["depends_on"]["adapter"]["condition"] == "service_healthy"
    env = services["adapter"]["environment"]
    assert env["ADAPTER_EMR_BASE_URL"].startswith("http://hapi:")
    assert "ADAPTER_STORE_FILE" in env and "ADAPTER_WEBHOOK__SECRET_FILE" in env
    for name, secret in doc["secrets"].items():
        assert (DEPLOY / secret["file"]).is_file(), name
    for svc in services.values():
        image = svc.get("image", "")
        assert ":latest" not in image and (":" in image or "build" in svc)


def test_kubernetes_manifests() -> None:
    docs = [d for p in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]  # fmt: skip
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
                          "Job", "PodDisruptionBudget"}  # fmt: skip
    for doc in docs:  # against the API schemas of a current Kubernetes release
        kubernetes_validate.validate(doc, "1.30", strict=True)
    job = kinds["Job"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in job["containers"][0]["volumeMounts"]}
    assert {"/etc/charge-adapter", "/run/secrets/charge-adapter"} <= mounts  # config and secret
    assert kinds["PodDisruptionBudget"]["spec"]["selector"] == deployment_selector(kinds)
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "charge-adapter"
    assert kinds["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def deployment_selector(kinds: dict[str, Any]) -> Any:
    return kinds["Deployment"]["spec"]["selector"]


def test_a_manifest_against_the_schema_is_caught() -> None:
    bad = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
           "spec": {"minAvailable": 1, "selectr": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30", strict=True)


def test_configmap_config_loads(tmp_path: Path) -> None:
    cm = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(cm["data"]["adapter.toml"])
    settings = load_settings(cfg)
    assert settings.auth.type == "smart" and settings.webhook.port == 8080


def test_systemd_unit_parses() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "charge-adapter.service").read_text())
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    assert "charge-adapter serve --config" in unit["Service"]["ExecStart"]
    assert (
        unit["Service"]["User"] == "charge-adapter" and unit["Service"]["KillSignal"] == "SIGTERM"
    )


def test_example_config_loads_through_the_settings_model(tmp_path: Path) -> None:
    secret = tmp_path / "webhook_secret"
    secret.write_text("from-the-file\n")
    text = (DEPLOY / "adapter.example.toml").read_text()
    assert '"/etc/charge-adapter/secrets/webhook_secret"' in text  # the secret is set up
    session = tmp_path / "workbench_session"
    session.write_text("a-session-secret-of-more-than-32-characters\n")
    cfg = tmp_path / "adapter.toml"
    text = text.replace("/etc/charge-adapter/secrets/webhook_secret", str(secret))
    cfg.write_text(text.replace("/etc/charge-adapter/secrets/workbench_session", str(session)))
    settings = load_settings(cfg)
    assert settings.workbench is not None and settings.workbench.secure_cookie
    assert settings.workbench.session_secret.get_secret_value().startswith("a-session")
    assert settings.emr_base_url and settings.auth.type == "smart"
    assert settings.subscription.criteria == ["Procedure?", "Encounter?"]
    assert settings.webhook.host == "127.0.0.1" and settings.webhook.problem() is None
    assert settings.store is None  # SQLite in state_dir: no set-up


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit as shipped (its ExecStart pointed at this venv's
    command, which a VM install puts at /opt/charge-adapter/venv), and on a broken copy."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "systemd" / "charge-adapter.service").read_text()
    exe = Path(sys.executable).parent / "charge-adapter"
    unit = tmp_path / "charge-adapter.service"
    unit.write_text(text.replace("/opt/charge-adapter/venv/bin/charge-adapter", str(exe)))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert "Environment=ADAPTER_STORE" not in text  # nothing overrides the TOML's store
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace(f"ExecStart={exe}", "ExecStart=charge-adapter"))
    done = subprocess.run(
        [tool, "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0 or done.stderr.strip()


def image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


def image_command() -> list[str]:
    """ENTRYPOINT + CMD of the Dockerfile (exec form)."""
    text = (DEPLOY / "Dockerfile").read_text()
    found = {k: json.loads(v) for k, v in re.findall(r"^(ENTRYPOINT|CMD) (\[.*\])$", text, re.M)}
    return [*found["ENTRYPOINT"], *found.get("CMD", [])]


def test_the_image_command_line_runs_and_the_site_file_wins(tmp_path: Path) -> None:
    """The image's command line, with the image's environment, where the site mounted its own
    configuration over the built-in one: the site's port and store are the ones used (was: the
    image's ADAPTER_* environment silently overrode the site's TOML)."""
    from tests.fhir_server import free_port

    port = free_port()
    site = tmp_path / "adapter.toml"
    built_in = (DEPLOY / "container.toml").read_text()
    site.write_text(
        f'emr_base_url = "http://127.0.0.1:{free_port()}/fhir"\n'
        f'store = "sqlite:///{tmp_path / "site.db"}"\n'
        + built_in.replace("port = 8080", f'port = {port}\nsecret = "site-secret"')
    )
    env = {**os.environ, **image_env(), "ADAPTER_CONFIG": str(site)}
    command = image_command()
    assert command[:2] == ["charge-adapter", "serve"]
    exe = str(Path(sys.executable).parent / command[0])
    proc = subprocess.Popen([exe, *command[1:]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"listening on 0.0.0.0:{port}/notify", line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert (tmp_path / "site.db").exists()  # the site's store, not the image's state_dir
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()

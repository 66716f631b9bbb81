"""deploy/: what can be validated without Docker or Kubernetes: the files parse, hold what they
must, and the example configuration loads through the settings model."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from adapter.config import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_dockerfile_is_slim_pinned_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert "slim" in base and ":3.11." in base  # a pinned patch release, not :latest
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/healthz" in text
    assert "--constraint constraints.txt" in text and "ADAPTER_MAPPINGS=/app/mappings" in text


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
    assert set(kinds) == {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler"}
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


def test_example_config_loads_through_the_settings_model() -> None:
    settings = load_settings(DEPLOY / "adapter.example.toml")
    assert settings.emr_base_url and settings.auth.type == "smart"
    assert settings.subscription.criteria == ["Procedure?", "Encounter?"]
    assert settings.webhook.host == "127.0.0.1"

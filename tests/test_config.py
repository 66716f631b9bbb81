"""Settings: sources and precedence, secrets from files, masking; check-config and doctor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.config import load_settings, masked
from adapter.errors import ConfigError
from tests.fhir_server import FhirServer


def test_env_beats_toml_and_cli_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        'emr_base_url = "http://toml/fhir"\npoll_interval = 30\n[webhook]\nport = 9000\n'
    )
    assert load_settings(cfg).webhook.port == 9000
    monkeypatch.setenv("ADAPTER_WEBHOOK__PORT", "9100")
    monkeypatch.setenv("ADAPTER_EMR_BASE_URL", "http://env/fhir")
    s = load_settings(cfg)
    assert (s.webhook.port, s.emr_base_url, s.poll_interval) == (9100, "http://env/fhir", 30)
    assert load_settings(cfg, emr_base_url="http://cli/fhir").emr_base_url == "http://cli/fhir"
    monkeypatch.setenv("ADAPTER_CONFIG", str(cfg))
    assert load_settings().poll_interval == 30


def test_secrets_from_files_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("tok-from-file\n")
    (tmp_path / "hook").write_text("hook-from-file")
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[auth]\ntype = "bearer"\ntoken_file = "{tmp_path / "token"}"\n')
    monkeypatch.setenv("ADAPTER_WEBHOOK__SECRET_FILE", str(tmp_path / "hook"))
    monkeypatch.setenv("ADAPTER_STORE", "postgresql://adapter:pw@db/adapter")
    s = load_settings(cfg)
    assert s.auth.token and s.auth.token.get_secret_value() == "tok-from-file"
    assert s.webhook.secret and s.webhook.secret.get_secret_value() == "hook-from-file"
    assert s.store_url() == "postgresql://adapter:pw@db/adapter"
    shown = json.dumps(masked(s))
    assert "tok-from-file" not in shown and "hook-from-file" not in shown and "pw@" not in shown
    monkeypatch.setenv("ADAPTER_AUTH__TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(cfg)


def test_invalid_settings_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTER_WEBHOOK__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"webhook\.port"):
        load_settings()


def test_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('[webhook]\nsecret = "s3cret"\n')
    assert main(["check-config", "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["webhook"]["secret"] == "**********" and "s3cret" not in out + err
    assert "configuration OK" in err
    cfg.write_text('default_payer = "acme"\n')
    assert main(["check-config", "--config", str(cfg)]) == 2


def test_doctor_against_the_real_server(fhir: FhirServer, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        f'emr_base_url = "{fhir.base}"\nstate_dir = "state"\n[webhook]\nsecret = "d0ct0r"\n'
    )
    assert main(["doctor", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "ok    EMR reachable" in out and "ok    EMR auth works (none)" in out
    assert "ok    EMR ChargeItem write" in out and "ok    EMR Subscription create" in out
    assert "0 failed" in out
    from tests.fhir_server import free_port

    cfg.write_text(f'emr_base_url = "http://127.0.0.1:{free_port()}/fhir"\nstate_dir = "state"\n')
    assert main(["doctor", "--config", str(cfg)]) == 5
    assert "FAIL  EMR not reachable" in capsys.readouterr().out


def test_tls_verification_is_on_and_takes_a_ca_bundle(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text('emr_base_url = "https://emr.example.org/fhir"\n')
    # on: True, or the CA bundle the environment names (read once by the client)
    env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    assert load_settings(cfg).emr().session.verify in (True, env_ca)
    bundle = tmp_path / "site-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg.write_text(f'emr_base_url = "https://emr.example.org/fhir"\nca_bundle = "{bundle}"\n')
    assert load_settings(cfg).emr().session.verify == str(bundle)


def test_a_webhook_without_a_secret_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing is accepted unauthenticated: serve and check-config refuse a webhook without a
    secret, unless allow_unauthenticated is set and the receiver listens on loopback only."""
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n[webhook]\nhost = "0.0.0.0"\n')
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "webhook.secret is required" in capsys.readouterr().err
    assert main(["serve", "--config", str(cfg)]) == 2
    assert "webhook.secret is required" in capsys.readouterr().err
    cfg.write_text(
        f'state_dir = "{tmp_path}"\n[webhook]\nhost = "0.0.0.0"\nallow_unauthenticated = true\n'
    )
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "needs a loopback webhook host" in capsys.readouterr().err
    cfg.write_text(
        f'state_dir = "{tmp_path}"\n[webhook]\nhost = "127.0.0.1"\nallow_unauthenticated = true\n'
    )
    assert main(["check-config", "--config", str(cfg)]) == 0
    cfg.write_text(f'state_dir = "{tmp_path}"\n[webhook]\nsecret = ""\n')  # empty is none
    assert main(["check-config", "--config", str(cfg)]) == 2


def test_a_receiver_needs_a_secret() -> None:
    from adapter.intake.webhook import Receiver

    with pytest.raises(ValueError, match="needs a secret"):
        Receiver(lambda n: None)
    with pytest.raises(ValueError, match="needs a secret"):
        Receiver(lambda n: None, secret="")
    assert Receiver(lambda n: None, allow_unauthenticated=True).secret is None


def test_claim_settings_reach_the_output(tmp_path: Path) -> None:
    from adapter.config import load_settings

    toml = tmp_path / "a.toml"
    toml.write_text(
        'billing_provider = "Organization/clinic"\nplace_of_service = "11"\n'
        'modifier_extension = "https://fhir.example.org/StructureDefinition/mod"\n'
    )
    from adapter.cli.offline import build_options

    options = build_options(load_settings(toml))
    assert options.billing_provider == "Organization/clinic"
    assert options.place_of_service == "11"
    assert options.modifier_extension == "https://fhir.example.org/StructureDefinition/mod"
    for bad in ('place_of_service = "office"', 'billing_provider = "clinic"',
                'modifier_extension = "ftp://x"'):  # fmt: skip
        toml.write_text(bad + "\n")
        with pytest.raises(ConfigError) as e:
            load_settings(toml)
        assert bad.split(" ")[0] in str(e.value)


def test_cds_settings_need_one_key_per_client(tmp_path: Path) -> None:
    """(issue 17) a CDS client has its public key or its JWKS URL, not neither, not both."""
    from adapter.config import load_settings

    pem = tmp_path / "ehr.pem"
    pem.write_text("-----BEGIN PUBLIC KEY-----\n")
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[cds]\nbase_url = "https://a.example"\n[[cds.clients]]\niss = "https://e"\n'
                   f'public_key = "{pem}"\n')  # fmt: skip
    settings = load_settings(cfg)
    assert settings.cds is not None and settings.cds.clients[0].public_key == pem
    cfg.write_text('[cds]\nbase_url = "https://a.example"\n[[cds.clients]]\niss = "https://e"\n')
    with pytest.raises(ConfigError, match="public_key or jwks_url"):
        load_settings(cfg)


def test_workbench_settings(tmp_path: Path) -> None:
    """(issue 18) the session secret is long enough; an OIDC provider maps to known roles."""
    from adapter.config import load_settings

    cfg = tmp_path / "a.toml"
    cfg.write_text('[workbench]\nsession_secret = "short"\n')
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings(cfg)
    good = '[workbench]\nsession_secret = "' + "x" * 40 + '"\n'
    cfg.write_text(good + '[workbench.oidc]\nissuer = "https://login.example"\nclient_id = "w"\n'
                   'client_secret = "s"\nroles = { "billing-lead" = "manager" }\n')  # fmt: skip
    settings = load_settings(cfg)
    assert settings.workbench is not None and settings.workbench.oidc is not None
    assert settings.workbench.oidc.roles == {"billing-lead": "manager"}
    assert "x" * 40 not in repr(settings)  # the secret is masked
    cfg.write_text(good + '[workbench.oidc]\nissuer = "https://login.example"\nclient_id = "w"\n'
                   'client_secret = "s"\nroles = { "billing-lead" = "owner" }\n')  # fmt: skip
    with pytest.raises(ConfigError, match="roles"):
        load_settings(cfg)


def test_msh_names_fit_the_hd_field() -> None:
    """MSH-3..6 take 20 characters at most and none of ER7's delimiters: refused when the
    config is read, not by the receiver one message at a time."""
    from pydantic import ValidationError

    from adapter.config import TargetSettings

    base = {"name": "dft", "kind": "hl7v2-mllp", "host": "billing.example.org", "port": 2575}
    assert TargetSettings(**base, sending_facility="CLINIC-NORTH").sending_facility
    for bad in ("&" * 7, "A" * 21, "X|Y", "A^B"):
        with pytest.raises(ValidationError, match="sending_facility"):
            TargetSettings(**base, sending_facility=bad)

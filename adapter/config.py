"""Run configuration, built once in the CLI and passed down explicitly.

Sources, strongest first: command-line options; environment variables with the ``ADAPTER_``
prefix (nested keys with ``__``: ``ADAPTER_AUTH__TYPE=smart``, ``ADAPTER_WEBHOOK__PORT=8080``);
the TOML file (``--config FILE`` or ``ADAPTER_CONFIG``); defaults. Any secret can be read from a
file for container secrets: ``ADAPTER_AUTH__TOKEN_FILE=/run/secrets/token`` in the environment,
or ``token_file = "/run/secrets/token"`` in the TOML. Every key is optional for ``replay``::

    default_payer = "medicare"              # profile when a patient has no usable Coverage
    timezone = "America/Chicago"            # the site's zone: dates of service are dates there
                                            # (default: each time's own offset; set it when the
                                            # EMR sends UTC instants such as 23:30Z)
    billing_recipient = "Organization/billing"   # where billing-office findings go
    billing_provider = "Organization/clinic"     # Claim.provider (default: the encounter's
                                                 # serviceProvider, else the therapist)
    place_of_service = "11"                 # CMS POS for Claim items (home visits: 12 anyway)
    modifier_extension = "https://…"        # ChargeItem modifier extension URL (default: ours)
    mappings = "/etc/charge-adapter/mappings"    # rules directory (default: the shipped one)
    kx_opening = "/etc/charge-adapter/kx.csv"   # KX opening balances: patient,year,pt_slp,ot
    authorizations = "/etc/charge-adapter/auth.csv"  # payers' authorizations (README), besides
                                                     # the EMR's ClaimResponses
    emr_authorizations = true               # search the EMR's ClaimResponses (false where it
                                            # offers none: its searches would fail every day)
    poll_context = true                     # polls also find changed CarePlans, ClaimResponses
                                            # and DocumentReferences (the clocks' inputs)
    bill_from = 2026-07-01                  # the first date of service the adapter bills:
                                            # earlier days are history only (backfill)
    emr_base_url = "https://emr.example.org/fhir"     # where procedures are read
    write_base_url = "https://billing.example.org/fhir"  # where charges go (default: the EMR)
    state_dir = "/var/lib/charge-adapter"   # holds the SQLite store by default
    store = "postgresql://adapter@db/adapter"   # durable store (default: sqlite in state_dir)
    ca_bundle = "/etc/ssl/certs/site-ca.pem"    # TLS verification is on; a site CA if needed
    log_level = "INFO"                          # JSON logs: ids and counts only, never PHI
    poll_interval = 60                      # seconds between polls / catch-up sweeps

    [auth]            # how to reach the EMR: type = none | bearer | basic | smart
    type = "smart"
    client_id = "charge-adapter"
    private_key = "/run/secrets/adapter.pem"      # PEM or JWK; RS384 or ES384
    alg = "RS384"

    [write_auth]      # the write target's, when it differs (default: the same as [auth])

    [webhook]         # charge-adapter serve
    host = "0.0.0.0"
    port = 8080
    path = "/notify"
    public_url = "https://adapter.example.org/notify"   # what the EMR calls
    secret = "…"                                     # sent by the EMR in secret_header

    [subscription]    # charge-adapter subscribe
    kind = "rest-hook"          # rest-hook (R4 criteria) | backport (R4 topic-based)
    content = "full-resource"   # full-resource | id-only | empty (rest-hook: full-resource | empty)
    topic = "…"                 # backport: the topic canonical URL the EMR offers
    criteria = ["Procedure?", "Encounter?"]

Secrets (tokens, passwords, the webhook secret) are ``SecretStr`` and never printed.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from contextvars import ContextVar
from datetime import date, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from adapter.emr.auth import Auth, BasicAuth, BearerAuth, NoAuth, SmartBackendAuth
from adapter.emr.budget import RequestBudget
from adapter.emr.client import FhirClient
from adapter.errors import ConfigError

Reference = Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")]


def zone_of(name: str | None, what: str) -> tzinfo | None:
    """An IANA time zone by name; a ConfigError naming ``what`` when there is no such zone."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{what} {name!r} is not an IANA time zone (e.g. America/New_York, America/Chicago, "
            "America/Denver, America/Los_Angeles, Pacific/Honolulu, UTC)"
        ) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSettings(_Model):
    type: Literal["none", "bearer", "basic", "smart"] = "none"
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    private_key: Path | None = None
    alg: Literal["RS384", "ES384", "RS256", "ES256"] = "RS384"
    kid: str | None = None
    scope: str = "system/*.read system/*.write"
    token_url: str | None = None

    def build(self, base_url: str) -> Auth:
        if self.type == "bearer":
            if self.token is None:
                raise ConfigError("auth type bearer needs token")
            return BearerAuth(self.token.get_secret_value())
        if self.type == "basic":
            if not self.username or self.password is None:
                raise ConfigError("auth type basic needs username and password")
            return BasicAuth(self.username, self.password.get_secret_value())
        if self.type == "smart":
            if not self.client_id or self.private_key is None:
                raise ConfigError("auth type smart needs client_id and private_key")
            return SmartBackendAuth(
                base_url, self.client_id, self.private_key, alg=self.alg, kid=self.kid,
                scope=self.scope, token_url=self.token_url,
            )  # fmt: skip
        return NoAuth()


class WebhookSettings(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    path: str = "/notify"
    public_url: str | None = None
    secret: SecretStr | None = None
    secret_header: str = "X-Adapter-Secret"
    max_body: Annotated[int, Field(gt=0)] = 5_000_000
    #: no secret at all: only for a receiver on a loopback address (tests, a local sidecar)
    allow_unauthenticated: bool = False

    def problem(self, host: str | None = None) -> str | None:
        """Why this webhook may not be served (on ``host``, default ``self.host``), or None.
        Nothing is accepted unauthenticated: a secret is required unless
        ``allow_unauthenticated`` is set and the receiver listens on loopback only."""
        if self.secret is not None and self.secret.get_secret_value():
            return None
        where = host or self.host
        if not self.allow_unauthenticated:
            return (
                "webhook.secret is required: every delivery must carry it in "
                f"{self.secret_header} (set secret or secret_file; allow_unauthenticated = true "
                "is accepted for a loopback host only)"
            )
        if not is_loopback(where):
            return (
                f"allow_unauthenticated needs a loopback webhook host (127.0.0.1, ::1), "
                f"not {where!r}: set webhook.secret"
            )
        return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SubscriptionSettings(_Model):
    kind: Literal["rest-hook", "backport"] = "rest-hook"
    content: Literal["full-resource", "id-only", "empty"] = "full-resource"
    topic: str | None = None
    criteria: list[str] = ["Procedure?", "Encounter?"]


class BillingProviderSettings(_Model):
    """The 837P billing provider (loop 2010AA)."""

    name: Annotated[str, Field(min_length=1, max_length=60)]
    npi: Annotated[str, Field(pattern=r"^[0-9]{10}$")]
    tax_id: Annotated[str, Field(pattern=r"^[0-9]{9}$")]
    address: Annotated[str, Field(min_length=1, max_length=55)]
    city: Annotated[str, Field(min_length=1, max_length=30)]
    state: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    postal_code: Annotated[str, Field(pattern=r"^[0-9]{5}([0-9]{4})?$")]
    taxonomy: Annotated[str, Field(pattern=r"^[0-9A-Z]{9}X$")] | None = None


_ID = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{2,15}$")]
_HD = Annotated[str, Field(pattern=r"^[^|^~\\&\r\n]{0,20}$")]


class TargetSettings(_Model):
    """One ``[[targets]]`` entry: where the same decisions go, in one format.

    kind ``fhir``: today's write-back (``base_url``: a separate billing FHIR server, default
    the write target); ``hl7v2-mllp``: DFT^P03 to ``host``:``port`` (``tls``), with the site
    profile's options; ``x12-837p``: 837P files in ``folder`` with the envelope's ids and the
    billing provider."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    kind: Literal["fhir", "hl7v2-mllp", "x12-837p"]
    base_url: str | None = None
    # hl7v2-mllp
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: bool = False
    #: MSH-3..6 (HD namespace ids: 20 characters at most, none of ER7's delimiters)
    sending_application: _HD = "CHARGE-ADAPTER"
    sending_facility: _HD = ""
    receiving_application: _HD = "BILLING"
    receiving_facility: _HD = ""
    transaction_code: Literal["cdm", "cpt"] = "cdm"
    diagnoses: Literal["both", "ft1"] = "both"
    processing_id: Literal["P", "T", "D"] = "P"
    # x12-837p
    folder: Path | None = None
    sender_id: _ID | None = None
    receiver_id: _ID | None = None
    submitter_name: str = ""
    receiver_name: str = ""
    contact_name: str = ""
    contact_phone: Annotated[str, Field(pattern=r"^[0-9]{10}$")] | None = None
    usage: Literal["T", "P"] = "T"
    billing_provider: BillingProviderSettings | None = None
    #: the payer id (2010BB NM109) by payer profile; default: the Organization's identifier
    payer_ids: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9]{2,80}$")]] = {}

    @model_validator(mode="after")
    def _complete(self) -> TargetSettings:
        """Each kind's own keys are there."""
        missing = {
            "hl7v2-mllp": [k for k in ("host", "port") if getattr(self, k) is None],
            "x12-837p": [k for k in ("folder", "sender_id", "receiver_id", "contact_phone",
                                     "billing_provider") if getattr(self, k) is None]
            + [k for k in ("submitter_name", "receiver_name", "contact_name")
               if not getattr(self, k)],
            "fhir": [],
        }[self.kind]  # fmt: skip
        if missing:
            raise ValueError(f"target {self.name} ({self.kind}) needs {', '.join(missing)}")
        return self


class CdsClientSettings(_Model):
    """A CDS client (an EHR) allowed to call the CDS Hooks services: its JWT issuer and its
    public key (a PEM file) or JWKS URL; ``sub`` its client id, when it must be checked."""

    iss: Annotated[str, Field(min_length=1)]
    public_key: Path | None = None
    jwks_url: Annotated[str, Field(pattern=r"^https://[!-~]+$")] | None = None
    sub: str | None = None

    @model_validator(mode="after")
    def _keyed(self) -> CdsClientSettings:
        if (self.public_key is None) == (self.jwks_url is None):
            raise ValueError(f"CDS client {self.iss}: give public_key or jwks_url (one)")
        return self


class CdsSettings(_Model):
    """``[cds]``: the CDS Hooks services on the webhook's server (README "CDS Hooks")."""

    base_url: Annotated[str, Field(pattern=r"^https?://[!-~]+[^/]$")]  # what the EHR calls
    clients: list[CdsClientSettings] = Field(min_length=1)
    #: FHIR servers the service may read with the request's fhirAuthorization when the EHR
    #: sent no prefetch (never with the adapter's own credentials)
    fhir_servers: list[Annotated[str, Field(pattern=r"^https?://[!-~]+$")]] = []
    budget_ms: Annotated[int, Field(ge=50, le=10_000)] = 400


class OidcSettings(_Model):
    """``[workbench.oidc]``: sign-in with the site's OpenID Connect provider."""

    issuer: Annotated[str, Field(pattern=r"^https://[!-~]+$")]
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    role_claim: str = "roles"
    #: the provider's role values -> workbench roles (viewer, biller, manager, admin)
    roles: dict[str, Literal["viewer", "biller", "manager", "admin"]] = Field(min_length=1)


class WorkbenchSettings(_Model):
    """``[workbench]``: the billing office's workbench at ``/review`` on the webhook's server
    (README "Workbench")."""

    #: signs the session cookies (32 characters or more; ``session_secret_file`` for a file)
    session_secret: SecretStr
    session_hours: Annotated[float, Field(gt=0, le=24)] = 8.0
    idle_minutes: Annotated[float, Field(gt=0, le=240)] = 30.0
    #: the cookie only over HTTPS (off only behind nothing, on loopback)
    secure_cookie: bool = True
    oidc: OidcSettings | None = None

    @model_validator(mode="after")
    def _long_secret(self) -> WorkbenchSettings:
        if len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("workbench.session_secret needs at least 32 characters")
        return self


_TOML: ContextVar[dict[str, Any] | None] = ContextVar("adapter_toml", default=None)
SECRET_KEYS = {("auth", "token"), ("auth", "password"), ("write_auth", "token"),
               ("write_auth", "password"), ("webhook", "secret"), ("store",),
               ("workbench", "session_secret"), ("workbench", "oidc", "client_secret")}  # fmt: skip


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file's values, weaker than the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_TOML.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TOML.get() or {})


class _WithoutFileKeys(PydanticBaseSettingsSource):
    """The environment, less the ``*_FILE`` variables (read by ``_env_secret_files``)."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return _drop_file_keys(self.inner())


def _drop_file_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _drop_file_keys(v) if isinstance(v, dict) else v
        for k, v in data.items()
        if not k.lower().endswith("_file")
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ADAPTER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _WithoutFileKeys(settings_cls, env_settings),
            _TomlSource(settings_cls),
        )

    default_payer: str = "medicare"
    billing_recipient: Reference | None = None
    #: the billing provider on every Claim (default: the encounter's serviceProvider)
    billing_provider: Reference | None = None
    #: CMS place of service for Claim items when the encounter does not say (11 office, 22
    #: on-campus outpatient hospital, 19 off-campus); default: not written
    place_of_service: Annotated[str, Field(pattern=r"^[0-9]{2}$")] | None = None
    #: the URL of the ChargeItem modifier extension (default: the adapter's own)
    modifier_extension: Annotated[str, Field(pattern=r"^https?://[!-~]+$")] | None = None
    #: the site's opening balances of the year's KX totals (CSV patient,year,pt_slp,ot)
    kx_opening: Path | None = None
    #: the site's file of payers' authorizations (README "Authorizations")
    authorizations: Path | None = None
    #: whether the EMR is searched for ClaimResponse preauthorizations
    emr_authorizations: bool = True
    #: whether polls search the patient's context for changes (which recompute their days)
    poll_context: bool = True
    #: the first date of service the adapter bills (earlier days: history only, never written)
    bill_from: date | None = None
    timezone: str | None = None  # IANA zone of the site; dates of service are dates there
    mappings: Path | None = None
    emr_base_url: str | None = None
    write_base_url: str | None = None
    state_dir: Path = Path("state")
    store: SecretStr | None = None
    ca_bundle: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_attempts: Annotated[int, Field(ge=1)] = 6
    lease_seconds: Annotated[float, Field(gt=0)] = 120.0
    workers: Annotated[int, Field(ge=1, le=32)] = 4  # worker threads in serve
    poll_interval: Annotated[float, Field(gt=0)] = 60.0
    #: one budget for all requests to each FHIR server, shared by every worker
    emr_requests_per_second: Annotated[float, Field(gt=0)] = 50.0
    emr_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    #: a notification naming more resources is split into inbox items of this many
    max_events_per_item: Annotated[int, Field(ge=1)] = 500
    #: done inbox rows and the runs log are kept this long (dead letters and the ledger always)
    retention_days: Annotated[float, Field(gt=0)] = 30.0
    auth: AuthSettings = AuthSettings()
    write_auth: AuthSettings | None = None
    webhook: WebhookSettings = WebhookSettings()
    subscription: SubscriptionSettings = SubscriptionSettings()
    #: where the decisions go (README "Targets"); none: the FHIR write-back alone
    targets: list[TargetSettings] = []
    #: the CDS Hooks services (README "CDS Hooks"); none: not served
    cds: CdsSettings | None = None
    #: the billing office's workbench (README "Workbench"); none: not served
    workbench: WorkbenchSettings | None = None

    def target_of(self, kind: str) -> TargetSettings | None:
        """The first target of a kind."""
        return next((t for t in self.targets if t.kind == kind), None)

    def _verify(self) -> bool | str:
        return str(self.ca_bundle) if self.ca_bundle else True

    def zone(self) -> tzinfo | None:
        """The ``timezone`` setting as a zone (None when unset)."""
        return zone_of(self.timezone, "timezone")

    def emr(self) -> FhirClient:
        if not self.emr_base_url:
            raise ConfigError(
                "emr_base_url is not set (config file, ADAPTER_EMR_BASE_URL or --emr)"
            )
        return FhirClient(
            self.emr_base_url,
            self.auth.build(self.emr_base_url),
            verify=self._verify(),
            budget=self._budget(),
        )

    def _budget(self) -> RequestBudget:
        return RequestBudget(self.emr_requests_per_second, concurrency=self.emr_concurrency)

    def store_url(self) -> str:
        if self.store is not None:
            return self.store.get_secret_value()
        return f"sqlite:///{self.state_dir / 'adapter.db'}"

    def target(self, emr: FhirClient) -> FhirClient:
        if not self.write_base_url or self.write_base_url == self.emr_base_url:
            return emr
        auth = (self.write_auth or self.auth).build(self.write_base_url)
        return FhirClient(self.write_base_url, auth, verify=self._verify(), budget=self._budget())


def _read_secret(path: str, where: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{where}: secret file {path} cannot be read ({err.strerror})") from None


def _secret_files(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Replace ``<secret>_file`` keys of the TOML by the files' contents."""
    out = dict(data)
    for key in list(out):
        if key.endswith("_file") and isinstance(out[key], str):
            out[key[:-5]] = _read_secret(out.pop(key), f"{where}: {key}")
        elif isinstance(out[key], dict):
            out[key] = _secret_files(out[key], where)
    return out


def _env_secret_files() -> dict[str, Any]:
    """``ADAPTER_..._FILE`` environment variables of secret keys, read into nested values."""
    found: dict[str, Any] = {}
    for path in SECRET_KEYS:
        name = "ADAPTER_" + "__".join(p.upper() for p in path) + "_FILE"
        if name in os.environ:
            value = _read_secret(os.environ[name], name)
            node = found
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
    return found


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """The effective settings (see the module docstring for the order of sources)."""
    if path is None and os.environ.get("ADAPTER_CONFIG"):
        path = Path(os.environ["ADAPTER_CONFIG"])
    data = _read_toml(path) if path is not None else {}
    init: dict[str, Any] = _env_secret_files()
    for key, value in overrides.items():
        if value is not None:
            init[key] = value
    token = _TOML.set(data)
    try:
        settings = Settings(**init)
    except ValidationError as err:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path or 'settings'}: {reasons}") from None
    finally:
        _TOML.reset(token)
    settings.zone()  # an unknown time zone fails here, loudly, not at the first date
    return _relative_to(settings, path.parent, data) if path is not None else settings


def _read_toml(path: Path) -> dict[str, Any]:
    """The configuration file, with its ``*_file`` secrets read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    return _secret_files(data, str(path))


def _relative_to(settings: Settings, base: Path, data: dict[str, Any]) -> Settings:
    """Relative paths in the configuration file are relative to the file's folder."""
    updates: dict[str, object] = {}
    if settings.mappings is not None and not settings.mappings.is_absolute():
        updates["mappings"] = base / settings.mappings
    if not settings.state_dir.is_absolute() and "state_dir" in data:
        updates["state_dir"] = base / settings.state_dir
    for name in ("auth", "write_auth"):
        auth = getattr(settings, name)
        if auth is not None and auth.private_key and not auth.private_key.is_absolute():
            updates[name] = auth.model_copy(update={"private_key": base / auth.private_key})
    return settings.model_copy(update=updates) if updates else settings


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets shown as ``**********``."""
    return settings.model_dump(mode="json")

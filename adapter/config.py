"""Run configuration, built once in the CLI and passed down explicitly.

A TOML file (``--config FILE``) may set::

    default_payer = "medicare"                      # profile when a patient has no active Coverage
    billing_recipient = "Organization/billing"      # where billing-office findings are posted
    mappings = "/etc/charge-adapter/mappings"       # rules directory (default: the shipped one)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapter.errors import ConfigError


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_payer: str = "medicare"
    billing_recipient: (
        Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")] | None
    ) = None
    mappings: Path | None = None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: {reasons}") from None
    if settings.mappings is not None and not settings.mappings.is_absolute():
        settings = settings.model_copy(update={"mappings": (path.parent / settings.mappings)})
    return settings

"""The CDS Hooks 2.0 request, response, discovery and feedback documents as pydantic models
(https://cds-hooks.hl7.org/2.0/): what the service reads is validated, what it answers is built
from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FhirAuthorization(_Open):
    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Open):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1, max_length=100)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class Coding(_Closed):
    code: str
    system: str | None = None
    display: str | None = None


class Source(_Closed):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Link(_Closed):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class Action(_Closed):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: list[str] | None = None


class Suggestion(_Closed):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Card(_Closed):
    uuid: str | None = None
    summary: str = Field(max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class HookResponse(_Closed):
    cards: list[Card]


class Service(_Closed):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Closed):
    services: list[Service]


class OverrideReason(_Open):
    reason: Coding | None = None
    userComment: str | None = None


class FeedbackItem(_Open):
    card: str
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str


class Feedback(_Open):
    feedback: list[FeedbackItem] = Field(min_length=1)

"""Create, update and remove the adapter's Subscriptions on the EMR, idempotently.

The adapter's Subscriptions carry a ``meta.tag`` (``managed-by``) so it finds them again:
``ensure`` creates the missing ones, updates the ones whose channel or criteria changed and
leaves the rest alone; ``remove`` deletes only the adapter's own.

- R4 rest-hook: one Subscription per criteria (``Procedure?``, ``Encounter?``) with the full
  resource as payload (``application/fhir+json``) or none (a ping);
- R4 backport (topic-based): one Subscription on the topic canonical URL the EMR offers, with
  the backport profile, ``backport-payload-content`` (full-resource | id-only | empty) and one
  filter per criteria.
The shared secret travels in ``channel.header`` and the receiver checks it.
"""

from __future__ import annotations

from typing import Any, Literal

from adapter.emr.client import FhirClient
from adapter.fhir import codes

Resource = dict[str, Any]
MANAGED = {"system": f"{codes.BASE}/CodeSystem/managed-by", "code": "therapy-charge-adapter"}
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def desired(
    endpoint: str,
    *,
    kind: Literal["rest-hook", "backport"],
    criteria: list[str],
    content: str,
    topic: str | None,
    header: str | None,
) -> list[Resource]:
    headers = [header] if header else []
    base: Resource = {
        "resourceType": "Subscription",
        "meta": {"tag": [MANAGED]},
        "status": "requested",
    }
    if kind == "rest-hook":
        out = []
        for c in criteria:
            channel: Resource = {"type": "rest-hook", "endpoint": endpoint}
            if content != "empty":
                channel["payload"] = "application/fhir+json"
            if headers:
                channel["header"] = headers
            out.append({**base, "reason": f"therapy charge capture: {c}", "criteria": c,
                        "channel": channel})  # fmt: skip
        return out
    if not topic:
        raise ValueError("a backport subscription needs the topic canonical URL")
    channel = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {
            "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]
        },
        **({"header": headers} if headers else {}),
    }
    filters = [c for c in criteria if "?" in c and c.split("?", 1)[1]]
    sub: Resource = {
        **base,
        "meta": {"tag": [MANAGED], "profile": [f"{BACKPORT}/backport-subscription"]},
        "reason": "therapy charge capture",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        sub["_criteria"] = {
            "extension": [
                {"url": f"{BACKPORT}/backport-filter-criteria", "valueString": f} for f in filters
            ]
        }
    return [sub]


def _same(a: Resource, b: Resource) -> bool:
    keys = ("criteria", "channel", "_criteria")
    return all(a.get(k) == b.get(k) for k in keys)


def ours(client: FhirClient) -> list[Resource]:
    return [
        r
        for r in client.search("Subscription", {"_tag": f"{MANAGED['system']}|{MANAGED['code']}"})
        if r.get("resourceType") == "Subscription"
    ]


def ensure(client: FhirClient, wanted: list[Resource]) -> list[tuple[str, str]]:
    """Bring the server's adapter Subscriptions to ``wanted``: [(action, Subscription/id)]."""
    existing = ours(client)
    actions: list[tuple[str, str]] = []
    used: set[str] = set()
    for want in wanted:
        match = next(
            (
                e
                for e in existing
                if e.get("criteria") == want.get("criteria") and e["id"] not in used
            ),
            None,
        )
        if match is None:
            created = client.create(want)
            actions.append(("created", f"Subscription/{created['id']}"))
            continue
        used.add(match["id"])
        if _same(match, want) and match.get("status") in ("active", "requested"):
            actions.append(("unchanged", f"Subscription/{match['id']}"))
            continue
        client.update({**want, "id": match["id"]})
        actions.append(("updated", f"Subscription/{match['id']}"))
    for extra in existing:
        if extra["id"] not in used and not any(
            a[1] == f"Subscription/{extra['id']}" for a in actions
        ):
            client.delete("Subscription", extra["id"])
            actions.append(("deleted", f"Subscription/{extra['id']}"))
    return actions


def remove(client: FhirClient) -> list[str]:
    gone = []
    for sub in ours(client):
        client.delete("Subscription", sub["id"])
        gone.append(f"Subscription/{sub['id']}")
    return gone

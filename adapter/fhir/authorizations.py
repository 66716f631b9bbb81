"""Payers' authorizations from ``ClaimResponse`` (README "Input conventions"): an active
response with ``use = preauthorization``, outcome ``complete`` or ``partial`` and a ``preAuthRef``
(the number the claim must carry) authorises, within ``preAuthPeriod`` (or an item's own
Da Vinci PAS ``itemPreAuthPeriod``):

- each ``addItem`` (R4 core: ``productOrService`` and ``quantity``), and
- each ``item`` with the PAS ``itemAuthorizedDetail`` extension (its ``productOrServiceCode``
  and ``quantity``), unless its PAS ``reviewAction`` says not certified (A3) or pended (A4).

A CPT/HCPCS ``productOrService`` authorises that code's units; one ``clocks.toml
[authorization.discipline]`` names, the discipline's services; a quantity whose code or unit
``visit_units`` lists counts visits, any other units. A response with none of these authorises
without a limit that can be counted (its number still reaches the claim).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from adapter.domain import Authorization, Discipline, Rulebook
from adapter.fhir import codes
from adapter.fhir.coding import codings
from adapter.fhir.dates import bound_date
from adapter.fhir.refs import Resource, as_dict, as_list

PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
EXT_ITEM_PERIOD = f"{PAS}/extension-itemPreAuthPeriod"
EXT_AUTHORIZED_DETAIL = f"{PAS}/extension-itemAuthorizedDetail"
EXT_REVIEW_ACTION = f"{PAS}/extension-reviewAction"
NOT_AUTHORIZED = frozenset({"A3", "A4"})  # X12 306: not certified, pended


def authorizations_of(
    responses: Iterable[Resource], rulebook: Rulebook, zone: tzinfo | None
) -> tuple[Authorization, ...]:
    """The grants of the patient's preauthorization responses, by number and reference."""
    out: list[Authorization] = []
    for cr in responses:
        number = cr.get("preAuthRef")
        if (
            cr.get("status") != "active"
            or cr.get("use") != "preauthorization"
            or cr.get("outcome") not in ("complete", "partial")
            or not isinstance(number, str)
            or not number.strip()
        ):
            continue
        try:
            out += _grants(cr, number.strip(), rulebook, zone)
        except _BadPeriod:
            continue  # a period that cannot be read authorises nothing
    return tuple(sorted(out, key=lambda g: (g.ref, g.number, g.code or "", str(g.discipline))))


def _grants(
    cr: Resource, number: str, rulebook: Rulebook, zone: tzinfo | None
) -> list[Authorization]:
    """The grants of one preauthorization response: its authorized items, or (none listed)
    one for everything, without a count."""
    ref = f"ClaimResponse/{cr.get('id')}"
    period = _period(cr.get("preAuthPeriod"), zone)
    listed = False
    grants: list[Authorization] = []
    for n, item in enumerate(as_list(cr.get("addItem")), start=1):
        if isinstance(item, dict):
            listed = True
            grants += _grant(item, item.get("productOrService"), item.get("quantity"),
                             number=number, ref=f"{ref} addItem {n}", period=period,
                             rulebook=rulebook, zone=zone)  # fmt: skip
    for item in as_list(cr.get("item")):
        detail = _extension(item, EXT_AUTHORIZED_DETAIL)
        if detail is None:
            continue
        listed = True
        if _not_authorized(item):
            continue
        service = as_dict(_extension(detail, "productOrServiceCode")).get("valueCodeableConcept")
        quantity = as_dict(_extension(detail, "quantity")).get("valueQuantity")
        seq = as_dict(item).get("itemSequence")
        grants += _grant(item, service, quantity, number=number, ref=f"{ref} item {seq}",
                         period=period, rulebook=rulebook, zone=zone)  # fmt: skip
    if not listed:
        grants = [Authorization(number=number, ref=ref, start=period[0], end=period[1])]
    return grants


def _grant(
    item: Any,
    service: Any,
    quantity: Any,
    *,
    number: str,
    ref: str,
    period: tuple[date | None, date | None],
    rulebook: Rulebook,
    zone: tzinfo | None,
) -> list[Authorization]:
    """The grant of one authorized item; none when its service is not one the adapter bills
    under (its count could not be told apart from other services')."""
    rules = rulebook.clocks.authorization
    canonical = rulebook.intake.canonical
    code: str | None = None
    discipline: Discipline | None = None
    for c in codings(service):
        system, value = canonical(c.get("system")), c.get("code")
        if not isinstance(value, str):
            continue
        if system in (codes.CPT, codes.HCPCS):
            code = value.strip().upper()
            break
        discipline = discipline or rules.disciplines.get(f"{system}|{value}")
    if code is None and discipline is None:
        return []
    count, visits = _quantity(quantity, rules.visit_units)
    own = _extension(item, EXT_ITEM_PERIOD)
    start, end = _period(own.get("valuePeriod"), zone) if own else period
    return [Authorization(
        number=number, ref=ref, discipline=discipline, code=code, start=start, end=end,
        visits=count if visits else None, units=None if visits else count,
    )]  # fmt: skip


def _quantity(quantity: Any, visit_units: frozenset[str]) -> tuple[int | None, bool]:
    """A whole positive quantity (None: none) and whether it counts visits."""
    q = as_dict(quantity)
    value = q.get("value")
    kind = {str(q.get(k)).strip().lower() for k in ("code", "unit") if q.get(k)}
    visits = bool(kind & visit_units)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, visits
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None, visits
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        return None, visits
    return int(amount), visits


class _BadPeriod(ValueError):
    """A period bound that is not a full date: the grant is not read (an open end would
    authorise forever)."""


def _period(value: Any, zone: tzinfo | None) -> tuple[date | None, date | None]:
    period = as_dict(value)
    return _day(period.get("start"), zone), _day(period.get("end"), zone)


def _day(value: Any, zone: tzinfo | None) -> date | None:
    """The local date of a FHIR date or dateTime bound (None: no bound)."""
    if value is None:
        return None
    on = bound_date(value, zone)
    try:
        return date.fromisoformat(on) if on and len(on) == 10 else _bad(value)
    except ValueError:
        return _bad(value)


def _bad(value: Any) -> date:
    raise _BadPeriod(f"{value!r} is not a date")


def _extension(element: Any, url: str) -> dict[str, Any] | None:
    return next(
        (e for e in as_list(as_dict(element).get("extension"))
         if isinstance(e, dict) and e.get("url") == url),
        None,
    )  # fmt: skip


def _not_authorized(item: Any) -> bool:
    action = _extension(item, EXT_REVIEW_ACTION)
    code = _extension(action, "reviewActionCode") if action else None
    concept = as_dict(code).get("valueCodeableConcept") if code else None
    return any(c.get("code") in NOT_AUTHORIZED for c in codings(concept))

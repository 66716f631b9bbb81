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

from collections.abc import Callable, Iterable
from datetime import date, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from adapter.domain import Authorization, Discipline, Rulebook
from adapter.fhir import codes
from adapter.fhir.coding import codings
from adapter.fhir.dates import bound_date
from adapter.fhir.refs import Resource, as_dict, as_list, ref_key, reference_of

PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
EXT_ITEM_PERIOD = f"{PAS}/extension-itemPreAuthPeriod"
EXT_AUTHORIZED_DETAIL = f"{PAS}/extension-itemAuthorizedDetail"
EXT_REVIEW_ACTION = f"{PAS}/extension-reviewAction"
NOT_AUTHORIZED = frozenset({"A3", "A4"})  # X12 306: not certified, pended


def authorizations_of(
    responses: Iterable[Resource],
    rulebook: Rulebook,
    zone: tzinfo | None,
    *,
    coverage: Resource | None = None,
    lookup: Callable[[str], Resource | None] = lambda ref: None,
) -> tuple[Authorization, ...]:
    """The grants of the patient's preauthorization responses, by number and reference: those
    for the day's ``coverage`` (a response naming another coverage, or another insurer than
    the coverage's payor, is another payer's). ``lookup`` finds the request Claim, whose items
    say what an item without the PAS detail authorizes."""
    out: list[Authorization] = []
    for cr in responses:
        number = cr.get("preAuthRef")
        if (
            cr.get("status") != "active"
            or cr.get("use") != "preauthorization"
            or cr.get("outcome") not in ("complete", "partial")
            or not isinstance(number, str)
            or not number.strip()
            or not _for_coverage(cr, coverage)
        ):
            continue
        try:
            out += _grants(cr, number.strip(), rulebook, zone, lookup)
        except _BadPeriod:
            continue  # a period that cannot be read authorises nothing
    return tuple(sorted(out, key=lambda g: (g.ref, g.number, g.code or "", str(g.discipline))))


def _for_coverage(cr: Resource, coverage: Resource | None) -> bool:
    """Whether the response is the coverage's payer's (what it names must match)."""
    if coverage is None:
        return True
    mine = f"Coverage/{coverage.get('id')}"
    named = [ref_key(r) for i in as_list(cr.get("insurance"))
             if (r := reference_of(as_dict(i).get("coverage")))]  # fmt: skip
    if named and mine not in named:
        return False
    insurer = reference_of(cr.get("insurer"))
    payors = [ref_key(r) for p in as_list(coverage.get("payor")) if (r := reference_of(p))]
    return not (insurer and payors and ref_key(insurer) not in payors)


def _grants(
    cr: Resource,
    number: str,
    rulebook: Rulebook,
    zone: tzinfo | None,
    lookup: Callable[[str], Resource | None],
) -> list[Authorization]:
    """The grants of one preauthorization response: its authorized items (an item with the
    PAS detail by the detail, one without by its request Claim's item; one the payer did not
    certify, none), or (no items at all) one for everything, without a count."""
    ref = f"ClaimResponse/{cr.get('id')}"
    period = _period(cr.get("preAuthPeriod"), zone)
    items = [i for i in as_list(cr.get("item")) if isinstance(i, dict)]
    added = [i for i in as_list(cr.get("addItem")) if isinstance(i, dict)]
    if not items and not added:
        return [Authorization(number=number, ref=ref, start=period[0], end=period[1])]
    grants: list[Authorization] = []
    for n, item in enumerate(added, start=1):
        grants += _grant(item, item.get("productOrService"), item.get("quantity"),
                         number=number, ref=f"{ref} addItem {n}", period=period,
                         rulebook=rulebook, zone=zone)  # fmt: skip
    request = reference_of(cr.get("request"))
    asked = {
        i.get("sequence"): i
        for i in as_list(as_dict(lookup(request) if request else None).get("item"))
        if isinstance(i, dict)
    }
    for item in items:
        if _not_authorized(item):
            continue
        seq = item.get("itemSequence")
        detail = _extension(item, EXT_AUTHORIZED_DETAIL)
        if detail is not None:
            service = as_dict(_extension(detail, "productOrServiceCode")).get(
                "valueCodeableConcept"
            )
            quantity = as_dict(_extension(detail, "quantity")).get("valueQuantity")
        elif seq in asked:  # as requested: the request Claim's item
            service, quantity = asked[seq].get("productOrService"), asked[seq].get("quantity")
        else:
            continue  # what it authorizes is not known here
        grants += _grant(item, service, quantity, number=number, ref=f"{ref} item {seq}",
                         period=period, rulebook=rulebook, zone=zone)  # fmt: skip
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
    under (its count could not be told apart from other services'), or its quantity cannot be
    read (a count of minutes or days, a fraction: never taken for no limit)."""
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
    read = _quantity(quantity, rules.visit_units)
    if (code is None and discipline is None) or read is None:
        return []
    count, visits = read
    own = _extension(item, EXT_ITEM_PERIOD)
    start, end = _period(own.get("valuePeriod"), zone) if own else period
    return [Authorization(
        number=number, ref=ref, discipline=discipline, code=code, start=start, end=end,
        visits=count if visits else None, units=None if visits else count,
    )]  # fmt: skip


#: Quantity codes/units that count units of service (none at all counts units too)
UNIT_UNITS = frozenset({"un", "unit", "units", "{unit}", "{units}", "1", "ea", "{each}"})


def _quantity(quantity: Any, visit_units: frozenset[str]) -> tuple[int | None, bool] | None:
    """(the count, whether it counts visits): no quantity or no value is no count (the payer
    set no limit); a whole number of visits or units is one (0 included); anything else (a
    fraction, minutes, days) cannot be read: None."""
    if quantity is None:
        return None, False
    q = as_dict(quantity)
    kind = {str(q.get(k)).strip().lower() for k in ("code", "unit") if q.get(k)}
    visits = bool(kind & visit_units)
    if kind and not visits and not kind & UNIT_UNITS:
        return None
    value = q.get("value")
    if value is None:
        return None, visits
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount != amount.to_integral_value():
        return None
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

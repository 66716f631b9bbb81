"""Prices and expected allowed amounts of a day's lines (``domain.md`` §6).

* **Billed charge**: the chargemaster row of the line's code (one for one of its modifiers
  first), in effect on the date of service: ``net = unit price * units``. No row: an error
  finding for the billing office, and no price — never a guessed one.
* **Expected allowed amount**, Medicare Physician Fee Schedule (payer profiles listed in
  ``money.toml`` ``pfs_payers``): per unit ``(work RVU * work GPCI + PE RVU * PE GPCI + MP RVU *
  MP GPCI) * conversion factor``, the PE RVU of the site's setting. The therapy multiple
  procedure payment reduction: of the day's units of "always therapy" services (multiple
  procedure indicator 5), the one unit with the highest PE RVU keeps its full PE; every other
  unit's PE part is reduced by the MPPR rate (50 %). A CQ/CO line is paid at the assistant rate
  (85 %). The line's amount is rounded to cents once, half up, after all of that.
* **Contract rates** for the other payers: rate per unit * units, rounded to cents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from adapter.domain import (
    ChargeLine,
    FeeScheduleYear,
    Finding,
    FindingCode,
    LinePrice,
    MoneyRules,
    Rvu,
)
from adapter.rules.findings import ERR, finding

CENT = Decimal("0.01")
ASSISTANT = frozenset({"CQ", "CO"})
PAYABLE = frozenset({"A", "R", "T"})  # PFS status codes paid under the fee schedule


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def price_lines(
    lines: Sequence[ChargeLine],
    on: date,
    payer: str,
    money: MoneyRules,
    explanation: list[str],
) -> tuple[list[ChargeLine], list[Finding]]:
    """The lines with their price and expected allowed amount, and a finding per unpriced
    line."""
    findings: list[Finding] = []
    allowed = _allowed_amounts(lines, on, payer, money)
    out: list[ChargeLine] = []
    for n, line in enumerate(lines):
        row = money.price(line.code, line.modifiers, on)
        amount, steps, refs = allowed[n]
        if row is None:
            findings.append(
                finding(
                    FindingCode.NO_PRICE,
                    ERR,
                    f"no chargemaster price for {line.code} on {on}: the line cannot be priced "
                    "(add the code to the site's chargemaster)",
                    line.intervention_ids,
                    line_code=line.code,
                )
            )
            price = LinePrice(allowed=amount, steps=("no chargemaster price", *steps))
        else:
            net = cents(row.unit_price * line.units)
            charge = (
                f"charge: CDM {row.cdm_code} ${row.unit_price} x {line.units} = ${net} "
                f"[{row.source.ref}]"
            )
            price = LinePrice(
                unit_price=row.unit_price,
                net=net,
                cdm_code=row.cdm_code,
                allowed=amount,
                steps=(charge, *steps),
            )
            refs = (row.source.ref, *refs)
        new_refs = tuple(dict.fromkeys((*line.rule_refs, *refs)))
        out.append(replace(line, price=price, rule_refs=new_refs))
        text = "; ".join(price.steps)
        explanation.append(f"Money: {' '.join([line.code, *line.modifiers])} x{line.units}: {text}")
    return out, findings


Allowed = tuple[Decimal | None, tuple[str, ...], tuple[str, ...]]


def _allowed_amounts(
    lines: Sequence[ChargeLine], on: date, payer: str, money: MoneyRules
) -> list[Allowed]:
    """Each line's expected allowed amount, its steps and the rule refs it rests on."""
    if payer not in money.pfs_payers:
        return [_contract(line, on, payer, money) for line in lines]
    year = money.fee_schedule.get(on.year)
    if year is None or not year.source.in_effect(on):
        return [(None, (f"allowed: no fee schedule for {on.year}",), ()) for _ in lines]
    full_pe = _full_pe_line(lines, year, money)
    return [_pfs(n, line, year, money, full_pe) for n, line in enumerate(lines)]


def _contract(line: ChargeLine, on: date, payer: str, money: MoneyRules) -> Allowed:
    rate = money.contract(payer, line.code, line.modifiers, on)
    if rate is None:
        return None, (f"allowed: no {payer} contract rate for {line.code}",), ()
    amount = cents(rate.rate * line.units)
    step = f"allowed: {payer} contract ${rate.rate} x {line.units} = ${amount} [{rate.source.ref}]"
    return amount, (step,), (rate.source.ref,)


def _rvu(line: ChargeLine, year: FeeScheduleYear) -> Rvu | None:
    rvu = year.rvus.get(line.code)
    return rvu if rvu is not None and rvu.status in PAYABLE else None


def _full_pe_line(
    lines: Sequence[ChargeLine], year: FeeScheduleYear, money: MoneyRules
) -> int | None:
    """The line whose first unit keeps its full PE under the MPPR: the highest PE *payment*
    among the day's always-therapy lines (a CQ/CO line's PE is paid at the assistant rate, so
    a therapist's unit of the same PE RVU ranks first; then the first line); None without an
    MPPR."""
    if money.mppr is None:
        return None
    best: tuple[Decimal, int, int] | None = None
    for n, line in enumerate(lines):
        rvu = _rvu(line, year)
        if rvu is None or rvu.mult_proc not in money.mppr_indicators or line.units < 1:
            continue
        rate = money.assistant_rate.rate if money.assistant_rate is not None else Decimal(1)
        assistant = bool(ASSISTANT & set(line.modifiers))
        pe = rvu.pe(year.setting) * (rate if assistant else Decimal(1))
        key = (pe, 0 if assistant else 1, -n)
        if best is None or key > best:
            best = key
    return -best[2] if best else None


def _pfs(
    n: int, line: ChargeLine, year: FeeScheduleYear, money: MoneyRules, full_pe: int | None
) -> Allowed:
    rvu = year.rvus.get(line.code)
    ref = year.source.ref
    if rvu is None:
        return None, (f"allowed: {line.code} is not in the {year.year} fee schedule",), ()
    if rvu.status == "B":
        return Decimal("0.00"), (f"allowed: $0.00, {line.code} is bundled (PFS status B)",), (ref,)
    if rvu.status not in PAYABLE:
        return (
            Decimal("0.00"),
            (
                f"allowed: $0.00, {line.code} has PFS status {rvu.status}: not paid under the fee "
                "schedule",
            ),
            (ref,),
        )
    g = year.gpci
    pe_rvu = rvu.pe(year.setting)
    work, pe, mp = rvu.work * g.work, pe_rvu * g.pe, rvu.mp * g.mp
    cf = year.conversion_factor
    unit = (work + pe + mp) * cf
    units = Decimal(line.units)
    amount = unit * units
    steps = [
        f"allowed: ({rvu.work} x {g.work} + {pe_rvu} x {g.pe} + {rvu.mp} x {g.mp}) x ${cf} "
        f"= ${unit:.4f} per unit x {line.units} = ${amount:.4f} [{ref}]"
    ]
    refs = [ref]
    if money.mppr is not None and rvu.mult_proc in money.mppr_indicators:
        reduced = units - 1 if n == full_pe else units
        if reduced > 0:
            cut = pe * money.mppr.rate * cf * reduced
            amount -= cut
            steps.append(
                f"MPPR: PE of {reduced} unit(s) less {money.mppr.rate * 100:.0f}% "
                f"({pe:.4f} x {money.mppr.rate} x ${cf} x {reduced} = -${cut:.4f}) "
                f"[{money.mppr.source.ref}]"
            )
            refs.append(money.mppr.source.ref)
        else:
            steps.append("MPPR: the day's highest-PE unit, full PE")
    if money.assistant_rate is not None and ASSISTANT & set(line.modifiers):
        rate = money.assistant_rate.rate
        steps.append(
            f"CQ/CO: ${amount:.4f} paid at {rate * 100:.0f}% = ${amount * rate:.4f} "
            f"[{money.assistant_rate.source.ref}]"
        )
        amount *= rate
        refs.append(money.assistant_rate.source.ref)
    total = cents(amount)
    steps.append(f"= ${total} (rounded once, half up)")
    return total, tuple(steps), tuple(refs)

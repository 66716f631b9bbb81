"""Writes the FHIR package in this folder (run: python mappings/fhir-package/make_package.py).

The package is data; this script is how it is kept consistent. Edit here, run, commit both.
"""

import json
import pathlib

BASE = "https://therapy-charge-adapter.org/fhir"
OUT = pathlib.Path(__file__).resolve().parent
VERSION = "0.1.0"
DATE = "2026-12-01"
COMMON = {
    "version": VERSION,
    "status": "active",
    "date": DATE,
    "publisher": "therapy-charge-adapter",
    "fhirVersion": "4.0.1",
    "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "US"}]}],
}


def narrative(text):
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>',
    }


def ext(id_, title, desc, contexts, vtype, extra=None):
    url = f"{BASE}/StructureDefinition/{id_}"
    vel = {
        "id": "Extension.value[x]",
        "path": "Extension.value[x]",
        "min": 1,
        "type": [{"code": vtype}],
    }
    if extra:
        vel.update(extra)
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "text": narrative(desc),
        "url": url,
        "name": "".join(w.capitalize() for w in id_.split("-")),
        "title": title,
        **COMMON,
        "description": desc,
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": c} for c in contexts],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Extension", "path": "Extension", "short": title, "definition": desc},
                {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                vel,
            ]
        },
    }


EXTS = [
    ext(
        "charge-modifier",
        "Charge modifier",
        "A CPT/HCPCS modifier on the charge (GP/GO/GN, CQ/CO, 59/XU/XS, KX), one extension per modifier, in billing order.",
        ["ChargeItem"],
        "Coding",
    ),
    ext(
        "rulebook-version",
        "Rulebook version",
        "The version of the adapter's rulebook (mappings) the numbers were computed by.",
        ["ChargeItem", "Claim"],
        "string",
    ),
    ext(
        "unit-method",
        "Unit method",
        "The payer profile's unit method: cms (CMS total-time, the 8-minute rule) or ama (CPT/AMA per code).",
        ["ChargeItem"],
        "code",
    ),
    ext(
        "timed-minutes",
        "Timed minutes",
        "The documented minutes the line's units were computed from (0 for an untimed code).",
        ["ChargeItem"],
        "integer",
        {"minValueInteger": 0},
    ),
    ext(
        "rule-ref",
        "Rule reference",
        "A rule entry (mappings file and entry) that produced or changed the line.",
        ["ChargeItem"],
        "string",
    ),
    ext(
        "charge-item",
        "Charge item",
        "The ChargeItem a Claim item bills.",
        ["Claim.item"],
        "Reference",
    ),
    ext(
        "expected-allowed",
        "Expected allowed amount",
        "What the payer is expected to allow for the line: the Medicare Physician Fee Schedule amount for the site's locality (with the MPPR and CQ/CO adjustments) or the payer's contract rate; the arithmetic is in the Provenance narrative.",
        ["ChargeItem", "Claim.item"],
        "Money",
    ),
    ext(
        "voided-draft",
        "Voided draft",
        "Set on a draft Claim the adapter itself voided (entered-in-error) because the day no longer bills anything; a Claim without it was never the adapter's to void.",
        ["Claim"],
        "boolean",
    ),
    ext(
        "documented-minutes",
        "Documented minutes",
        "Input: minutes documented for a procedure without start and end times, in UCUM minutes.",
        ["Procedure"],
        "Duration",
    ),
    ext(
        "delayed-certification-reason",
        "Delayed certification reason",
        "Input: on a CarePlan, the documented reason its certification by the physician/NPP came later than 30 days after the first treatment.",
        ["CarePlan"],
        "string",
    ),
    ext(
        "significant-change",
        "Significant change of the plan of care",
        "Input: on a CarePlan, the date the plan was changed significantly: the physician/NPP must certify it again (a warning for 30 days after the change, an error after).",
        ["CarePlan"],
        "date",
    ),
    ext(
        "therapy-ytd-allowed-pt-slp",
        "Year-to-date allowed amount, PT and SLP",
        "Input: the Medicare allowed amount of PT and SLP services so far in the calendar year, for the KX threshold.",
        ["Coverage"],
        "Money",
    ),
    ext(
        "therapy-ytd-allowed-ot",
        "Year-to-date allowed amount, OT",
        "Input: the Medicare allowed amount of OT services so far in the calendar year, for the KX threshold.",
        ["Coverage"],
        "Money",
    ),
]
# the method codes
for e in EXTS:
    if e["id"] == "unit-method":
        e["differential"]["element"][-1]["binding"] = {
            "strength": "required",
            "valueSet": f"{BASE}/ValueSet/unit-method",
        }


def profile(id_, kind, title, desc, elements):
    url = f"{BASE}/StructureDefinition/{id_}"
    els = [{"id": kind, "path": kind, "short": title, "definition": desc}]
    for given in elements:
        e = dict(given)
        e.setdefault("id", e["path"])
        els.append(e)
    return {
        "resourceType": "StructureDefinition",
        "id": id_,
        "text": narrative(desc),
        "url": url,
        "name": "".join(w.capitalize() for w in id_.split("-")),
        "title": title,
        **COMMON,
        "description": desc,
        "kind": "resource",
        "abstract": False,
        "type": kind,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{kind}",
        "derivation": "constraint",
        "differential": {"element": els},
    }


def slice_(kind, path, name, ext_id, mn, mx):
    return {
        "id": f"{path}:{name}",
        "path": path,
        "sliceName": name,
        "min": mn,
        "max": mx,
        "type": [{"code": "Extension", "profile": [f"{BASE}/StructureDefinition/{ext_id}"]}],
    }


def slicing(path):
    return {
        "path": path,
        "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"},
    }


TAG = {"path": "{k}.meta.tag", "min": 1}


def tagged(k):
    return [{"path": f"{k}.meta", "min": 1}, {"path": f"{k}.meta.tag", "min": 1}]


CI = "ChargeItem"
PROFILES = [
    profile(
        "therapy-charge-item",
        CI,
        "Therapy ChargeItem",
        "A billable therapy line the adapter wrote: code, units, modifiers and how they were reached.",
        [
            *tagged(CI),
            slicing(f"{CI}.extension"),
            slice_(CI, f"{CI}.extension", "modifier", "charge-modifier", 0, "*"),
            slice_(CI, f"{CI}.extension", "rulebookVersion", "rulebook-version", 1, "1"),
            slice_(CI, f"{CI}.extension", "unitMethod", "unit-method", 1, "1"),
            slice_(CI, f"{CI}.extension", "timedMinutes", "timed-minutes", 1, "1"),
            slice_(CI, f"{CI}.extension", "ruleRef", "rule-ref", 0, "*"),
            slice_(CI, f"{CI}.extension", "expectedAllowed", "expected-allowed", 0, "1"),
            {"path": f"{CI}.identifier", "min": 1, "max": "1"},
            {
                "path": f"{CI}.identifier.system",
                "min": 1,
                "fixedUri": f"{BASE}/identifier/charge-item",
            },
            {"path": f"{CI}.identifier.value", "min": 1},
            {"path": f"{CI}.code.coding", "min": 1, "max": "1"},
            {"path": f"{CI}.code.coding.system", "min": 1},
            {"path": f"{CI}.code.coding.code", "min": 1},
            {"path": f"{CI}.occurrence[x]", "min": 1},
            {"path": f"{CI}.performer", "min": 1},
            {"path": f"{CI}.quantity", "min": 1},
            {"path": f"{CI}.quantity.value", "min": 1, "minValueDecimal": 1},
            {"path": f"{CI}.service", "min": 1},
            {"path": f"{CI}.note", "min": 1},
        ],
    ),
    profile(
        "therapy-claim",
        "Claim",
        "Therapy professional Claim",
        "The draft professional claim for one patient's date of service.",
        [
            *tagged("Claim"),
            slicing("Claim.extension"),
            slice_("Claim", "Claim.extension", "rulebookVersion", "rulebook-version", 1, "1"),
            slice_("Claim", "Claim.extension", "voidedDraft", "voided-draft", 0, "1"),
            {"path": "Claim.identifier", "min": 1, "max": "1"},
            {"path": "Claim.identifier.system", "min": 1, "fixedUri": f"{BASE}/identifier/claim"},
            {"path": "Claim.identifier.value", "min": 1},
            {
                "path": "Claim.type",
                "patternCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                            "code": "professional",
                        }
                    ]
                },
            },
            {"path": "Claim.use", "fixedCode": "claim"},
            {"path": "Claim.careTeam.role", "min": 1},
            {"path": "Claim.diagnosis.type", "min": 1, "max": "1"},
            {"path": "Claim.item", "min": 1},
            slicing("Claim.item.extension"),
            slice_("Claim", "Claim.item.extension", "chargeItem", "charge-item", 1, "1"),
            slice_("Claim", "Claim.item.extension", "expectedAllowed", "expected-allowed", 0, "1"),
            {"path": "Claim.item.quantity", "min": 1},
            {"path": "Claim.item.serviced[x]", "min": 1},
        ],
    ),
    profile(
        "therapy-finding-communication",
        "Communication",
        "Therapy finding Communication",
        "Findings on one patient-day that need a person, for one recipient (or the billing work queue).",
        [
            *tagged("Communication"),
            {"path": "Communication.identifier", "min": 1, "max": "1"},
            {
                "path": "Communication.identifier.system",
                "min": 1,
                "fixedUri": f"{BASE}/identifier/communication",
            },
            {"path": "Communication.identifier.value", "min": 1},
            {"path": "Communication.category", "min": 1, "max": "1"},
            {"path": "Communication.subject", "min": 1},
            {
                "path": "Communication.reasonCode",
                "binding": {"strength": "required", "valueSet": f"{BASE}/ValueSet/finding"},
            },
            {"path": "Communication.payload", "min": 1},
            {"path": "Communication.payload.content[x]", "type": [{"code": "string"}]},
        ],
    ),
    profile(
        "therapy-decision-provenance",
        "Provenance",
        "Therapy decision Provenance",
        "Why every number of one patient-day is what it is: the sources, the rulebook, the explanation.",
        [
            *tagged("Provenance"),
            {"path": "Provenance.text", "min": 1},
            {"path": "Provenance.policy", "min": 1},
            {"path": "Provenance.agent", "min": 1, "max": "1"},
            {
                "path": "Provenance.agent.type",
                "min": 1,
                "patternCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
            },
            {"path": "Provenance.agent.who.identifier", "min": 1},
            {
                "path": "Provenance.agent.who.identifier.system",
                "min": 1,
                "fixedUri": f"{BASE}/identifier/device",
            },
            {"path": "Provenance.entity", "min": 1},
        ],
    ),
]

FINDINGS = {
    "unknown-code": "A procedure code the catalog does not know.",
    "code-unmapped": "A completed procedure in a therapy context whose code cannot be mapped to CPT/HCPCS.",
    "code-from-text": "A code taken from the procedure's text or a suggested map: a person must confirm it.",
    "code-substituted": "A code replaced for the payer (e.g. 97014 by G0283 for Medicare).",
    "code-bundled": "A code the payer does not pay separately (e.g. 97010).",
    "no-performer": "A procedure without a performer: not billed.",
    "no-discipline": "The performer's discipline (PT/OT/SLP) cannot be determined.",
    "mixed-disciplines": "A code documented by clinicians of different disciplines.",
    "discipline-mismatch": "The performer's discipline differs from the plan of care's.",
    "assistant-not-permitted": "An assistant documented a service the rules do not let an assistant bill.",
    "assistant-unsupervised": "An assistant's service with no supervising therapist documented.",
    "time-missing": "A timed code without start or end time.",
    "time-invalid": "A time that is not a valid date-time with offset.",
    "minutes-without-times": "A timed code billed on documented minutes without start and end times.",
    "time-inverted": "An end before its start.",
    "time-in-future": "A time after the moment of evaluation.",
    "time-outside-encounter": "A procedure's time outside its encounter's period.",
    "time-off-service-date": "A procedure's time on another date than its date of service.",
    "date-differs-from-encounter": "The procedure's date differs from its encounter's.",
    "modifier-limit": "More modifiers than a claim line holds.",
    "under-8-minutes": "A timed code with fewer than 8 minutes: no unit by itself.",
    "no-unit-left": "A timed code that got no unit under the CMS total-time method.",
    "nothing-billable": "Nothing on the day is billable.",
    "same-code-overlap": "One code documented twice over overlapping times: the minutes counted once.",
    "overlapping-services": "Different one-on-one codes overlapping in time: held.",
    "concurrent-patients": "One clinician with one-on-one time on two patients at once.",
    "group-billed-one-on-one": "A group session billed with one-on-one codes.",
    "no-diagnosis": "No diagnosis for the day's lines.",
    "note-missing": "A billed service without a note.",
    "note-vague": "A note too vague to support the service.",
    "no-plan-of-care": "No active plan of care covers the date of service.",
    "units-over-threshold": "Units over the payer's review threshold without justification.",
    "mue-exceeded": "Units over the Medically Unlikely Edit: cut to the limit.",
    "evaluation-limit": "More evaluations on one day than allowed.",
    "evaluation-exclusive": "An evaluation with a code that excludes it.",
    "ncci-not-allowed": "An NCCI pair that no modifier lets bill together.",
    "ncci-not-distinct": "An NCCI pair without separate documented time intervals: column 2 not billed.",
    "ncci-distinct": "An NCCI pair billed with a distinct-service modifier.",
    "kx-applied": "KX added: the year's therapy spend passed the threshold.",
    "kx-targeted-review": "The year's spend passed the targeted medical review amount.",
    "kx-spend-unknown": "The year-to-date allowed amount is not known: KX cannot be decided.",
    "kx-threshold-unknown": "The KX threshold for the year is not in the rulebook.",
    "kx-forecast": "The plan of care's visits take the year's total past the KX threshold within four weeks.",
    "coverage-missing": "No usable Coverage: the default payer profile was used.",
    "coverage-type-unknown": "A Coverage type the payer profiles do not map.",
    "no-price": "A billed code with no chargemaster price: the line cannot be priced.",
    "progress-report-due": "The 8th to 10th treatment day of a discipline since its last progress report (or evaluation).",
    "plan-uncertified": "The plan of care is not certified by the physician/NPP: a warning within 30 days of the first treatment, an error after.",
    "plan-certified-late": "The plan of care was certified more than 30 days after the first treatment with no documented reason.",
    "plan-recertification-due": "More than 90 days since the plan of care was certified: it must be recertified.",
    "progress-report-missing": "The 11th treatment day or later without a progress report: the day's services of the discipline are held.",
    "authorization-missing": "No payer authorization covers the line on the date (one ended or starts later, or the payer profile requires one).",
    "authorization-exceeded": "The visits or units used pass the payer's authorization: the payer profile allows, warns or holds the lines.",
    "authorization-running-out": "A payer authorization is running out: 2 visits or fewer left, under 10 units left, or 7 days or fewer to its end.",
    "claim-correction-needed": "A submitted or locked Claim no longer matches the documentation: correct it by hand.",
    "review-override": "A person in the billing office set the line's units (never above the rules') or modifiers, with a reason.",
    "review-released": "A person in the billing office released an administrative hold (a clock) for the day, with a reason.",
    "review-stale": "A billing-office override matches no line any more: the documentation changed since; review the day again.",
    "review-refused": "A billing-office override could not be applied (more units than the documentation supports, an unknown modifier).",
}
CS = {
    "resourceType": "CodeSystem",
    "id": "finding",
    "text": narrative(
        "The adapter's finding codes. Codes never change once released; new ones may be added."
    ),
    "url": f"{BASE}/CodeSystem/finding",
    "name": "TherapyFinding",
    "title": "Therapy charge-capture findings",
    **COMMON,
    "description": "Stable codes of the findings the adapter reports on a patient-day.",
    "caseSensitive": True,
    "content": "complete",
    "count": len(FINDINGS),
    "concept": [{"code": c, "display": d} for c, d in FINDINGS.items()],
}
CS.pop("fhirVersion")
PD = {
    "resourceType": "CodeSystem",
    "id": "patient-day",
    "text": narrative(
        "Patient-day keys: &lt;patient id&gt;:&lt;date of service&gt;, used as meta.tag on everything the adapter writes."
    ),
    "url": f"{BASE}/CodeSystem/patient-day",
    "name": "PatientDay",
    "title": "Patient-day keys",
    **COMMON,
    "description": "The key of one patient's date of service, '<patient id>:<YYYY-MM-DD>', tagging every resource written for it.",
    "caseSensitive": True,
    "content": "not-present",
}
PD.pop("fhirVersion")
UMCS = {
    "resourceType": "CodeSystem",
    "id": "unit-method",
    "text": narrative("How units were computed."),
    "url": f"{BASE}/CodeSystem/unit-method",
    "name": "UnitMethod",
    "title": "Unit methods",
    **COMMON,
    "description": "How timed minutes became units (the payer profile's method; an untimed code is one unit under either).",
    "caseSensitive": True,
    "content": "complete",
    "count": 2,
    "concept": [
        {"code": "cms", "display": "CMS total-time (8-minute rule)"},
        {"code": "ama", "display": "CPT/AMA per code"},
    ],
}
UMCS.pop("fhirVersion")
UMVS = {
    "resourceType": "ValueSet",
    "id": "unit-method",
    "text": narrative("All unit methods."),
    "url": f"{BASE}/ValueSet/unit-method",
    "name": "UnitMethod",
    "title": "Unit methods",
    **COMMON,
    "description": "All unit methods.",
    "compose": {"include": [{"system": f"{BASE}/CodeSystem/unit-method"}]},
}
UMVS.pop("fhirVersion")
FVS = {
    "resourceType": "ValueSet",
    "id": "finding",
    "text": narrative("All finding codes."),
    "url": f"{BASE}/ValueSet/finding",
    "name": "TherapyFinding",
    "title": "Therapy charge-capture findings",
    **COMMON,
    "description": "All finding codes.",
    "compose": {"include": [{"system": f"{BASE}/CodeSystem/finding"}]},
}
FVS.pop("fhirVersion")
resources = [*EXTS, *PROFILES, CS, PD, UMCS, UMVS, FVS]
IG = {
    "resourceType": "ImplementationGuide",
    "id": "therapy-charge-adapter",
    "text": narrative(
        "What the therapy charge-capture adapter writes and reads beyond FHIR R4 core: its extensions, profiles and code systems."
    ),
    "url": f"{BASE}/ImplementationGuide/therapy-charge-adapter",
    "name": "TherapyChargeAdapter",
    "title": "Therapy charge-capture adapter",
    **COMMON,
    "fhirVersion": ["4.0.1"],
    "packageId": "org.therapy-charge-adapter.fhir",
    "license": "CC0-1.0",
    "description": "The extensions, profiles and code systems of the resources the adapter emits (ChargeItem, Claim, Communication, Provenance) and the input extensions it reads.",
    "dependsOn": [
        {
            "id": "hl7_fhir_r4_core",
            "uri": "http://hl7.org/fhir/ImplementationGuide/hl7.fhir.r4.core",
            "packageId": "hl7.fhir.r4.core",
            "version": "4.0.1",
        }
    ],
    "definition": {
        "resource": [
            {
                "reference": {"reference": f"{r['resourceType']}/{r['id']}"},
                "name": r.get("title", r["id"]),
                "description": r.get("description", ""),
                "exampleBoolean": False,
            }
            for r in resources
        ]
    },
}
for old in OUT.glob("*-*.json"):
    old.unlink()
for r in [*resources, IG]:
    (OUT / f"{r['resourceType']}-{r['id']}.json").write_text(
        json.dumps(r, indent=2, ensure_ascii=False) + "\n"
    )
(OUT / "package.json").write_text(
    json.dumps(
        {
            "name": "org.therapy-charge-adapter.fhir",
            "version": VERSION,
            "title": "Therapy charge-capture adapter",
            "description": IG["description"],
            "canonical": BASE,
            "fhirVersions": ["4.0.1"],
            "type": "IG",
            "license": "CC0-1.0",
            "author": "therapy-charge-adapter",
            "date": DATE.replace("-", "") + "000000",
            "dependencies": {"hl7.fhir.r4.core": "4.0.1"},
            "jurisdiction": "urn:iso:std:iso:3166#US",
        },
        indent=2,
    )
    + "\n"
)
print(len(resources) + 2, "files")

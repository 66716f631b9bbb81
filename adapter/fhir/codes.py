"""Code systems, identifier systems and extension URLs the adapter reads and writes.

The ``BASE`` URLs are the adapter's own, documented in the README ("Output conventions").
"""

from __future__ import annotations

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NUCC = "http://nucc.org/provider-taxonomy"
SOPT = "https://nahdo.org/sopt"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
CARE_TEAM_ROLE = "http://terminology.hl7.org/CodeSystem/claimcareteamrole"
#: CARIN Blue Button's care team roles: the one that names a referring provider
CARE_TEAM_ROLE_C4BB = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBClaimCareTeamRole"
DIAGNOSIS_TYPE = "http://terminology.hl7.org/CodeSystem/ex-diagnosistype"
#: CMS place-of-service codes (the 837P's CLM05-1 / SV105)
PLACE_OF_SERVICE = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
)

BASE = "https://therapy-charge-adapter.org/fhir"
ID_CHARGE_ITEM = f"{BASE}/identifier/charge-item"
ID_CLAIM = f"{BASE}/identifier/claim"
ID_COMMUNICATION = f"{BASE}/identifier/communication"
CS_FINDING = f"{BASE}/CodeSystem/finding"
CS_PATIENT_DAY = f"{BASE}/CodeSystem/patient-day"
ID_DEVICE = f"{BASE}/identifier/device"  # the adapter itself, as Provenance's agent
ID_RULEBOOK = f"{BASE}/identifier/rulebook"  # a rulebook version, as Provenance's entity
EXT_MODIFIER = f"{BASE}/StructureDefinition/charge-modifier"
EXT_RULEBOOK = f"{BASE}/StructureDefinition/rulebook-version"
EXT_METHOD = f"{BASE}/StructureDefinition/unit-method"
EXT_MINUTES = f"{BASE}/StructureDefinition/timed-minutes"
EXT_RULE_REF = f"{BASE}/StructureDefinition/rule-ref"
EXT_CHARGE_ITEM = f"{BASE}/StructureDefinition/charge-item"
EXT_ALLOWED = f"{BASE}/StructureDefinition/expected-allowed"
EXT_VOIDED_DRAFT = f"{BASE}/StructureDefinition/voided-draft"
EXT_YTD_PT_SLP = f"{BASE}/StructureDefinition/therapy-ytd-allowed-pt-slp"
EXT_YTD_OT = f"{BASE}/StructureDefinition/therapy-ytd-allowed-ot"
#: on a Procedure: minutes documented without start and end times (a Duration in UCUM "min")
EXT_DOCUMENTED_MINUTES = f"{BASE}/StructureDefinition/documented-minutes"
#: input: on a CarePlan, the documented reason its certification came late
EXT_DELAYED_CERTIFICATION = f"{BASE}/StructureDefinition/delayed-certification-reason"
#: input: on a CarePlan, the date it was changed significantly (it must be certified again)
EXT_SIGNIFICANT_CHANGE = f"{BASE}/StructureDefinition/significant-change"
UCUM = "http://unitsofmeasure.org"

#: CPT modifiers (the rest of the adapter's modifiers are HCPCS Level II).
CPT_MODIFIERS = frozenset({"59"})


def code_system(code: str) -> str:
    """CPT for five-digit codes, HCPCS Level II for letter-led codes such as G0283."""
    return CPT if code[:1].isdigit() else HCPCS


def modifier_system(modifier: str) -> str:
    return CPT if modifier in CPT_MODIFIERS else HCPCS

"""The spool as a Lookup: answers stay right when resources arrive after a lookup (live gathering
adds a day's resources in rounds) and when a newer version replaces an older one."""

from __future__ import annotations

from adapter.intake.spool import Spool


def role(rid: str, practitioner: str, version: str = "1") -> dict[str, object]:
    return {
        "resourceType": "PractitionerRole",
        "id": rid,
        "meta": {"versionId": version},
        "practitioner": {"reference": practitioner},
    }


def test_a_lookup_miss_is_forgotten_when_the_resource_arrives() -> None:
    spool = Spool()
    try:
        assert spool.get("PractitionerRole/r1") is None
        assert spool.roles_of("Practitioner/p1") == []
        spool.add(role("r1", "Practitioner/p1"), file=0, where="x")
        spool.clear_cache()  # keeps roles between days, but must not keep the miss
        assert (spool.get("PractitionerRole/r1") or {}).get("id") == "r1"
        assert [r["id"] for r in spool.roles_of("Practitioner/p1")] == ["r1"]
    finally:
        spool.close()


def test_a_newer_version_replaces_the_cached_copy() -> None:
    spool = Spool()
    try:
        spool.add(role("r1", "Practitioner/p1"), file=0, where="x")
        assert (spool.get("PractitionerRole/r1") or {})["meta"]["versionId"] == "1"
        assert [r["id"] for r in spool.roles_of("Practitioner/p1")] == ["r1"]
        spool.add(role("r1", "Practitioner/p2", version="2"), file=0, where="y")
        assert (spool.get("PractitionerRole/r1") or {})["meta"]["versionId"] == "2"
        assert [r["id"] for r in spool.roles_of("Practitioner/p2")] == ["r1"]
        assert spool.roles_of("Practitioner/p1") == []
    finally:
        spool.close()


def _gone(version: str) -> dict[str, object]:
    return {"resourceType": "PractitionerRole", "meta": {"versionId": version}}


def test_a_delete_removes_the_versions_before_it_in_any_order() -> None:
    """A history Bundle's DELETE entry (newest first, or oldest first) removes the resource; a
    newer version read afterwards re-creates it (found in the real-world corpus: the delete was
    reported and ignored, so a deleted procedure billed)."""
    for order in ("create-then-delete", "delete-then-create"):
        spool = Spool()
        try:
            if order == "create-then-delete":
                spool.add(role("r1", "Practitioner/p1"), file=0, where="x")
            spool.delete("PractitionerRole", "r1", _gone("2"))
            if order == "delete-then-create":
                spool.add(role("r1", "Practitioner/p1"), file=0, where="x")
            spool.clear_cache()
            assert spool.get("PractitionerRole/r1") is None, order
            assert spool.roles_of("Practitioner/p1") == [], order
            assert spool.deleted_count() == 1 and spool.stats.superseded == 1, order
            spool.add(role("r1", "Practitioner/p3", version="3"), file=0, where="z")
            spool.clear_cache()
            assert (spool.get("PractitionerRole/r1") or {})["meta"]["versionId"] == "3"
            assert spool.deleted_count() == 0
        finally:
            spool.close()


def test_a_delete_older_than_the_version_read_changes_nothing() -> None:
    spool = Spool()
    try:
        spool.add(role("r1", "Practitioner/p1", version="5"), file=0, where="x")
        spool.delete("PractitionerRole", "r1", _gone("4"))
        assert (spool.get("PractitionerRole/r1") or {})["meta"]["versionId"] == "5"
        assert spool.deleted_count() == 0  # it was not deleted: a newer version stands
        spool.add(role("r1", "Practitioner/p1", version="3"), file=0, where="y")
        assert (spool.get("PractitionerRole/r1") or {})["meta"]["versionId"] == "5"
    finally:
        spool.close()


def test_between_days_the_days_own_resources_are_forgotten_the_rest_kept() -> None:
    """clear_cache forgets the procedures and encounters it cached (tracked as they are
    read, not by scanning the cache) and keeps the practitioners' side: an encounter changed
    in the spool is read afresh on the next day, an unchanged role is not read again."""
    spool = Spool()
    try:
        enc = {"resourceType": "Encounter", "id": "e1", "status": "finished"}
        spool.add(enc, file=0, where="x")
        spool.add(role("r1", "Practitioner/p1"), file=0, where="x")
        assert (spool.get("Encounter/e1") or {})["status"] == "finished"
        kept = spool.get("PractitionerRole/r1")
        spool.db.execute("UPDATE resources SET body = ? WHERE key = ?",
                         ('{"resourceType":"Encounter","id":"e1","status":"planned"}',
                          "Encounter/e1"))  # fmt: skip
        spool.clear_cache()
        assert (spool.get("Encounter/e1") or {})["status"] == "planned"
        assert spool.get("PractitionerRole/r1") is kept
    finally:
        spool.close()


def test_an_integer_beyond_64_bits_is_spooled_not_refused() -> None:
    """Not FHIR, but not a crash either: the stdlib writes what orjson will not."""
    spool = Spool()
    try:
        spool.add({"resourceType": "Encounter", "id": "e2", "length": {"value": 10**30}},
                  file=0, where="x")  # fmt: skip
        assert (spool.get("Encounter/e2") or {})["length"]["value"] == float(10**30)
    finally:
        spool.close()


def test_an_alias_added_after_a_lookup_is_followed() -> None:
    """key_of remembers its answers; an alias (a Bundle entry's fullUrl) added after a lookup
    that found none is followed on the next lookup, not the remembered miss."""
    spool = Spool()
    try:
        url = "urn:uuid:6f1c2b1e-0000-4000-8000-000000000001"
        assert spool.key_of(url) == url
        spool.add(role("r9", "Practitioner/p9"), file=0, where="x", full_url=url)
        assert spool.key_of(url) == "PractitionerRole/r9"
        assert (spool.get(url) or {}).get("id") == "r9"
    finally:
        spool.close()

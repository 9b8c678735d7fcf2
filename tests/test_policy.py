"""Policy and registry loading. Strategy: write small files, break one thing at a time, and
check the error names the right file, line and key; check consent history semantics."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import POLICY, write
from gdpr_audit.policy import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[1]


def test_sample_policy_and_registry_load() -> None:
    policy = load_policy(ROOT / "policies")
    assert policy.recipients and policy.subjects
    assert len({s.id for s in policy.subjects}) == len(policy.subjects)


def test_policy_is_parsed(policy_file: Path) -> None:
    policy = load_policy(policy_file)
    assert policy.organization == "Test Shop"
    assert policy.purposes == {"service": False, "newsletter": True, "transactional": False,
                               "analytics": True, "payment": False}
    mailer = policy.recipient_for("eu.mailer.test")
    assert mailer is not None and mailer.data == {"email", "name"}
    assert policy.recipient_for("mailer.test") is None  # "*.mailer.test" needs a subdomain
    assert policy.is_first_party("shop.test") and policy.is_first_party("www.shop.test")


def test_schema_error_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace("    data: [email, name]\n", "    data: [email, nmae]\n", 1))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    error = caught.value
    assert (error.file, error.key) == (str(path), "recipients[0].data[1]")
    assert "nmae" in path.read_text().splitlines()[error.line - 1]
    assert str(error).startswith(f"{path}:{error.line}: recipients[0].data[1]: 'nmae' is not one of")


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace("    country: IN\n", "    country: IN\n    contry: IN\n"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.key == "recipients[2].contry"
    assert "unknown key" in str(caught.value)
    assert "contry: IN" in path.read_text().splitlines()[caught.value.line - 1]


def test_undeclared_purpose_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace("purposes: [newsletter]\n    data: [email, name]",
                                                     "purposes: [newsleter]\n    data: [email, name]"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.key == "recipients[0].purposes[0]"
    assert "newsleter" in path.read_text().splitlines()[caught.value.line - 1]


def test_bad_timestamp_and_duplicate_subject(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace("2026-05-01T00:00:00Z", "yesterday"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.key == "subjects[2].erasure_requested"
    path = write(tmp_path / "p.yaml", POLICY.replace("id: bob", "id: alice"))
    with pytest.raises(PolicyError, match="used twice") as caught:
        load_policy(path)
    assert caught.value.key == "subjects[1].id"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", "version: 1\norganization:\n  name: [unclosed\n  first_party: []\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.file == str(path) and caught.value.line in (3, 4, 5)


def test_folder_is_merged_and_duplicates_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    head, _, subjects = POLICY.partition("subjects:\n")
    write(folder / "a.yaml", head)
    write(folder / "b.yaml", "subjects:\n" + subjects)
    policy = load_policy(folder)
    assert [s.id for s in policy.subjects] == ["alice", "bob", "carol"]
    write(folder / "c.yaml", "purposes:\n  newsletter: {consent_required: false}\n")
    with pytest.raises(PolicyError, match="already defined") as caught:
        load_policy(folder)
    assert caught.value.file.endswith("c.yaml") and caught.value.line == 2


def test_consent_history_latest_event_wins(policy_file: Path) -> None:
    alice = {s.id: s for s in load_policy(policy_file).subjects}["alice"]
    at = lambda *d: datetime(*d, tzinfo=UTC)  # noqa: E731
    assert not alice.has_consent("analytics", at(2025, 12, 31))
    assert alice.has_consent("analytics", at(2026, 1, 1))      # at the grant itself
    assert alice.has_consent("analytics", at(2026, 2, 15))
    assert not alice.has_consent("analytics", at(2026, 3, 1))  # withdrawn
    assert not alice.has_consent("advertising", at(2026, 6, 1))  # never granted


def test_history_list_regrant(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace(
        "      newsletter: {granted: 2026-01-01T00:00:00Z}\n    erasure",
        "      newsletter:\n        - {granted: 2025-05-01T00:00:00Z}\n"
        "        - {withdrawn: 2025-09-01T00:00:00Z}\n        - {granted: 2026-02-01}\n    erasure"))
    carol = {s.id: s for s in load_policy(path).subjects}["carol"]
    assert carol.has_consent("newsletter", datetime(2025, 6, 1, tzinfo=UTC))
    assert not carol.has_consent("newsletter", datetime(2025, 12, 1, tzinfo=UTC))
    assert carol.has_consent("newsletter", datetime(2026, 2, 1, tzinfo=UTC))


def test_registry_from_csv(tmp_path: Path, policy_file: Path) -> None:
    csv_file = write(tmp_path / "subjects.csv", """
        id,email,phone,name,consent.newsletter,erasure_requested
        p1,p1@example.org|p1.alt@example.org,+33612345602,Paul Roux,granted 2026-01-01T00:00:00Z | withdrawn 2026-02-01T00:00:00Z,
        p2,p2@example.org,,,,2026-03-01
        """)
    policy = load_policy(policy_file, csv_file)
    p1, p2 = policy.subjects
    assert ("email", "p1.alt@example.org") in p1.identifiers
    assert p1.has_consent("newsletter", datetime(2026, 1, 15, tzinfo=UTC))
    assert not p1.has_consent("newsletter", datetime(2026, 2, 15, tzinfo=UTC))
    assert p2.erasure_requested == datetime(2026, 3, 1, tzinfo=UTC)


def test_csv_errors_name_the_row(tmp_path: Path, policy_file: Path) -> None:
    csv_file = write(tmp_path / "subjects.csv", "id,email,consent.newsletter\np1,a@example.org,\np2,b@example.org,maybe\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file, csv_file)
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(csv_file), 3, "consent.newsletter")
    csv_file = write(tmp_path / "subjects.csv", "id,emial\np1,a@example.org\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file, csv_file)
    assert (caught.value.line, caught.value.key) == (2, "subjects[0].identifiers.emial")
    assert "emial" in str(caught.value)


def test_registry_from_json_with_line_of_error(tmp_path: Path, policy_file: Path) -> None:
    registry = {"subjects": [{"id": "j1", "identifiers": {"email": "j1@example.org"}},
                             {"id": "j2", "identifiers": {"emial": "j2@example.org"}}]}
    path = tmp_path / "subjects.json"
    path.write_text(json.dumps(registry, indent=2))
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file, path)
    assert caught.value.key == "subjects[1].identifiers.emial"
    assert '"emial"' in path.read_text().splitlines()[caught.value.line - 1]
    registry["subjects"][1]["identifiers"] = {"email": "j2@example.org"}
    path.write_text(json.dumps(registry))
    assert [s.id for s in load_policy(policy_file, path).subjects] == ["j1", "j2"]


def test_broken_json_registry(tmp_path: Path, policy_file: Path) -> None:
    path = tmp_path / "subjects.json"
    path.write_text('{"subjects": [\n  {"id": "x",}\n]}')
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file, path)
    assert caught.value.line == 2


def test_norway_is_a_country_not_false(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", POLICY.replace("country: IN", "country: NO"))
    assert load_policy(path).recipient_for("api.faraway.test").country == "NO"


def test_large_registry_error_keeps_its_index(tmp_path: Path, policy_file: Path) -> None:
    """Subjects that are certainly valid skip jsonschema: the one bad subject among many
    is still reported under its own index and line."""
    subjects = [{"id": f"s{n}", "identifiers": {"email": f"p{n}@example.org"},
                 "consents": {"newsletter": [{"granted": "2026-01-01T00:00:00Z"}]}}
                for n in range(3000)]
    subjects[2345]["consents"]["newsletter"][0]["granted"] = "soon"
    path = tmp_path / "subjects.json"
    path.write_text(json.dumps({"subjects": subjects}, indent=1))
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_file, path)
    assert caught.value.key == "subjects[2345].consents.newsletter[0].granted"
    assert '"soon"' in path.read_text().splitlines()[caught.value.line - 1]
    subjects[2345]["consents"]["newsletter"][0]["granted"] = "2026-01-02"
    subjects[17]["erasure_requested"] = None
    path.write_text(json.dumps({"subjects": subjects}))
    with pytest.raises(PolicyError, match=r"subjects\[17\].erasure_requested"):
        load_policy(policy_file, path)


def test_the_hash_scope_is_vendor_unless_the_policy_opts_into_research(
        tmp_path: Path, policy_file: Path) -> None:
    assert load_policy(policy_file).hashes == "vendor"
    research = write(tmp_path / "r.yaml", POLICY + "detection: {hashes: research}\n")
    assert load_policy(research).hashes == "research"
    wrong = write(tmp_path / "w.yaml", POLICY + "detection: {hashes: all}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(wrong)
    assert caught.value.key == "detection.hashes" and "research" in str(caught.value)


def test_subjects_with_one_consent_history_share_it(tmp_path: Path, policy_file: Path) -> None:
    """A history written alike is made once (a large registry imported at one date); one
    written otherwise is its own, oldest event first."""
    same = {"newsletter": [{"granted": "2026-01-01T00:00:00Z"}]}
    other = {"newsletter": [{"granted": "2026-03-01T00:00:00Z"},
                            {"withdrawn": "2026-02-01T00:00:00Z"}]}
    registry = {"subjects": [{"id": f"s{n}", "identifiers": {"email": f"s{n}@example.org"},
                              "consents": consents}
                             for n, consents in enumerate([same, other, same])]}
    path = tmp_path / "subjects.json"
    path.write_text(json.dumps(registry))
    first, second, third = load_policy(policy_file, path).subjects
    assert first.consents["newsletter"] is third.consents["newsletter"]
    assert [e.granted for e in second.consents["newsletter"]] == [False, True]
    assert second.has_consent("newsletter", datetime(2026, 3, 2, tzinfo=UTC))
    assert not second.has_consent("newsletter", datetime(2026, 2, 15, tzinfo=UTC))

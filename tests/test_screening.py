"""A request of many values (a batch of events) is screened: each detector's hint and the
registry's automata scan all the values at once, and only the values they hit are looked
at one by one. Screening must never lose a finding: these tests audit the same values with
and without it and want the same findings, in the same order."""

import base64
import hashlib
import os
import string
import subprocess
import sys
import uuid

import hyperscan
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdpr_audit import audit, fields
from gdpr_audit.audit import Auditor
from gdpr_audit.detectors import base, registry_index
from gdpr_audit.detectors.card import CardDetector
from gdpr_audit.detectors.ip import IpAddressDetector
from gdpr_audit.detectors.nir import NirDetector
from gdpr_audit.fields import MAX_MEMO_CHARS, Extraction, Field
from gdpr_audit.policy import load_policy
from test_detectors import CARDS, NIRS
from test_fuzz_properties import POLICY_DIR

AUDITOR = Auditor(load_policy(POLICY_DIR))
KEYS = ["misc", "phone", "ip", "em", "ph", "first_name", "sku", "events[3].context.ip",
        "user.email", "to", "x-forwarded-for", "version"]
# Identifiers of people the registry does not know: the patterns' findings.
OTHERS = ["+44 20 7946 0958", "+33 7 55 44 33 22", "07 55 44 33 22", "jane.roe@example.org",
          "DE89 3704 0044 0532 0130 00", "DE89370400440532013000",
          "4111 1111 1111 1111", "4111-1111-1111-1111", "2 90 12 75 123 456 84",
          "290127512345684", "203.0.113.7", "2001:db8::17", "for=\"[2001:db8::17]:4711\"",
          "  12345678  ", "-1234567890123", "deadbeef", "deadbeefdeadbeef", "Amélie Rousseau",
          "AMÉLIE ROUSSEAU", "ﬁ@example.org", "x\x00y", "", " ", "true"]


def spellings(value: str) -> list[str]:
    digest = hashlib.sha256(value.strip().lower().encode()).digest()
    return [value, value.upper(), f"id: {value}; next", hashlib.md5(value.encode()).hexdigest(),
            base64.b64encode(f"{value}|{value}".encode()).decode(),
            f"u={base64.urlsafe_b64encode(value.encode()).decode()}",
            digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode(),
            base64.urlsafe_b64encode(digest).decode().rstrip("="),
            str(int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big"))]


def noise(count: int) -> list[str]:
    return [v for n in range(count) for v in (f"SKU-{n:06d}", f"/p/{n}", str(uuid.UUID(int=n)))]


def detect(values: list[str], screen: bool, monkeypatch: pytest.MonkeyPatch,
           memoised: int = 0, auditor: Auditor = AUDITOR) -> list[tuple]:
    """`memoised` values are audited alone first, as an earlier flow would have."""
    fields = [Field("body", KEYS[n % len(KEYS)], value) for n, value in enumerate(values)]
    return detect_fields(fields, screen, monkeypatch, memoised, auditor)


def detect_fields(fields: list[Field], screen: bool, monkeypatch: pytest.MonkeyPatch,
                  memoised: int = 0, auditor: Auditor = AUDITOR) -> list[tuple]:
    extraction = Extraction(fields)
    auditor._by_value.clear()  # noqa: SLF001 - memoised findings would hide the screening
    with monkeypatch.context() as patch:
        auditor.detect(Extraction(extraction.fields[:memoised]))
        patch.setattr(audit, "_SCREEN_FROM", 1 if screen else 10 ** 9)
        findings = auditor.detect(extraction)
    return [(f.detector, f.category, f.field.key, f.value, f.canonical, f.form, f.subject,
             f.count) for f in findings]


def test_screening_keeps_every_finding_of_the_registry_and_the_patterns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    identifiers = [v for s in AUDITOR.policy.subjects for _, v in s.identifiers]
    values = [s for v in identifiers + OTHERS for s in spellings(v)] + noise(200)
    screened = detect(values, True, monkeypatch)
    assert screened == detect(values, False, monkeypatch)
    found = {(detector, form) for detector, _, _, _, _, form, _, _ in screened}
    # not vacuous: every kind of finding is there to be lost
    for detector in ("registry", "email", "phone", "iban", "payment_card", "fr_nir",
                     "ip_address", "field_name"):
        assert any(d == detector for d, _ in found), detector
    assert {"sha256(email)", "md5(email)", "base64(sha256(email))"} <= {f for _, f in found}


def test_hyperscan_and_the_automata_screen_the_registry_spellings_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    identifiers = [v for s in AUDITOR.policy.subjects for _, v in s.identifiers]
    values = [s for v in identifiers for s in spellings(v)] + noise(100)
    assert AUDITOR._spellings_screened  # noqa: SLF001 - a small registry: by Hyperscan
    monkeypatch.setattr(registry_index, "SCREENED_SPELLINGS", 0)
    by_automata = Auditor(load_policy(POLICY_DIR))
    assert not by_automata._spellings_screened  # noqa: SLF001
    upper = [v.upper() for v in identifiers] + noise(100)
    for batch in (values, upper):
        screened = detect(batch, True, monkeypatch)
        assert screened == detect(batch, True, monkeypatch, auditor=by_automata)
        # not vacuous: the plain spellings in any case, and the base64 ones, are there to be lost
        forms = {form for detector, *_, form, _, _ in screened if detector == "registry"}
        assert ({"plain", "base64"} <= forms) if batch is values else ("plain" in forms)


def test_a_value_memoised_before_the_screening_is_looked_at_in_full_if_the_memo_empties(
        monkeypatch: pytest.MonkeyPatch) -> None:
    identifiers = [v for s in AUDITOR.policy.subjects for _, v in s.identifiers]
    values = identifiers + OTHERS + noise(100)
    monkeypatch.setattr(fields, "MAX_MEMO_ENTRIES", 50)  # emptied while the batch is read
    unscreened = detect(values, False, monkeypatch)
    assert detect(values, True, monkeypatch, memoised=len(identifiers)) == unscreened
    assert any(detector == "registry" for detector, *_ in unscreened)


ALPHABET = string.ascii_letters + string.digits + " +-.@:/=_%[]\"'\x00\t\néﬁ"


@given(st.lists(st.text(ALPHABET, max_size=40), min_size=1, max_size=60),
       st.lists(st.sampled_from(OTHERS), max_size=8))
def test_screening_keeps_every_finding_of_any_values(values: list[str], others: list[str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        mixed = values + others + noise(3)
        assert detect(mixed, True, monkeypatch) == detect(mixed, False, monkeypatch)


def test_elements_of_an_array_make_one_field_name_finding_counted_without_those_recognised(
        ) -> None:
    """A field-name guess for `events[*].user.first_name` is judged once per key and counted
    per element: an element whose value the registry recognised, or that is empty, or (under
    a hashed-data key) not a digest, does not count."""
    digest = hashlib.sha256(b"someone@example.net").hexdigest()
    events = [("Camille", digest), ("Marie Dupont", "not-a-digest"), ("", digest),
              ("Louis", digest), ("Inès", "")]
    fields = [Field("body", f"events[{n}].user.first_name", name) for n, (name, _) in
              enumerate(events)]
    fields += [Field("body", f"events[{n}].em", em) for n, (_, em) in enumerate(events)]
    fields.append(Field("body", "events[1].user.first_name", "Marie Dupont", ("base64",)))
    # a value decoded from another keeps its key: one element, counted once
    fields.append(Field("body", "events[3].user.first_name", "Louis", ("base64",)))
    AUDITOR._by_value.clear()  # noqa: SLF001
    found = {(f.detector, f.category, f.field.key, f.form, f.subject): f.count
             for f in AUDITOR.detect(Extraction(fields))}
    assert found[("field_name", "name", "events[*].user.first_name", "field name", None)] == 3
    assert found[("field_name", "email", "events[*].em", "sha256(email)?", None)] == 3
    assert found[("registry", "name", "events[1].user.first_name", "plain", "cust-001")] == 1


@pytest.mark.parametrize(("value", "finding", "reading", "other"), [
    ("07 55 44 33 22", ("phone", "+33755443322"), ["phone", "contact.mobile", "sms_to"],
     ["note", "order.total", "ref"]),
    ("93.184.216.34", ("ip_address", "93.184.216.34"), ["ip", "client_ip", "x-forwarded-for"],
     ["app_version", "build", "release"]),
])
def test_a_value_seen_under_one_key_is_judged_again_under_a_key_read_otherwise(
        value: str, finding: tuple[str, str], reading: list[str], other: list[str]) -> None:
    """The phone and IP detectors read the key as well as the value, and their findings are
    memoised across requests: a national number under `note`, or a dotted number under
    `app_version`, is nothing, whatever the same value was under `phone` or `ip` before."""
    for memo in (*AUDITOR._by_key_class.values(), AUDITOR._by_key):  # noqa: SLF001
        memo.clear()
    for key in [k for pair in zip(reading, other, strict=True) for k in pair] * 2:
        found = {(f.detector, f.canonical) for f in AUDITOR.detect(Extraction(
            [Field("body", key, value)]))}
        assert (finding in found) == (key in reading), key


KEY_ALPHABET = "ab.[]0123456789*\x00é"


@given(st.lists(st.tuples(st.sampled_from(["body", "path", "query", "cookie"]),
                          st.text(KEY_ALPHABET, max_size=12)), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=3))
def test_shapes_memoised_or_not_are_those_of_each_key_alone(places: list[tuple[str, str]],
                                                           extra_long: int) -> None:
    items = [Field(location, key, "v") for location, key in places + [
        ("path", "[0]"), ("query", "items[1]"), ("body", "batch[12].sku"), ("body", "batch[3].sku"),
        ("cookie", "a\x00[4]"), ("body", "events[0].context[2]")]]
    items += [Field("body", f"batch[{n}]." + "k" * MAX_MEMO_CHARS, "v") for n in range(extra_long)]
    expected = [audit._shape_of(item.location, item.key) for item in items]
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(fields, "MAX_MEMO_ENTRIES", 8)  # emptied between and within calls
        assert audit._shapes_of(items) == expected
        assert audit._shapes_of(items) == expected  # from the memo this time
        assert audit._shapes_of(list(reversed(items))) == expected[::-1]


def test_long_paths_are_resolved_but_not_memoised() -> None:
    """The recipient of a host and path is memoised, but not for a long path: a client
    sending long distinct paths must not make the memo hold them."""
    auditor = Auditor(load_policy(POLICY_DIR))
    long_path = "/p/" + "x" * MAX_MEMO_CHARS
    destination = auditor._resolve("www.google-analytics.com", long_path)  # noqa: SLF001
    assert destination == auditor._resolve("www.google-analytics.com", long_path)  # noqa: SLF001
    assert auditor._destinations == {}  # noqa: SLF001
    auditor._resolve("www.google-analytics.com", "/collect?v=2")  # noqa: SLF001
    assert list(auditor._destinations) == [("www.google-analytics.com", "/collect")]  # noqa: SLF001


def test_the_screening_database_is_kept_sealed_for_the_next_process(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next process loads the compiled database instead of compiling it again, and screens
    alike with it. The file holds a small registry's spellings, so none is in clear; a file
    that does not open or load is compiled again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    auditor = Auditor(load_policy(POLICY_DIR))
    spellings = [text for text, _ in auditor.known.spellings]
    values = [v for identifier in ("+33 6 12 34 56 78", "camille.martin@example.com")
              for v in spellings[:40] + [identifier.upper()]] + OTHERS + noise(5)
    unscreened = detect(values, False, monkeypatch, auditor=auditor)
    assert any(detector == "registry" for detector, *_ in unscreened)
    compiled: list[int] = []

    class Counted(hyperscan.Database):
        def compile(self, **kwargs):
            compiled.append(len(kwargs["expressions"]))
            return super().compile(**kwargs)

    monkeypatch.setattr(hyperscan, "Database", Counted)
    base.hint_database.cache_clear()  # as in a new process
    auditor.warm_up()
    [kept] = (tmp_path / "gdpr-audit").glob("screen-*.idx")
    sealed = kept.read_bytes()
    assert len(compiled) == 1 and len(spellings) > 40
    assert not [text for text in spellings if len(text) > 5
                and text.lower().encode() in sealed.lower()]
    base.hint_database.cache_clear()  # the next process: loads, neither compiles nor writes
    assert detect(values, True, monkeypatch, auditor=auditor) == unscreened
    assert len(compiled) == 1 and kept.read_bytes() == sealed
    for damage in (sealed[:-9], sealed[:200] + bytes([sealed[200] ^ 1]) + sealed[201:]):
        kept.write_bytes(damage)
        base.hint_database.cache_clear()  # compiles again, and writes a file that opens
        assert detect(values, True, monkeypatch, auditor=auditor) == unscreened
        assert len(compiled) == 2
        compiled[1:] = []
        assert kept.read_bytes() != damage


def test_databases_used_in_turn_are_each_kept(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts or policies used in turn each load their own database, where one file
    a kind made each compile again; past the few kept, the one written first goes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled: list[list[bytes]] = []

    class Counted(hyperscan.Database):
        def compile(self, **kwargs):
            compiled.append(kwargs["expressions"])
            return super().compile(**kwargs)

    folder, written = tmp_path / "gdpr-audit", iter(range(1, 100))

    def in_a_new_process(screen: base.Screen) -> None:
        kept = set(folder.glob("test-*.idx"))
        base.hint_database.cache_clear()
        screen.compile()
        # Each file written is dated a second after the one before: the order the cache
        # keeps by, whatever the file system's clock resolution.
        for new in set(folder.glob("test-*.idx")) - kept:
            os.utime(new, ns=(next(written) * 10**9,) * 2)

    monkeypatch.setattr(hyperscan, "Database", Counted)
    screens = [base.Screen([("owner", f"x{n}y")], kind="test") for n in range(5)]
    assert base._KEPT_DATABASES == 4  # noqa: SLF001
    for screen in screens[:2] * 2:
        in_a_new_process(screen)
    assert compiled == [[b"x0y"], [b"x1y"]]
    for screen in screens[2:]:
        in_a_new_process(screen)
    assert len(list((tmp_path / "gdpr-audit").glob("test-*.idx"))) == 4
    in_a_new_process(screens[1])
    in_a_new_process(screens[0])
    assert compiled[2:] == [[b"x2y"], [b"x3y"], [b"x4y"], [b"x0y"]]
    base.hint_database.cache_clear()


def test_a_process_of_another_hash_seed_loads_the_kept_database(tmp_path) -> None:
    """The registry's spellings come out of its automata in an order that varies with the
    hash seed: the database must be kept under the same patterns whatever the order."""
    code = ("import sys; from pathlib import Path; from gdpr_audit.audit import Auditor; "
            "from gdpr_audit.policy import load_policy; "
            "Auditor(load_policy(Path(sys.argv[1]))).warm_up()")
    kept = []
    for seed in ("1", "2", "3"):
        subprocess.run([sys.executable, "-c", code, str(POLICY_DIR)], check=True, env={
            **os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONHASHSEED": seed})
        kept.append([(f.name, f.stat().st_mtime_ns) for f in (tmp_path / "gdpr-audit").iterdir()])
    assert len(kept[0]) == 1 and kept[0] == kept[1] == kept[2]  # written once, then loaded


def test_without_a_home_to_keep_it_in_the_database_is_compiled_and_screens_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's arbitrary user may have no home: nothing is kept, nothing fails."""
    from pathlib import Path

    from gdpr_audit.detectors import registry_index

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    values = [v for identifier in ("+33 6 12 34 56 78", "camille.martin@example.com")
              for v in [identifier, identifier.upper()]] + OTHERS + noise(5)
    base.hint_database.cache_clear()
    assert detect(values, True, monkeypatch) == detect(values, False, monkeypatch)
    assert registry_index._sealed(AUDITOR.known.subjects, "FR", ()) is None


def _ip_addresses() -> list[str]:
    """IP addresses written every way ipaddress reads them: IPv4; IPv6 whole, or with `::`
    at each place, an IPv4 tail, a zone; as RFC 7239 writes them, bracketed with a port."""
    groups = ["2001", "db8", "0", "1a", "f", "ab12", "9"]
    written = ["203.0.113.7", "10.0.0.1", "255.255.255.255", "1.2.3.4", ":".join(groups + ["1"])]
    for left in range(8):
        for right in range(8 - left):
            ipv6 = ":".join(groups[:left]) + "::" + ":".join(groups[-right:] if right else [])
            written += [ipv6, f"{ipv6}%eth0", f'for="[{ipv6}]:4711"']
            if left + right <= 5:
                written.append(ipv6 + (":" if right else "") + "198.51.100.7")
    return written


def test_screening_keeps_every_ip_address_however_written(monkeypatch: pytest.MonkeyPatch):
    # The IP detector's hint sees neither the key nor the whole value: each address must
    # hit it, under a key that names an address (inside a sentence too) or under any key.
    values = [v for address in _ip_addresses() for v in (address, f"from {address} today")]
    fields = [Field("body", key, value) for key in ("ip", "misc") for value in values]
    screened = detect_fields(fields, True, monkeypatch)
    assert screened == detect_fields(fields, False, monkeypatch)
    # not vacuous: every address the detector finds alone is there
    alone = {f.canonical for value in _ip_addresses()
             for f in IpAddressDetector().find(Field("body", "ip", value))}
    assert len(alone) > 70
    assert {canonical for detector, _, _, _, canonical, *_ in screened
            if detector == "ip_address"} == alone


def test_screening_keeps_every_card_and_nir_however_closed(monkeypatch: pytest.MonkeyPatch):
    # Their hints take a run of digits with one separator at most between two, to its end:
    # each number must hit them whatever closes it (separators, another digit after two, a
    # letter, the end of the value) or opens it.
    numbers = [value for value, _ in CARDS + NIRS] + ["4222222222222"]  # 13 digits, the fewest
    values = [v for number in numbers for v in (
        number, f"{number} ", f"{number}-", f"{number} -", f"{number}  x", f"{number}\t\n",
        f"{number} -5", f"{number}--5", f"{number}.", f"{number}x", f"-{number}", f"x{number}",
        f"paid with {number} today", f"{number} {number}")]
    fields = [Field("body", f"misc{n}", value) for n, value in enumerate(values)]  # each kept
    screened = detect_fields(fields, True, monkeypatch)
    assert screened == detect_fields(fields, False, monkeypatch)
    # not vacuous: every number either detector finds alone is there (the registry's own as
    # the registry's)
    alone = {f.canonical for value in values for detector in (CardDetector(), NirDetector())
             for f in detector.find(Field("body", "misc", value))}
    assert len(alone) >= 10
    assert alone <= {canonical for _, _, _, _, canonical, *_ in screened}


# cust-001's +33612345678 as it may be written (by hand), none under a phone's key.
PHONE_FORMS = ["33612345678", "+33612345678", "0033612345678", "0612345678", "06 12 34 56 78",
               "06.12.34.56.78", "06-12-34-56-78", "06+12+34+56+78", "+33 6 12 34 56 78",
               "06%2012%2034%2056%2078", "%2B33612345678", "%2b33%206%2012%2034%2056%2078",
               "%2B33+6+12+34+56+78", "tel. 06 12 34 56 78 (soir)"]


@pytest.mark.parametrize("automata", [False, True])
def test_screening_keeps_every_registry_phone_however_written(
        monkeypatch: pytest.MonkeyPatch, automata: bool) -> None:
    """Phone numbers are looked up by number, not spelled in the automata: the registry's
    hints must screen in every form find() reads, whether a small registry's spellings are
    screened by Hyperscan or a large one's by its automata."""
    auditor = AUDITOR
    if automata:
        monkeypatch.setattr(registry_index, "SCREENED_SPELLINGS", 0)
        auditor = Auditor(load_policy(POLICY_DIR))
    assert auditor._spellings_screened is not automata  # noqa: SLF001
    fields = [Field("body", f"misc{n}", value) for n, value in enumerate(PHONE_FORMS + noise(200))]
    screened = detect_fields(fields, True, monkeypatch, auditor=auditor)
    assert screened == detect_fields(fields, False, monkeypatch, auditor=auditor)
    phones = {value: subject for detector, category, _, value, canonical, _, subject, _
              in screened if detector == "registry" and category == "phone"}
    assert phones == {form.lower().removeprefix("tel. ").removesuffix(" (soir)"): "cust-001"
                      for form in PHONE_FORMS}


def test_long_values_scanned_alone_are_hit_as_in_one_scan_of_all() -> None:
    """A value of base.LONG_TEXT characters or more is scanned alone, each detector's hint
    reported once in it (Screen's `once`): on random batches of short and long values, the
    hints and literals hit the values one scan of them all hits, a hint at either end of a
    value included (what closes it there is the SEPARATOR)."""
    import random

    rng = random.Random(28)
    identifiers = [v for s in AUDITOR.policy.subjects for _, v in s.identifiers]
    pieces = [s for v in identifiers[:12] + OTHERS for s in spellings(v)[:4]
              if s.isascii() and base.SEPARATOR not in s] + [
        "2026-06-15 10:00:00", "id=1099511627776", "x", " ", "\n", "lorem ipsum", "12", "+33"]
    screen = AUDITOR._hints  # noqa: SLF001
    hit = 0
    for _ in range(60):
        values = []
        for _ in range(rng.randrange(1, 6)):
            size = rng.choice((10, 200, base.LONG_TEXT - 30, base.LONG_TEXT + 500))
            parts = [rng.choice(pieces)]
            dense = rng.random() < 0.5  # else one piece, at the start or at the end
            while sum(map(len, parts)) < size:
                parts.append(rng.choice(pieces) if dense and rng.random() < 0.3 else
                             "lorem ipsum ")
            values.append("".join(parts[::rng.choice((1, -1))]))
        values = list(dict.fromkeys(values))
        joined = base.Joined(values)
        alone = screen.scan(joined)
        assert alone == screen._scan(joined), values  # noqa: SLF001 - one scan of all
        hit += sum(len(v) >= base.LONG_TEXT for found in alone.values() for v in found)
    assert hit > 200  # not vacuous: long values are hit

"""Who a flow's registry matches name (SPEC 3.7).

A match names its subject only when what matched identifies that one subject: a value no other
subject holds (an email, a phone, an id, a full name, a full address), or a combination found
in the same flow that only this subject has (first and last name; street and city or
postcode). A quasi-identifier (a city, a postcode, a street, a first or last name, a birth
date) or a value several subjects hold names nobody by itself: it attaches to a subject named
in the same flow who holds it, or stays a finding of its category with no subject.

Which subjects hold a value is worked out once, when the registry is indexed (`owner_keys`):
per flow it costs a dictionary look-up per registry finding.
"""

from bisect import bisect_left
from collections.abc import Sequence

from .base import Finding
from .spellings import _part_of, _parts, _whole_is_part

# Pairs of parts that together name one person, where each alone names nobody.
COMBINATIONS = (("first name", "last name"), ("street", "city"), ("street", "postcode"))
# A batch may carry hundreds of first names: combinations are tried among the first few.
_MAX_COMBINED = 8

Places = dict[tuple[str, ...], Finding]


def owner_key(category: str, part: str, canonical: str) -> str:
    return f"{category}\x1f{part}\x1f{canonical}"


def owner_keys(key: str, category: str, value: str, canon: str) -> list[str]:
    """What an identifier is held under: its parts (see spellings._parts), and the whole of it
    unless it is one part."""
    # Not through _parts' memo: the index asks once per value, which would only flush it.
    parts = _parts.__wrapped__(key, category, value)
    keys = [owner_key(category, part, text) for part, text in parts]
    if not _whole_is_part(category, parts):
        keys.append(owner_key(category, "", canon))
    return keys


def part_of_match(key: str, category: str, value: str, canon: str,
                  text: str | None) -> tuple[str, str]:
    """(part, canonical) of what matched: see spellings._part_of."""
    return _part_of(key, category, value, canon, text)


def _holds(held: Sequence[int], number: int) -> bool:
    index = bisect_left(held, number)
    return index < len(held) and held[index] == number


def attribute(findings: Places, owners: dict[str, tuple[int, ...]],
              numbers: dict[str, int], ids: Sequence[str]) -> Places:
    """The registry findings of one flow (keyed by location, key, category, subject), each
    naming its subject only where SPEC 3.7 says it does; the others attach to a subject named
    in the flow who holds the value, or name nobody (one finding per place and category)."""
    if not findings:
        return findings
    held_by: dict[str, Sequence[int]] = {}
    named: set[int] = set()
    parts: dict[str, list[Sequence[int]]] = {}
    for finding in findings.values():
        item = owner_key(finding.category, finding.part, finding.canonical)
        held = held_by.get(item)
        if held is None:
            # Not among the owners: this finding's subject holds it alone.
            held = owners.get(item) or ((numbers[finding.subject],) if finding.subject else ())
            held_by[item] = held
            if finding.part:
                parts.setdefault(finding.part, []).append(held)
        if not finding.part and len(held) == 1:
            named.add(held[0])
    for first, second in COMBINATIONS:
        for one in parts.get(first, ())[:_MAX_COMBINED]:
            for other in parts.get(second, ())[:_MAX_COMBINED]:
                common = set(one).intersection(other)
                if len(common) == 1:
                    named |= common
    result: Places = {}
    attached: dict[str, list[int]] = {}
    for place, finding in findings.items():
        if finding.subject is not None and numbers[finding.subject] in named:
            result[place] = finding
            continue
        item = owner_key(finding.category, finding.part, finding.canonical)
        holders = attached.get(item)
        if holders is None:
            holders = attached[item] = [n for n in named if _holds(held_by[item], n)]
        for number in holders:
            key = (*place[:-1], ids[number])
            if key not in result:
                result[key] = Finding(
                    finding.detector, finding.category, finding.field, finding.value,
                    finding.canonical, finding.form, ids[number], finding.count, finding.part)
        if not holders:
            key = (*place[:-1], "")
            kept = result.get(key)
            if kept is None or len(finding.canonical) > len(kept.canonical):
                result[key] = Finding(
                    finding.detector, finding.category, finding.field, finding.value,
                    finding.canonical, finding.form, None, finding.count, finding.part)
    return result


def identifies_nobody(finding: Finding) -> bool:
    """A quasi-identifier that names nobody: personal data only beside an identifier
    (SPEC 3.5)."""
    return bool(finding.part) and finding.subject is None

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

from ..fields import Field, array_shape
from .base import SPACE, Detector, Finding

# Keys under which a number written without '+' is still a phone number: a word anywhere, or
# a short name as the last segment. Two patterns on the lowered key, each starting with a few
# literal characters, where one case-blind pattern cost 5 us a key (thousands in a batch).
_PHONE_WORD = re.compile(r"phone|tel|mobile|portable|sms|msisdn")
_PHONE_LAST = re.compile(r"[._\[](?:to|from|ph)\]?$")
# Cheap pre-check so libphonenumber only sees values that could hold a number.
_DIGITS = re.compile(r"\d[\d\s().-]{5,}\d")
# A value that is one international number and nothing else, as a CRM or a form stores it:
# PhoneNumberMatcher's one candidate is then the whole value, and what it checks of it at
# leniency VALID is parse() and is_valid_number() (a '+' number needs no national prefix,
# and has no 'x'): those two are asked directly, for half the matcher's cost (a contact
# import has thousands). Where they refuse, the matcher looks for numbers inside, as before.
_WHOLE_INTERNATIONAL = re.compile(r"\+[1-9](?:[ .-]?[0-9]){6,16}")
_SEPARATORS = str.maketrans("", "", " .-")


class PhoneDetector(Detector):
    """libphonenumber validates numbers, so SKUs and order numbers don't pass for phones:
    '+'-prefixed numbers anywhere, national ones only under a phone-like key."""

    id = "phone"
    reads_key = True
    category = "phone"
    hint = rf"[0-9][0-9{SPACE}().-]{{5,}}[0-9][{SPACE}().-]*[^0-9{SPACE}().-]"

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value
        region = self.region if self.key_class(field.key) else None
        if region is None and "+" not in value:
            return
        # A whole number holds what _DIGITS looks for (7 digits, separated by one at most).
        if _WHOLE_INTERNATIONAL.fullmatch(value):
            e164 = _whole_international(value, region or "ZZ")
            if e164 is not None:
                yield Finding(self.id, self.category, field, value, e164)
                return
            if not _may_hold_a_number(value):
                return
        elif not _DIGITS.search(value):  # 3 us on a UUID, of which a batch has thousands
            return
        found = _plus_numbers(value) if region is None else None
        if found is not None:
            for raw, e164 in found:
                yield Finding(self.id, self.category, field, raw, e164)
            return
        for match in phonenumbers.PhoneNumberMatcher(value, region or "ZZ",
                                                      leniency=phonenumbers.Leniency.VALID):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            yield Finding(self.id, self.category, field, match.raw_string, e164)

    def key_class(self, key: str) -> bool:
        """Whether the key is a phone's: the same for every element of an array, whose
        keys (`contacts[12].email`) a batch brings more of than the memo holds."""
        return _phone_key(array_shape(key))


def _whole_international(value: str, region: str) -> str | None:
    """The E.164 form of a value _WHOLE_INTERNATIONAL matches, if phonenumbers calls the
    number valid; None if not."""
    digits = value.replace(" ", "").replace(".", "").replace("-", "")[1:]
    known = _country_checks(digits[:3], len(digits))
    if known is not None:
        size, checks = known
        national = digits[size:]
        if not checks.national_prefix.match(national):
            return "+" + digits if checks.valid.fullmatch(national) else None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=4096)
def _country_checks(head: str, length: int) -> tuple[int, "_Checks"] | None:
    """For a number of `length` digits after the '+' that starts with `head` (3 digits): the
    size of its country code, as phonenumbers reads one (the first of 1, 2 or 3 digits that
    is one), and what is checked of the national part (_checks); None where phonenumbers
    is asked. Its first three digits tell both: asked once, not at every number of a text."""
    for size in (1, 2, 3):
        code = int(head[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            checks = _checks(code, length - size)
            return None if checks is None else (size, checks)
    return None


# A '+' number inside a text (a log line, a CSV row), between characters after and before
# which PhoneNumberMatcher takes it as it is. The matcher tries each candidate in Python
# (70 us a number: a MB of call records took a second); outside a phone's key it finds only
# '+' numbers, so a text whose every '+' starts such a number holds those and no other.
_PLUS_NUMBER = re.compile(r"\+[1-9](?:[ .-]?[0-9]){6,16}")
_BEFORE_AS_IS = frozenset(" \t\n\r,;=\"':")
_AFTER_AS_IS = frozenset("\t\n\r,;\"'&<")
# An opening bracket, then what the matcher reads between it and a '+' (phonenumbers'
# VALID_PUNCTUATION, and a tab): the matcher takes it in.
_BRACKET_BEFORE = re.compile("[(\\[{\uff08\uff3b][-x\u2010-\u2015\u2212\u30fc\uff0d-\uff0f "
                             "\u00a0\u00ad\u200b\u2060\u3000)\uff09\uff3d.\\]/~\u2053\u223c"
                             "\uff5e\t]*\\Z")
_EXTENSION = re.compile(r"[ \t,]*(?:[^\W\d_]|[#~\uff03\uff5e])")


def _plus_numbers(value: str) -> list[tuple[str, str]] | None:
    """(raw, E.164) of each '+' number of a value outside a phone's key, as
    PhoneNumberMatcher finds them, where each stands between characters it keeps out
    (_BEFORE_AS_IS, _AFTER_AS_IS) and is a valid number or one with none inside
    (_may_hold_a_number); None where the matcher is needed. Where each '+' starts a number,
    what stands around them all is looked at by three searches of the text, in C
    (_NOT_AS_IS), rather than around each in Python: a MB of call records has 16,000."""
    if "\uff0b" in value:  # the full-width plus, which phonenumbers reads as '+'
        return None
    numbers = _PLUS_NUMBER.findall(value)
    if len(numbers) != value.count("+") or any(
            pattern.search(value) for pattern in _NOT_AS_IS):
        return None
    found = []
    for number in numbers:
        e164 = _whole_international(number, "ZZ")
        if e164 is not None:
            found.append((number, e164))
        elif _may_hold_a_number(number):
            return None
    return found


# Around a '+' that starts a number (every '+', where _plus_numbers reads them), what the
# matcher does not take as it is: a character before it not in _BEFORE_AS_IS; after the
# number (as _PLUS_NUMBER reads it: an atomic group, which does not give digits back), a
# character not in _AFTER_AS_IS or an extension (_EXTENSION); an opening bracket before it
# (_BRACKET_BEFORE, which looks at the 16 characters before the '+').
_NOT_AS_IS = (
    re.compile("\\+(?<=[^" + re.escape("".join(sorted(_BEFORE_AS_IS))) + "]\\+)"),
    re.compile(r"\+[1-9](?>(?:[ .-]?[0-9]){6,16})(?=[^" + re.escape(
        "".join(sorted(_AFTER_AS_IS))) + "]|" + _EXTENSION.pattern + ")"),
    re.compile(_BRACKET_BEFORE.pattern.removesuffix("*\\Z") + "{0,15}\\+"),
)


def _may_hold_a_number(value: str) -> bool:
    """Whether PhoneNumberMatcher could find a number inside a value _WHOLE_INTERNATIONAL
    matches that is no valid number itself (a tenth of a contact import's, each costing the
    matcher 80 us). The value is its one candidate, and what it then tries are its inner
    matches: the parts between its spaces, and those between its dots, the first of each
    with the '+'. No part of 2 digits or fewer is valid in any region, nor any '+' part of
    3 or fewer (tests/test_detectors.py tries every one): where every part is that short,
    there is nothing to find."""
    for separator in " .":
        first, *others = value.split(separator)
        if others and (_digit_count(first) > 3 or max(map(_digit_count, others)) > 2):
            return True
    return False


def _digit_count(text: str) -> int:
    return len(text.translate(_SEPARATORS)) - text.startswith("+")


class _Checks(NamedTuple):
    national_prefix: re.Pattern[str]
    valid: re.Pattern[str]


_NEVER = "(?!)"


# parse() and is_valid_number() cost 20 us a number, most of it reading the text character
# by character in Python, and a contact import has thousands. Where the country code is one
# region's and no national prefix opens the national part, parse() keeps that part as it
# is, the E.164 form is '+' and the digits, and is_valid_number() is true where the region's
# general pattern matches the part and so does one of its number types' (where each allows
# that length): one regex of them all, at a twentieth of the cost. Other numbers are left to
# phonenumbers. Checked against it on 550,000 numbers around every region's example numbers
# (tests/test_detectors.py keeps a sample).
@lru_cache(maxsize=4096)
def _checks(code: int, length: int) -> _Checks | None:
    """What phonenumbers checks of a national part of `length` digits after this country
    code; None where it is left to phonenumbers (a code several regions share, or a length
    parse() refuses)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
    if len(regions) != 1 or metadata is None or not 2 <= length <= 17:
        return None
    descs = (metadata.premium_rate, metadata.toll_free, metadata.shared_cost, metadata.voip,
             metadata.personal_number, metadata.pager, metadata.uan, metadata.voicemail,
             metadata.fixed_line, metadata.mobile)
    types = "|".join(f"(?:{d.national_number_pattern})" for d in descs if _allows(d, length))
    general = metadata.general_desc
    valid = (f"(?=(?:{general.national_number_pattern})\\Z)(?:{types})"
             if types and _allows(general, length) else _NEVER)
    return _Checks(re.compile(metadata.national_prefix_for_parsing or _NEVER), re.compile(valid))


def _allows(desc: PhoneNumberDesc | None, length: int) -> bool:
    """Whether a number of this length may match the description (its pattern decides)."""
    return (desc is not None and bool(desc.national_number_pattern)
            and (not desc.possible_length or length in desc.possible_length))


# The same keys come back in every flow, and those of a batch's elements in every batch.
@lru_cache(maxsize=16384)
def _phone_key(key: str) -> bool:
    lowered = key.lower()
    return bool(_PHONE_WORD.search(lowered) or _PHONE_LAST.search("." + lowered))

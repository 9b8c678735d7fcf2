import re
from collections.abc import Iterator

from stdnum import luhn

from ..fields import Field
from .base import Detector, Finding, run_table, runs_of

# 13 to 19 digits, optionally grouped by spaces or dashes as people type them; a run of
# digits inside a hex token (`9a41374162484541f`) is not a number of its own.
_CARD = re.compile(r"(?<![0-9A-Za-z.])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z.])")
_CARD_RUN = run_table("0123456789", " -")  # what _CARD matches: 13 digits at least
# Issuer prefixes and lengths (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay):
# a Luhn check alone passes one random number in ten, timestamps and order ids included.
_ISSUERS = re.compile(r"4\d{12}(\d{3}){0,2}|5[1-5]\d{14}|2(2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}"
                      r"|3[47]\d{13}|6(011|5\d\d|4[4-9]\d)\d{12,15}|3(0[0-5]|[689]\d)\d{11}"
                      r"|35(2[89]|[3-8]\d)\d{12,15}|62\d{14,17}")
# A truncated number, as receipts and payment APIs show it: masked (`424242******4242`,
# `XXXX-XXXX-XXXX-4242`, `************0005`) or in words ("card ending 0005", "Visa ending in
# 4242"). It is purchase data, not a card number (SPEC 3.5): no one can pay with it.
_MASKED = re.compile(r"(?<![0-9A-Za-z])\d{0,6}(?:[ -]?[*xX\u2022]){4,12}[ -]?(\d{4})"
                     r"(?![0-9A-Za-z])")
_ENDING = re.compile(r"\b(?:card|visa|mastercard|amex|discover|cb)\b[^0-9\n]{0,24}?\bending"
                     r"(?:\s+(?:in|with))?\s*[:#]?\s*(\d{4})\b", re.I)

# What each pattern cannot match without, in the text lowered: a `*` or `•`, or two x's side
# by side (or one apart); the word "ending".
_NEEDED = {_MASKED: ("*", "\u2022", "xx", "x x", "x-x"), _ENDING: ("ending",)}


class CardDetector(Detector):
    id = "payment_card"
    category = "payment_card"
    # 13 digits or more, one separator at most between two, to where that run ends: a phone
    # number (`+33 6 12 34 56 78`) is no hit, where a run of digits and separators was.
    hint = (r"[0-9](?:[ -]?[0-9]){12,}(?:[^0-9 -]|[ -][^0-9])"
            r"|[*xX][ -]?[*xX][ -]?[*xX][ -]?[*xX]|[Ee][Nn][Dd][Ii][Nn][Gg]")

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value
        for start, end in runs_of(value, _CARD_RUN, 13):
            for match in _CARD.finditer(value, start, end):
                digits = match.group().replace(" ", "").replace("-", "")
                if (_ISSUERS.fullmatch(digits) and luhn.is_valid(digits)
                        and not _hex_of_digits(digits)):
                    yield Finding(self.id, self.category, field, match.group(), digits)
        lowered = value.lower()
        for pattern, needs in _NEEDED.items():
            # each only where the text it needs is (a C substring search): a long log that
            # holds neither costs the two patterns' scans of every position, 50 ms a MB
            if not any(text in lowered for text in needs):
                continue
            for match in pattern.finditer(value):
                yield Finding(self.id, "purchase", field, match.group(),
                              f"purchase:card ending {match.group(1)}", "truncated card")


def _hex_of_digits(digits: str) -> bool:
    """`39373137363731` is hex for the text `9717671`: an encoded number, not a card."""
    return len(digits) % 2 == 0 and all(digits[i] == "3" for i in range(0, len(digits), 2))

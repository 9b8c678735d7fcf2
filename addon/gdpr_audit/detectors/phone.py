import re
from collections.abc import Iterator
from functools import lru_cache

import phonenumbers

from ..fields import Field
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
        # The cheap test first: _DIGITS takes 3 us on a UUID, of which a batch has thousands.
        if (region is None and "+" not in value) or not _DIGITS.search(value):
            return
        if _WHOLE_INTERNATIONAL.fullmatch(value):
            try:
                number = phonenumbers.parse(value, region or "ZZ")
            except phonenumbers.NumberParseException:
                number = None
            if number is not None and phonenumbers.is_valid_number(number):
                e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                yield Finding(self.id, self.category, field, value, e164)
                return
        for match in phonenumbers.PhoneNumberMatcher(value, region or "ZZ",
                                                      leniency=phonenumbers.Leniency.VALID):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            yield Finding(self.id, self.category, field, match.raw_string, e164)

    def key_class(self, key: str) -> bool:
        """Whether the key is a phone's."""
        return _phone_key(key)


# The same keys come back in every flow, and those of a batch's elements in every batch.
@lru_cache(maxsize=16384)
def _phone_key(key: str) -> bool:
    lowered = key.lower()
    return bool(_PHONE_WORD.search(lowered) or _PHONE_LAST.search("." + lowered))

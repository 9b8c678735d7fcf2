import re
from collections.abc import Iterator

from stdnum import iban

from ..fields import Field
from .base import Detector, Finding

# Country code, check digits, then the BBAN: compact or in groups of four as printed.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")


class IbanDetector(Detector):
    """Only IBANs whose mod-97 checksum holds are reported."""

    id = "iban"
    category = "iban"
    # No country's IBAN is shorter than 15 characters (Norway's): stdnum fails the rest.
    hint = r"[A-Za-z]{2}[0-9]{2}[ A-Za-z0-9]{11,}[^ A-Za-z0-9]"

    def find(self, field: Field) -> Iterator[Finding]:
        for match in _IBAN.finditer(field.value.upper()):
            compact = match.group().replace(" ", "")
            # Mod-97 and the registry's BBAN format decide; a national check digit inside the
            # BBAN (Spain's) that fails still leaves an account number of a person.
            if iban.is_valid(compact, check_country=False):
                yield Finding(self.id, self.category, field, match.group(), compact)

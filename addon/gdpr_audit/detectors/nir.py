import re
from collections.abc import Iterator

from stdnum.fr import nir

from ..fields import Field
from .base import SPACE, Detector, Finding, run_table, runs_of

# Sex, year, month, department (2A/2B for Corsica), commune, order number, key: 15 characters,
# often printed in groups.
_NIR = re.compile(r"(?<![\dA-Z])[1-478]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2[AB])\s?\d{3}\s?\d{3}\s?\d{2}(?![\d])", re.I)
# What _NIR matches in ASCII text (where \\s is these), 15 characters at least.
_NIR_RUN = run_table("0123456789ABab \t\n\v\f\r\x1c\x1d\x1e\x1f")


class NirDetector(Detector):
    """French social security number (NIR); only values whose key checks are reported."""

    id = "fr_nir"
    category = "national_id"
    # 15 digits (or A, B) or more, one whitespace at most between two, to where that run ends.
    hint = rf"[0-9](?:[{SPACE}]?[0-9ABab]){{14,}}(?:[^0-9{SPACE}ABab]|[{SPACE}][^0-9ABab])"

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value
        for start, end in runs_of(value, _NIR_RUN, 15):
            for match in _NIR.finditer(value, start, end):
                compact = re.sub(r"\s", "", match.group()).upper()
                if nir.is_valid(compact):
                    yield Finding(self.id, self.category, field, match.group(), compact)

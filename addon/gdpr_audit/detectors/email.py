import re
from collections.abc import Iterator

from ..fields import Field
from .base import Detector, Finding

# Practical addresses, not RFC 5322: quoted local parts and IP literals don't occur in traffic.
# Not glued to another '@' either: `effcl@0.totcl@0.clicks@0` in ad cookies is no address.
EMAIL = re.compile(r"(?<![\w.+@-])[A-Za-z0-9._%+-]{1,64}@"
                   r"(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w@-])")
# Retina asset names (`logo@2x.png`) end in a file extension, never in one of these TLDs.
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "css", "js"})


class EmailDetector(Detector):
    id = "email"
    category = "email"
    hint = "@"

    def find(self, field: Field) -> Iterator[Finding]:
        if "@" not in field.value:
            return
        for match in EMAIL.finditer(field.value):
            address = match.group()
            domain = address.rsplit("@", 1)[1].lower()
            if domain.rsplit(".", 1)[1] in _FILE_SUFFIXES:
                continue
            # The controller's own addresses (support@, noreply@) are not about a customer.
            if any(domain == d or domain.endswith("." + d) for d in self.own_domains):
                continue
            yield Finding(self.id, self.category, field, address, address.lower())

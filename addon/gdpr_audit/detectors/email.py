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

    def __init__(self, region: str = "FR", own_domains: tuple[str, ...] = ()) -> None:
        super().__init__(region, own_domains)
        self._own_endings = tuple(f"{s}{d}" for d in own_domains for s in ("@", "."))

    def find(self, field: Field) -> Iterator[Finding]:
        if "@" not in field.value:
            return
        for match in EMAIL.finditer(field.value):
            address = match.group()
            domain = address[address.rindex("@"):].lower()  # with its '@'
            if domain[domain.rindex(".") + 1:] in _FILE_SUFFIXES:
                continue
            # The controller's own addresses (support@, noreply@) are not about a customer:
            # its domains or their subdomains (one C call: a mailing list has an address a line).
            if self.own_domains and domain.endswith(self._own_endings):
                continue
            yield Finding(self.id, self.category, field, address, address.lower())

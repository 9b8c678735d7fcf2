import ipaddress
import re
from collections.abc import Iterator
from functools import lru_cache

from ..fields import Field
from .base import Detector, Finding

_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
# Keys and headers that hold a client's address; elsewhere only a value that is exactly an
# address counts, since dotted version numbers look like IPv4 addresses.
_IP_KEY = re.compile(r"(^|[._\[-])(ip|ip_?address|client_?ip|remote_?addr|user_?ip|uip)\]?$|"
                     r"^(x-forwarded-for|x-real-ip|forwarded|cf-connecting-ip|true-client-ip)$", re.I)
# Keys of software versions, whose dotted values (`1.2.3.4`) are not addresses.
_VERSION_KEY = re.compile(r"(^|[._\[-])(v|ver|\w*version|build|release)\]?$", re.I)
_LONGEST_KEY = 64
# What ipaddress.ip_address could read (after `for=` and quotes): a cheap test first, since
# most dotted values (hosts, file names, prices) are not addresses and raising costs.
_ADDRESS_SHAPE = re.compile(r'(?:for=)?"?[0-9A-Fa-f:.]+(?:%[^"]*)?"?')
# RFC 7239 quotes and brackets IPv6 addresses, with an optional port: for="[2001:db8::17]:4711"
_BRACKETED = re.compile(r'^(?:for=)?"?\[([0-9a-fA-F:.]+)\]')


class IpAddressDetector(Detector):
    id = "ip_address"
    reads_key = True
    category = "ip_address"
    # An IPv4 address is four numbers and three points. Any IPv6 one but `::` (which is
    # never reported) has a hex digit, then two colons with only hex digits between them;
    # or it opens with `::` and a hex digit. A bare `[.:]` hit every sentence of a text,
    # 18,000 times a MB; a hex digit beside a colon, every time of day 4 times (`10:23:45`).
    hint = ("[0-9][.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]"
            "|[0-9A-Fa-f]:[0-9A-Fa-f]*:|::[0-9A-Fa-f]")

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value.strip()
        if "." not in value and ":" not in value:  # no address is written without them
            return
        ip_key, version_key = self.key_class(field.key)
        if ip_key:
            candidates = [m.group() for m in _IPV4.finditer(value)]
            candidates += [_unbracket(t.strip()) for t in re.split(r"[,;]", value) if ":" in t]
        elif (("." in value or ":" in value) and len(value) <= 45
              and _ADDRESS_SHAPE.fullmatch(value) and not version_key):
            candidates = [value]
        else:
            return
        for text in candidates:
            try:
                address = ipaddress.ip_address(text.removeprefix("for=").strip('"'))
            except ValueError:
                continue
            if not (address.is_loopback or address.is_unspecified or address.is_multicast
                    or address.is_link_local):
                yield Finding(self.id, self.category, field, text, str(address))

    def key_class(self, key: str) -> tuple[bool, bool]:
        """Whether the key names a client's address, and whether it names a version."""
        return _key_kinds(key[-_LONGEST_KEY:])  # both patterns look at the end: keep them linear


def _unbracket(text: str) -> str:
    bracketed = _BRACKETED.match(text)
    return bracketed.group(1) if bracketed else text.strip(" []\"")


@lru_cache(maxsize=4096)  # the same keys come back in every flow
def _key_kinds(leaf: str) -> tuple[bool, bool]:
    """Whether the key names a client's address, and whether it names a version."""
    return bool(_IP_KEY.search(leaf)), bool(_VERSION_KEY.search(leaf))

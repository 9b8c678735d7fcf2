import re
from collections.abc import Iterator

from ..fields import Field
from .base import Detector, Finding

# A link that opens a person's account by itself: its path or query says what it is for
# (reset, magic login, verify...), and a token of 16 or more characters rides in it.
_LINK = re.compile(
    r"https?://[^\s\"'<>]*?(?:reset|forgot|recover|magic|passwordless|login|log-in|signin|"
    r"sign-in|verify|verification|confirm|activate|invite|one-time|otp)[^\s\"'<>]*", re.I)
_RANDOM = re.compile(r"[0-9].*[A-Za-z]|[A-Za-z].*[0-9]")  # a token mixes; words do not
_FILE = re.compile(r"\.(?:m?js|css|html?|png|jpe?g|gif|svg|webp|ico|woff2?|json|xml|pdf)$", re.I)
# A token is URL-safe as it is (base64url, hex, a JWT's parts): an encoded `%40` is an email.
_TOKEN = re.compile(r"(?:[?&#/=.])([A-Za-z0-9_~-]{16,})(?=$|[&#/?.\s\"'<>])")


class AccountLinkDetector(Detector):
    """A password-reset, magic-login or verification link is a person's credential (SPEC 3.5):
    whoever holds it gets into their account. Only the token in it is reported."""

    id = "account_link"
    category = "credentials"
    hint = (r"[hH][tT][tT][pP][^\x00]{0,300}(?:[rR][eE][sS][eE][tT]|[mM][aA][gG][iI][cC]|"
            r"[lL][oO][gG]-?[iI][nN]|[sS][iI][gG][nN]-?[iI][nN]|[vV][eE][rR][iI][fF]|"
            r"[cC][oO][nN][fF][iI][rR][mM]|[aA][cC][tT][iI][vV][aA][tT][eE]|"
            r"[iI][nN][vV][iI][tT][eE]|[fF][oO][rR][gG][oO][tT]|[rR][eE][cC][oO][vV][eE][rR]|"
            r"[oO][tT][pP])")

    def find(self, field: Field) -> Iterator[Finding]:
        for link in _LINK.finditer(field.value):
            tokens = [t for t in _TOKEN.findall(link.group()) if _RANDOM.search(t)
                      and not _FILE.search(t)]
            if tokens:
                token = max(tokens, key=len)
                yield Finding(self.id, self.category, field, token, token, "account link")

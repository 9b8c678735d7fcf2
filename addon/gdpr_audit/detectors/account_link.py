import re
from collections.abc import Iterator

from ..fields import Field
from .base import Detector, Finding

# A link that opens a person's account by itself: its path or query says what it is for
# (reset, magic login, verify...), and a token of 16 or more characters rides in it.
_WORDS = ("reset", "forgot", "recover", "magic", "passwordless", "login", "log-in", "signin",
          "sign-in", "verif", "confirm", "activate", "invite", "one-time", "otp")
_URL_CHARS = "[^\\s\"'<>]"
_LINK = re.compile(f"https?://{_URL_CHARS}*?(?:{'|'.join(_WORDS)}){_URL_CHARS}*", re.I)
_RANDOM = re.compile(r"[0-9].*[A-Za-z]|[A-Za-z].*[0-9]")  # a token mixes; words do not
_FILE = re.compile(r"\.(?:m?js|css|html?|png|jpe?g|gif|svg|webp|ico|woff2?|json|xml|pdf)\b", re.I)
# A token is URL-safe as it is (base64url, hex, a JWT's parts): an encoded `%40` is an email.
_TOKEN = re.compile(r"(?:[?&#/=.])([A-Za-z0-9_~-]{16,})(?=$|[&#/?.\s\"'<>])")


def _caseless(word: str) -> str:
    """Hyperscan's spelling of `word` in any case (the screen's patterns take no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


class AccountLinkDetector(Detector):
    """A password-reset, magic-login or verification link is a person's credential (SPEC 3.5):
    whoever holds it gets into their account. Only the token in it is reported."""

    id = "account_link"
    category = "credentials"
    # every value find() reports on: `http`, then the link's characters, then one of the words
    hint = (f"{_caseless('http')}[^\\x00\\s\"'<>]*(?:{'|'.join(map(_caseless, _WORDS))})")

    def find(self, field: Field) -> Iterator[Finding]:
        for link in _LINK.finditer(field.value):
            text = link.group()
            # a token mixes letters and digits, and is no file's name (`logo-v2a1b2c3d4.png`)
            tokens = [m.group(1) for m in _TOKEN.finditer(text) if _RANDOM.search(m.group(1))
                      and not _FILE.match(text, m.end(1))]
            if tokens:
                token = max(tokens, key=len)
                yield Finding(self.id, self.category, field, token, token, "account link")

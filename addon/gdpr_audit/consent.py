"""Consent signals carried by the traffic itself, mapped onto the policy's purposes (SPEC 3.3, 3.7).

Read: IAB TCF v2.x strings (`euconsent-v2` cookie, `gdpr_consent` parameter, Cookiebot's
embedded `iab2`), Google Consent Mode (`gcs`, `gcd`), and the OneTrust, Cookiebot, Didomi,
Axeptio and tarteaucitron cookies. Each decodes to named switches (TCF purpose 1, OneTrust
group C0002, ...) that are granted, denied or not set; a mapping per signal family says which
switches each purpose needs. A malformed signal is recorded as such and never counts as
consent. What is recorded in the log is the decoded choice only: no raw cookie value and no
consent, user or device id.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from .fields import Field

Switches = Mapping[str, tuple[str | int, ...]]

# Which of a signal's switches a purpose needs (all of them); the policy's
# consent.signal_purposes replaces a family's mapping as a whole.
DEFAULT_SIGNAL_PURPOSES: Mapping[str, Switches] = {
    # TCF purposes: 1 store/access on a device, 3 create a personalised ads profile,
    # 4 use it to select ads, 8 measure content performance.
    "tcf": {"analytics": (1, 8), "advertising": (1, 3, 4)},
    # Consent Mode v2: ads need both storage and the ad_user_data switch.
    "google_consent_mode": {"analytics": ("analytics_storage",),
                            "advertising": ("ad_storage", "ad_user_data")},
    # OneTrust's default groups: C0002 performance, C0004 targeting.
    "onetrust": {"analytics": ("C0002",), "advertising": ("C0004",)},
    "cookiebot": {"analytics": ("statistics",), "advertising": ("marketing",)},
    # Didomi purpose ids; custom ones carry a random suffix ("analytics-HpBJrrK7"), matched
    # without it. TCF purposes 3 and 4 for advertising.
    "didomi": {"analytics": ("analytics",),
               "advertising": ("create_ads_profile", "select_personalized_ads")},
    # Vendor/service names grouped into categories (see the tables below).
    "axeptio": {"analytics": ("category:analytics",), "advertising": ("category:advertising",)},
    "tarteaucitron": {"analytics": ("category:analytics",),
                      "advertising": ("category:advertising",)},
}

# tarteaucitron service keys by their `type` in tarteaucitron.services.js (tarteaucitronjs
# 1.34.0, MIT): "analytic" and "ads", plus its Consent Mode switches.
_TARTEAUCITRON_CATEGORIES = {
    "analytics": frozenset("""
        actistat adobeanalytics adobeworkspace amplitude analytics atinternet atinternethightrack
        clarity clicky compteur contentsquare crazyegg emolytics etracker eulerian firebase force24
        freshsalescrm gajs gcmanalyticsstorage getplus getquanty gtag hotjar hubspot kameleoon koban
        kompass leadforensicsold leadinfo matomo matomocloud matomoheatmap matomohightrack mautic
        metrica microanalytics microsoftcampaignanalytics mixpanel multiplegtag openwebanalytics
        pardot pianoanalytics piwikpro plausible plezi sharpspring shinystat simpleanalytics
        snapchat statcounter teambrain tiktok twitteruwt usercom userpilot verizondottag
        visualrevenue webmecanik weborama woopra wysistat wysistathightrack xiti xiti_smarttag
        zohopagesense""".split()),
    "advertising": frozenset("""
        activecampaign adform adsense adsenseauto adsensesearch adsensesearchform
        adsensesearchresult aduptech_ads aduptech_conversion aduptech_retargeting affilae amazon
        antvoice bingads cjcom clickdimensions clicmanager criteo criteoonetag datingaffiliation
        datingaffiliationpopup doubleclick equativ eskimi facebookpixel gcmadstorage gcmadsuserdata
        gcmpersonalization goldenbees googleads googleadwordsconversion googleadwordsremarketing
        googlepartners klaviyo kwanko leadforensics linkedininsighttag madmetrics outbrain
        outbrainamplify pinterestpixel piximedia prelinker pubdirecte reddit shareasale skaze teads
        thetradedesk twenga vshop xandr xandrconversion xandrsegment""".split()),
}
# Axeptio vendor names are chosen by each site; these are the common spellings, compared
# lowercased with spaces as underscores.
_AXEPTIO_CATEGORIES = {
    "analytics": frozenset("""
        google_analytics ga4 gtag matomo piwik piwik_pro hotjar amplitude mixpanel clarity
        microsoft_clarity contentsquare plausible at_internet xiti piano_analytics shinystat
        segment heap fullstory crazyegg kameleoon abtasty ab_tasty""".split()),
    "advertising": frozenset("""
        google_ads googleads adwords double_click doubleclick google_conversion_tracking
        facebook_pixel facebook_conversion_tracking meta_pixel snapchat tiktok tiktok_pixel
        twitter twitter_ads linkedin linkedin_insight criteo taboola outbrain bing_ads
        microsoft_ads pinterest pinterest_tag ide""".split()),
}
_LABELS = {"tcf": "TCF", "google_consent_mode": "Consent Mode", "onetrust": "OneTrust group",
           "cookiebot": "Cookiebot", "didomi": "Didomi", "axeptio": "Axeptio",
           "tarteaucitron": "tarteaucitron"}
MAX_SIGNAL_CHARS = 50_000
"""Longer values are not consent signals anyone sends: refused before decoding."""


class MalformedSignal(ValueError):
    """A consent signal that does not decode. Messages never quote the value."""


@dataclass(frozen=True)
class Signal:
    family: str
    states: Mapping[str, bool]
    """Switch -> granted (True) or denied (False); a switch that is absent is not set."""
    record: Mapping[str, Any]
    """The decoded choice for the log: no raw value, no identifier."""
    lookup: Callable[[str], bool | None] | None = None

    def state(self, switch: str) -> bool | None:
        if self.lookup is not None:
            return self.lookup(switch)
        return self.states.get(switch)

    def describe(self, switch: str, granted: bool) -> str:
        if self.family == "tcf":
            what = f"vendor {switch[7:]}" if switch.startswith("vendor:") else f"purpose {switch}"
            return f"TCF {what} {'consented' if granted else 'not consented'}"
        if switch.startswith("category:"):
            switch = f"{switch[9:]} vendors"
        return f"{_LABELS[self.family]} {switch} {'granted' if granted else 'denied'}"


class SignalDecisions(dict[str, bool]):
    """Purpose -> granted, for every purpose the flow's signals decide; `reasons` says which
    signal decided each one, e.g. "TCF purpose 1 not consented"."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[str, str] = {}
        self.malformed: list[str] = []
        """Families whose signal was present but did not decode (and so decided nothing)."""


@dataclass
class ConsentReading:
    decisions: SignalDecisions = field(default_factory=SignalDecisions)
    record: dict[str, Any] = field(default_factory=dict)
    """What the log keeps: family -> decoded signal(s), plus `malformed` families."""


# --- IAB TCF v2 -----------------------------------------------------------------------------

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTETS = {ch: format(i, "06b") for i, ch in enumerate(_B64URL_ALPHABET)}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_SEGMENT_NAMES = {1: "disclosed_vendors", 2: "allowed_vendors", 3: "publisher_tc"}


class _Bits:
    """A base64url segment read as a bit string, field by field; reading past its end is
    an error (a truncated string must not decode to "no consent" by zero-filling)."""

    def __init__(self, segment: str, name: str) -> None:
        if not _SEGMENT.fullmatch(segment):
            raise MalformedSignal(f"{name} segment is not base64url")
        self.bits = "".join(_SEXTETS[ch] for ch in segment.rstrip("="))
        self.name = name
        self.pos = 0

    def read(self, width: int) -> int:
        if self.pos + width > len(self.bits):
            raise MalformedSignal(f"{self.name} segment truncated: {width} bits needed at bit "
                                  f"{self.pos}, {len(self.bits) - self.pos} left")
        value = int(self.bits[self.pos:self.pos + width] or "0", 2)
        self.pos += width
        return value

    def flags(self, width: int) -> list[int]:
        """1-based numbers of the bits set among the next `width`."""
        start = self.pos
        self.read(width)
        return [i + 1 for i, bit in enumerate(self.bits[start:start + width]) if bit == "1"]

    def letters(self) -> str:
        return "".join(chr(ord("A") + self.read(6)) for _ in range(2))

    def ranges(self, max_id: int | None = None) -> list[int]:
        ids: set[int] = set()
        for _ in range(self.read(12)):
            is_range = self.read(1)
            start = self.read(16)
            end = self.read(16) if is_range else start
            if start < 1 or end < start or (max_id is not None and end > max_id):
                raise MalformedSignal(f"{self.name} segment: vendor range {start}-{end} is "
                                      f"outside 1-{max_id if max_id is not None else 65535}")
            ids.update(range(start, end + 1))
        return sorted(ids)

    def vendors(self) -> tuple[int, list[int]]:
        max_id = self.read(16)
        return max_id, (self.ranges(max_id) if self.read(1) else self.flags(max_id))


def _tcf_date(deciseconds: int) -> str:
    return datetime.fromtimestamp(deciseconds / 10, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def decode_tc_string(text: str) -> dict[str, Any]:
    """Every field of a TCF v2.x TC string; MalformedSignal for anything else (bad
    base64url, a truncated field, an unknown or repeated segment, another version)."""
    if not text or len(text) > MAX_SIGNAL_CHARS:
        raise MalformedSignal("empty TC string" if not text else "TC string too long")
    segments = text.split(".")
    core = _Bits(segments[0], "core")
    version = core.read(6)
    if version != 2:
        raise MalformedSignal(f"TCF version {version} is not supported (v2.x only)"
                              if version != 1 else "TCF v1 string: not supported (v2.x only)")
    out: dict[str, Any] = {"version": version, "created": _tcf_date(core.read(36)),
                           "last_updated": _tcf_date(core.read(36)),
                           "cmp_id": core.read(12), "cmp_version": core.read(12),
                           "consent_screen": core.read(6), "consent_language": core.letters(),
                           "vendor_list_version": core.read(12),
                           "tcf_policy_version": core.read(6),
                           "is_service_specific": bool(core.read(1)),
                           "use_non_standard_stacks": bool(core.read(1)),
                           "special_features_opt_in": core.flags(12),
                           "purpose_consents": core.flags(24),
                           "purpose_legitimate_interests": core.flags(24),
                           "purpose_one_treatment": bool(core.read(1)),
                           "publisher_country_code": core.letters()}
    out["max_vendor_id_consent"], out["vendor_consents"] = core.vendors()
    out["max_vendor_id_legitimate_interest"], out["vendor_legitimate_interests"] = core.vendors()
    restrictions: dict[str, dict[str, list[int]]] = {}
    for _ in range(core.read(12)):
        purpose, kind = str(core.read(6)), str(core.read(2))
        vendors = restrictions.setdefault(purpose, {}).setdefault(kind, [])
        vendors[:] = sorted(set(vendors) | set(core.ranges()))
    out["publisher_restrictions"] = restrictions
    out["publisher_tc"] = None
    seen: set[int] = set()
    for index, segment in enumerate(segments[1:], start=2):
        bits = _Bits(segment, f"segment {index}")
        kind = bits.read(3)
        if kind not in _SEGMENT_NAMES:
            raise MalformedSignal(f"segment {index} has unknown type {kind}")
        if kind in seen:
            raise MalformedSignal(f"segment type {kind} ({_SEGMENT_NAMES[kind]}) appears twice")
        seen.add(kind)
        if kind == 3:
            consents, interests = bits.flags(24), bits.flags(24)
            custom = bits.read(6)
            out["publisher_tc"] = {"purpose_consents": consents,
                                   "purpose_legitimate_interests": interests,
                                   "custom_purpose_consents": bits.flags(custom),
                                   "custom_purpose_legitimate_interests": bits.flags(custom)}
        else:
            out[_SEGMENT_NAMES[kind]] = bits.vendors()[1]
    return out


def _id_ranges(ids: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3,5": vendor lists stay short in the log."""
    runs: list[list[int]] = []
    for n in ids:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _tcf_signal(text: str, where: str) -> Signal:
    tc = decode_tc_string(text)
    purposes, vendors = set(tc["purpose_consents"]), set(tc["vendor_consents"])

    def lookup(switch: str) -> bool | None:
        number = switch[7:] if switch.startswith("vendor:") else switch
        if not number.isdigit():
            return None
        return int(number) in (vendors if switch.startswith("vendor:") else purposes)

    record = {"from": where, **{k: tc[k] for k in (
        "version", "created", "last_updated", "cmp_id", "cmp_version", "consent_language",
        "vendor_list_version", "tcf_policy_version", "purpose_consents",
        "purpose_legitimate_interests", "special_features_opt_in")},
        "vendor_consents": _id_ranges(tc["vendor_consents"]),
        "vendor_legitimate_interests": _id_ranges(tc["vendor_legitimate_interests"])}
    if tc["publisher_tc"] is not None:
        record["publisher_tc"] = tc["publisher_tc"]
    return Signal("tcf", {}, record, lookup)


# --- Google Consent Mode ----------------------------------------------------------------------

# G1 + ad_storage + analytics_storage, each 1 (granted), 0 (denied) or - (not set).
_GCS = re.compile(r"G1([01-])([01-])")
# Two digits, then a state letter and a digit for each of the four signals (more may follow).
_GCD = re.compile(r"[0-9]{2}(?:[0-9A-Za-z_-][0-9]){4,}")
_GCD_SIGNALS = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")
_GCD_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
_GCD_STATES = {1: "not_set", 2: "denied", 3: "granted"}


def decode_gcs(value: str) -> dict[str, str]:
    match = _GCS.fullmatch(value.strip())
    if not match:
        raise MalformedSignal("gcs is not G1 followed by two of 0, 1, -")
    names = {"1": "granted", "0": "denied", "-": "not_set"}
    return {"ad_storage": names[match.group(1)], "analytics_storage": names[match.group(2)]}


def decode_gcd(value: str) -> dict[str, dict[str, str]]:
    """The letter rule (vectors README): a letter's index in 0-9a-zA-Z-_, bits 3-2 the
    default state, bits 1-0 the update state; 1 not set, 2 denied, 3 granted."""
    value = value.strip()
    if not _GCD.fullmatch(value):
        raise MalformedSignal("gcd is not two digits and four letter-digit pairs")
    out = {}
    for name, letter in zip(_GCD_SIGNALS, value[2:10:2], strict=True):
        index = _GCD_ALPHABET.index(letter)
        out[name] = {"default": _GCD_STATES.get((index >> 2) & 3, "not_set"),
                     "update": _GCD_STATES.get(index & 3, "not_set")}
    return out


def _gcm_signal(param: str, value: str) -> Signal:
    if param == "gcs":
        decoded: dict[str, Any] = decode_gcs(value)
        states = {k: v == "granted" for k, v in decoded.items() if v != "not_set"}
    else:
        decoded = decode_gcd(value)
        states = {}
        for name, both in decoded.items():
            if both["update"] != "not_set":
                states[name] = both["update"] == "granted"
            elif both["default"] == "denied":
                states[name] = False
            # granted by default only: the site's setting, not the person's choice
    return Signal("google_consent_mode", states, {param: decoded})


# --- CMP cookies ------------------------------------------------------------------------------

_ONETRUST_GROUP = re.compile(r"([^:,]+):([01])")


def decode_onetrust(value: str) -> dict[str, Any]:
    params = dict(parse_qsl(value, keep_blank_values=True))
    if "groups" not in params:
        raise MalformedSignal("OptanonConsent has no groups")
    groups = {}
    for entry in filter(None, params["groups"].split(",")):
        match = _ONETRUST_GROUP.fullmatch(entry.strip())
        if not match:
            raise MalformedSignal("OptanonConsent groups entry is not <id>:<0|1>")
        groups[match.group(1)] = int(match.group(2))
    out: dict[str, Any] = {"groups": groups}
    if params.get("genVendors"):
        out["gen_vendors"] = {k: int(v) for k, v in _ONETRUST_GROUP.findall(params["genVendors"])}
    for key, name in (("version", "version"), ("isGpcEnabled", "gpc"),
                      ("interactionCount", "interaction_count")):
        if key in params:
            out[name] = params[key]
    return out


def _onetrust_signal(value: str) -> Signal:
    decoded = decode_onetrust(value)
    # No interaction yet: the groups are the site's defaults, not the person's choice.
    untouched = decoded.get("interaction_count") == "0"
    states = {g: bool(v) for g, v in decoded["groups"].items() if not (v and untouched)}
    return Signal("onetrust", states, decoded)


_COOKIEBOT_ENTRY = re.compile(r"[\s+]*(\w+)\s*:\s*('[^']*'|[^,]*)")
_COOKIEBOT_KEPT = ("necessary", "preferences", "statistics", "marketing", "method", "ver",
                   "region")


def decode_cookiebot(value: str) -> dict[str, Any]:
    text = unquote(value).strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise MalformedSignal("CookieConsent is not a {key:value,...} object")
    out: dict[str, Any] = {}
    for entry in filter(str.strip, text[1:-1].split(",")):
        match = _COOKIEBOT_ENTRY.fullmatch(entry)
        if not match:
            raise MalformedSignal("CookieConsent entry is not key:value")
        key, raw = match.groups()
        raw = raw.strip()
        out[key] = (raw[1:-1] if raw.startswith("'") else raw == "true" if raw in ("true", "false")
                    else int(raw) if raw.isdigit() else raw)
    if not all(isinstance(out.get(k), bool) for k in ("necessary", "statistics", "marketing")):
        raise MalformedSignal("CookieConsent lacks the necessary/statistics/marketing booleans")
    return out


def _cookiebot_signals(value: str) -> list[Signal]:
    decoded = decode_cookiebot(value)
    implied = decoded.get("method") == "implied"  # no user action: not consent (Art. 4(11))
    states = {k: v for k, v in decoded.items()
              if k in ("necessary", "preferences", "statistics", "marketing")
              and isinstance(v, bool) and not (v and implied)}
    kept = {k: decoded[k] for k in _COOKIEBOT_KEPT if k in decoded}
    signals = [Signal("cookiebot", states, kept)]
    if isinstance(decoded.get("iab2"), str) and decoded["iab2"]:
        signals.append(_tcf_signal(decoded["iab2"], "cookie CookieConsent.iab2"))
    return signals


_DIDOMI_SUFFIX = re.compile(r"-[A-Za-z0-9]{8}$")


def decode_didomi(value: str) -> dict[str, Any]:
    text = unquote(value).strip()
    try:
        document = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_",
                                               validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise MalformedSignal("didomi_token is not base64 JSON") from None
    if not isinstance(document, dict):
        raise MalformedSignal("didomi_token is not a JSON object")
    out: dict[str, Any] = {"version": document.get("version")}
    for section in ("purposes", "vendors", "purposes_li", "vendors_li"):
        for state in ("enabled", "disabled"):
            items = (document.get(section) or {}).get(state, [])
            if not isinstance(items, list):
                raise MalformedSignal(f"didomi_token {section}.{state} is not a list")
            if items:
                out[f"{section}_{state}"] = [str(i) for i in items]
    return out


def _didomi_signal(value: str) -> Signal:
    decoded = decode_didomi(value)
    states: dict[str, bool] = {}
    for section, prefix in (("purposes", ""), ("vendors", "vendor:")):
        for state in ("enabled", "disabled"):
            for item in decoded.get(f"{section}_{state}", []):
                for name in {item, _DIDOMI_SUFFIX.sub("", item)}:
                    key = prefix + name
                    states[key] = states.get(key, True) and state == "enabled"
    return Signal("didomi", states, decoded)


def _axeptio_names(text: str) -> list[str]:
    return [n for n in unquote(text).split(",") if n]


def _category_states(states: dict[str, bool | None],
                     categories: Mapping[str, frozenset[str]]) -> dict[str, bool]:
    """A category is denied if any of its members present is, granted if all present are."""
    out = {}
    for category, members in categories.items():
        present = [v for k, v in states.items() if k.lower().replace(" ", "_") in members]
        if any(v is False for v in present):
            out[f"category:{category}"] = False
        elif present and all(v is True for v in present):
            out[f"category:{category}"] = True
    return out


def decode_axeptio(cookies: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "axeptio_cookies" in cookies:
        try:
            document = json.loads(unquote(cookies["axeptio_cookies"]))
        except (ValueError, RecursionError):
            raise MalformedSignal("axeptio_cookies is not JSON") from None
        if not isinstance(document, dict):
            raise MalformedSignal("axeptio_cookies is not a JSON object")
        out["completed"] = document.get("$$completed") is True
        out["per_vendor"] = {k: v for k, v in document.items()
                             if not k.startswith("$$") and isinstance(v, bool)}
    if "axeptio_authorized_vendors" in cookies:
        out["authorized_vendors"] = _axeptio_names(cookies["axeptio_authorized_vendors"])
    if "axeptio_all_vendors" in cookies:
        out["all_vendors"] = _axeptio_names(cookies["axeptio_all_vendors"])
        authorized = set(out.get("authorized_vendors", []))
        out["refused_vendors"] = [v for v in out["all_vendors"] if v not in authorized]
    return out


def _axeptio_signal(cookies: Mapping[str, str]) -> Signal:
    decoded = decode_axeptio(cookies)
    states: dict[str, bool | None] = {}
    for name in decoded.get("all_vendors", []):
        states[name] = name in decoded.get("authorized_vendors", [])
    for name, granted in decoded.get("per_vendor", {}).items():
        states[name] = states.get(name, True) and granted
    if decoded.get("completed") is False:  # no choice made yet: nothing is granted
        states = {k: None if v else v for k, v in states.items()}
    switches = {k: v for k, v in states.items() if v is not None}
    switches.update(_category_states(states, _AXEPTIO_CATEGORIES))
    return Signal("axeptio", switches, decoded)


_TARTEAUCITRON_ENTRY = re.compile(r"([^=!]+)=([^=!]*)")


def decode_tarteaucitron(value: str) -> dict[str, str]:
    """Service key -> true, false or wait; the `id` entry is left out."""
    text = unquote(value).strip()
    if not text.startswith("!"):
        raise MalformedSignal("tarteaucitron cookie does not start with !")
    services = {}
    for entry in filter(None, text[1:].split("!")):
        match = _TARTEAUCITRON_ENTRY.fullmatch(entry)
        if not match:
            raise MalformedSignal("tarteaucitron entry is not service=state")
        if match.group(1) != "id":
            services[match.group(1)] = match.group(2)
    return services


def _tarteaucitron_signal(value: str) -> Signal:
    services = decode_tarteaucitron(value)
    states = {k: {"true": True, "false": False}.get(v) for k, v in services.items()}
    switches = {k: v for k, v in states.items() if v is not None}
    switches.update(_category_states(states, _TARTEAUCITRON_CATEGORIES))
    return Signal("tarteaucitron", switches, {"services": services})


# --- Reading a flow ---------------------------------------------------------------------------

_COOKIE_FAMILIES = {"euconsent-v2": "tcf", "OptanonConsent": "onetrust",
                    "CookieConsent": "cookiebot", "didomi_token": "didomi",
                    "tarteaucitron": "tarteaucitron"}
_PARAM_FAMILIES = {"gdpr_consent": "tcf", "gcs": "google_consent_mode",
                   "gcd": "google_consent_mode"}


def _signals(fields: Iterable[Field]) -> tuple[list[Signal], dict[str, str]]:
    """The flow's signals, and family -> why for those that did not decode."""
    signals: list[Signal] = []
    malformed: dict[str, str] = {}
    axeptio: dict[str, str] = {}
    for item in fields:
        if item.layers:  # only values as sent, not what decoding them revealed
            continue
        family = None
        try:
            if item.location == "cookie" and item.key in _COOKIE_FAMILIES:
                family = _COOKIE_FAMILIES[item.key]
                reader = {"tcf": lambda v: [_tcf_signal(v, "cookie euconsent-v2")],
                          "onetrust": lambda v: [_onetrust_signal(v)],
                          "cookiebot": _cookiebot_signals,
                          "didomi": lambda v: [_didomi_signal(v)],
                          "tarteaucitron": lambda v: [_tarteaucitron_signal(v)]}[family]
                signals += reader(item.value)
            elif item.location == "cookie" and item.key.startswith("axeptio_"):
                axeptio[item.key] = item.value
            elif item.location in ("query", "body") and item.key in _PARAM_FAMILIES:
                family = _PARAM_FAMILIES[item.key]
                if not item.value:
                    continue  # gdpr_consent= with nothing: no signal at all
                if family == "tcf":
                    signals.append(_tcf_signal(item.value, f"{item.location} gdpr_consent"))
                else:
                    signals.append(_gcm_signal(item.key, item.value))
        except MalformedSignal as e:
            malformed.setdefault(family or "axeptio", str(e))
        except Exception:  # noqa: BLE001
            # Whatever a decoder did not foresee on hostile input still only means: not a
            # usable signal (and the flow keeps its findings).
            malformed.setdefault(family or "axeptio", "does not decode")
    if axeptio:
        try:
            signals.append(_axeptio_signal(axeptio))
        except MalformedSignal as e:
            malformed.setdefault("axeptio", str(e))
    return signals, malformed


# Families whose recorded text is all produced by the decoder (numbers, dates, fixed words).
_OWN_TEXT = frozenset({"tcf", "google_consent_mode"})
# Names a CMP cookie may carry (group, purpose, vendor, service ids, versions): anything else,
# an e-mail or a phone number a hostile cookie slipped in, stays out of the log.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_:.\- ]{0,63}|[0-9]{1,5}|[0-9]+(?:\.[0-9]+)+")


def _traffic_names(node: Any) -> Any:
    """`node` with every string that does not look like a CMP's own name left out."""
    if isinstance(node, Mapping):
        return {k: _traffic_names(v) for k, v in node.items()
                if isinstance(k, str) and _NAME.fullmatch(k) and "@" not in k
                and (not isinstance(v, str) or (_NAME.fullmatch(v) and "@" not in v))}
    if isinstance(node, list):
        return [_traffic_names(v) for v in node
                if not isinstance(v, str) or (_NAME.fullmatch(v) and "@" not in v)]
    return node


def read_consent(fields: Iterable[Field], overrides: Mapping[str, Switches]) -> ConsentReading:
    """Decide each purpose from the flow's signals: granted by a signal when every switch it
    maps to is granted, denied when any is denied, and across signals a denial wins."""
    signals, malformed = _signals(fields)
    reading = ConsentReading()
    for signal in signals:
        mapping = overrides.get(signal.family, DEFAULT_SIGNAL_PURPOSES.get(signal.family, {}))
        for purpose, needed in mapping.items():
            states = [(str(s), signal.state(str(s))) for s in needed]
            denied = [s for s, state in states if state is False]
            decisions = reading.decisions
            if denied:
                if decisions.get(purpose) is not False:
                    decisions[purpose] = False
                    decisions.reasons[purpose] = signal.describe(denied[0], False)
            elif states and all(state is True for _, state in states) and purpose not in decisions:
                decisions[purpose] = True
                decisions.reasons[purpose] = signal.describe(
                    ", ".join(s for s, _ in states), True)
        kept = reading.record.setdefault(signal.family, [])
        record = signal.record if signal.family in _OWN_TEXT else _traffic_names(signal.record)
        if record not in kept:
            kept.append(record)
    for family, kept in list(reading.record.items()):
        if len(kept) == 1:
            reading.record[family] = kept[0]
    if malformed:
        reading.decisions.malformed = sorted(malformed)
        reading.record["malformed"] = sorted(malformed)
        reading.record["errors"] = dict(sorted(malformed.items()))
    return reading

"""Personal data known by the key it is sent under, when the value itself has no shape
to recognise (a first name, a street, a cookie id, the page someone viewed)."""

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import NamedTuple

from ..fields import Field
from .base import Detector, Finding
from .cookies import holds_id, tracker_cookie
from .vendor_keys import is_integration_key, is_vendor_key

_KEYS = {
    "name": "firstname fname givenname prenom lastname lname surname familyname nom fullname "
            "displayname customername contactname billingname shippingname middlename nomfamille",
    "postal_address": "address address1 address2 addressline1 addressline2 line1 line2 street "
                      "streetaddress adresse mailingstreet postalcode zip zipcode codepostal "
                      "postcode housenumber streetname billingaddress shippingaddress "
                      "mailingcity mailingpostalcode",
    "birth_date": "birthdate dob dateofbirth birthday datenaissance bday birthyear yob",
    "device_id": "deviceid anonymousid distinctid ga gid fbp fbc cid clientid idfa idfv gaid "
                 "aaid adid ifa advertisingid mobileadid visitorid ajsanonymousid userpseudoid "
                 "sessionuser fbclid gclid gbraid wbraid msclkid ttclid ttp sclid scid "
                 "epik liadid limsclid",
    "behavioural": "page pageurl dl dr dt referrer referer pagelocation pagereferrer pagetitle "
                   "pagepath event ev en eventname eventtype searchterm search action url href "
                   "currenturl screenname q query searchquery keyword keywords searchstring "
                   "ec ea el eventcategory eventaction eventlabel seca seac sela "
                   "customevent",
    "purchase": "orderid transactionid revenue amount totalprice cart basket price items "
                "productid sku quantity ordertotal subtotal total currency coupon contents "
                "contentids numitems orderitems lineitems products cartitems basketitems "
                "checkoutitems "
                "ltv lifetimevalue customerlifetimevalue clv totalspent totalspend amountspent "
                "totalrevenue lastorderdate lastorderid lastordervalue lastorderamount "
                "lastordertotal lastorderat lastpurchasedate lastpurchaseamount ordercount "
                "orderscount totalorders cartvalue carttotal cartamount basketvalue baskettotal "
                "last4 cardlast4 last4digits lastfour cardlastfour cardending maskedpan "
                "maskedcard maskedcardnumber truncatedpan cardmasked panmasked",
    "credentials": "password passwd pwd passphrase passcode pin otp onetimecode "
                   "verificationcode cvv cvc cvc2 securitycode secret totp totpcode mfacode "
                   "twofactorcode otpcode smscode onetimepassword",
    "location": "lat latitude lng lon longitude geo coordinates geolocation gps latlng "
                "accuracy",
}
# Any key that spells out a password (`new_password`, `passwordConfirm`) is a credential.
# A person's reset and magic-login links carry a token of their account (SPEC 3.5).
_PASSWORD = re.compile(r"pass(word|wd|phrase|code)|secret|(reset|magic|recovery)[a-z]*token",
                       re.I)
_CATEGORY_OF_KEY = {key: category for category, keys in _KEYS.items() for key in keys.split()}
# Meta's and TikTok's short keys for hashed user data: they only mean personal data when the
# value is a SHA-256 digest.
_HASHED_KEYS = {"em": "email", "ph": "phone", "fn": "name", "ln": "name", "db": "birth_date",
                "ct": "postal_address", "zp": "postal_address", "st": "postal_address"}
_SHA256 = re.compile(r"[0-9a-f]{64}", re.I)
_PERSON = re.compile(r"(customer|user|contact|member|person|profile|billing|shipping|client|lead)",
                     re.I)
_SEGMENTS = re.compile(r"[.\[\]]+")
_EMPTY = frozenset({"", "true", "false", "null", "none", "undefined", "0"})
# What a person did or bought means something only beside an identifier (audit.CONTEXTUAL);
# these keys are also what SDKs and messaging APIs use for their own things (SPEC 3.5).
_ACTIVITY = frozenset({"behavioural", "purchase"})
# A tracking hit's short parameters (GA's `en`, `dl`, `ec`; Meta's `ev`): an event only as a
# parameter of the hit itself, never nested in an object (`headings.en` is a push's English text).
_HIT_PARAMETERS = frozenset("dl dr dt ev en ec ea el q".split())
# Inside an event, its name and its structured category/action/label (`events[0].name`,
# `event.category`); elsewhere they name a product or a UI string.
_EVENT_PARTS = frozenset("name category action label".split())
_EVENTS = frozenset("event events evt eventdata customevents customevent".split())
# Where an SDK describes itself (Segment's `context.library`, Mixpanel's `$lib`, `mp_lib`,
# `$os`, a user agent, a diagnostics block): its name, version and script URL are the
# vendor's, not what a person did.
_SDK_METADATA = frozenset(
    "library lib libversion libraryname libraryversion mplib sdk sdkname sdkversion "
    "sdkinfo sdkmetadata clientinfo clientlibrary useragent ua uadata os osname "
    "osversion browser browserversion diagnostics diagnostic debug telemetry integrations "
    "plugins plugin framework runtime build appbuild appversion scripturl sdkurl libraryurl "
    "snippet snippetversion".split())
# The message a company sends (a push's title and body, an email's subject and html or text
# body, an SMS's text): the company's own words and links, not the person's behaviour. Seen
# as a key on the way to the value: `html.a@href.page` is a link in the email's html.
_MESSAGE = frozenset(
    "subject html htmlbody htmlcontent htmlpart text textbody textcontent textpart plaintext "
    "content headings subtitle notification notifications pushnotification push apns aps "
    "alert webpush fcmoptions sms smsbody smstext preheader".split())
# The operation an API call names (`action: addObject` of a search index's batch, `upsert`,
# `index`, `action=track`): the integration's verb, not an event of the person's.
_API_VERBS = frozenset(
    "add addforce addobject addobjects saveobject saveobjects updateobject partialupdateobject "
    "partialupdateobjectnocreate deleteobject deleteobjects delete deletebyquery clear "
    "clearobjects upsert insert update create index bulk batch track identify alias group "
    "setonce unset append prepend increment merge replace engage import "
    # product analytics' reserved identity calls (`$set`, `$create_alias`): who, not what
    "set createalias groupidentify mergedangerously".split())
# Markers an SDK sends about itself (`$diagnostic`, a heartbeat, a test event at setup).
_DIAGNOSTIC = re.compile(r"diagnostic|heartbeat|healthcheck|keepalive|selftest|sdkinit"
                         r"|^(ping|debug|test|testevent|noop|warmup|init|initiali[sz]ed?)$")
# A script the page loaded (an SDK's own file on a CDN), not a page the person viewed.
_SCRIPT_URL = re.compile(r"(?:https?:)?//[^\s?#]+\.m?js(?:[?#]\S*)?", re.I)


def _not_an_action(value: str) -> bool:
    """A behavioural value that is the SDK's or the API's own: a verb, a diagnostic marker,
    a script's URL."""
    if len(value) > 64:
        return False
    word = _NOT_ALNUM.sub("", value.lower())  # not _normalised: values are many
    return word in _API_VERBS or bool(_DIAGNOSTIC.search(word)) or bool(
        _SCRIPT_URL.fullmatch(value))


def leaf_key(key: str) -> str:
    """`context.traits.first_name` -> `firstname`; `ud[em]` -> `em`."""
    tail = key[key.rfind(".") + 1:]
    if tail and "[" not in tail and "]" not in tail and not tail.isdigit():
        return _normalised(tail)  # the common case, and the one of every event of a batch
    for part in reversed(_SEGMENTS.split(key)):
        if part and not part.isdigit():
            return _normalised(part)
    return ""


@lru_cache(maxsize=4096)
def _normalised(name: str) -> str:
    return _NOT_ALNUM.sub("", name.lower())


_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@lru_cache(maxsize=4096)
def _category_of_leaf(leaf: str) -> str | None:
    category = _CATEGORY_OF_KEY.get(leaf)
    if is_integration_key(leaf):  # the company's secret, not a person's (vendor_keys.py)
        return None
    return "credentials" if category is None and _PASSWORD.search(leaf) else category


FIELD_NAME = "field name"
"""The form of a finding made from its key alone."""
TRACKER_COOKIE = "tracker cookie"
"""The form of a cookie the Open Cookie Database lists as a tracker's: `tracker cookie (LinkedIn)`."""


class Label(NamedTuple):
    category: str
    form: str


def label_of(location: str, key: str) -> Label | None:
    """What a value under this key is, by the key alone: it is the same for every element of
    an array (`batch[*].sku`), which is how a batch of events is judged once per key."""
    if location in ("header", "path"):
        return None
    leaf = leaf_key(key)
    if leaf in _HASHED_KEYS:  # only a SHA-256 digest under these keys: see finding()
        return Label(_HASHED_KEYS[leaf], f"sha256({_HASHED_KEYS[leaf]})?")
    category = _category_of_leaf(leaf)
    if category is None and leaf == "name" and _PERSON.search(key):
        category = "name"
    if category in _ACTIVITY or (category is None and leaf in _EVENT_PARTS):
        category = _activity_of(key, leaf, category)
    if category is None and location == "cookie":
        # `li_sugr`, `_hjSessionUser_<site>`: named by the vendor, not by what they hold
        cookie = tracker_cookie(key)
        if cookie is not None:
            return Label("device_id", f"{TRACKER_COOKIE} ({cookie.vendor})")
    return Label(category, FIELD_NAME) if category is not None else None


# A product's id names what the person looked at, unless it sits in an order or a basket.
_PRODUCT = frozenset({"productid", "sku", "contentids"})
_ORDER = frozenset("order orders cart carts basket baskets checkout purchase purchases "
                   "transaction transactions lineitems orderitems cartitems items products "
                   "contents".split())


@lru_cache(maxsize=4096)
def _activity_of(key: str, leaf: str, category: str | None) -> str | None:
    """What a behavioural or purchase key (or an event's part) means where it sits: nothing
    under an SDK's metadata or in a message the company sends, a hit's short parameter only
    at the top (an array of hits is still the top), `name`/`action` as an event's only in one."""
    parents = [part for part in map(_normalised, _SEGMENTS.split(key)) if part and part != "*"
               and not part.isdigit()][:-1]
    if leaf in _SDK_METADATA or not _SDK_METADATA.isdisjoint(parents):
        return None
    if leaf in _MESSAGE or not _MESSAGE.isdisjoint(parents):
        return None
    if leaf in _HIT_PARAMETERS and parents:
        return None
    if leaf in _EVENT_PARTS and category is None:
        return "behavioural" if parents and parents[-1] in _EVENTS else None
    if leaf in _PRODUCT and _ORDER.isdisjoint(parents):
        return "behavioural"  # a product viewed or searched for; in an order or basket, bought
    return category


class FieldNameDetector(Detector):
    id = "field_name"
    reads_key = True
    category = "name"  # the most common; each finding carries its own category

    def find(self, field: Field) -> Iterator[Finding]:
        found = self.finding(field, label_of(field.location, field.key))
        if found is not None:
            yield found

    def finding(self, field: Field, label: Label | None) -> Finding | None:
        """What `field` holds under its key's label (label_of), if it holds anything."""
        if label is None or not self.holds(field.value, label):
            return None
        value = field.value.strip()
        if label.category == "credentials" and is_vendor_key(value):
            return None  # a vendor's API key, even as an SMTP `password`: see vendor_keys.py
        return Finding(self.id, label.category, field, value, f"{label.category}:{value.lower()}",
                       label.form)

    @staticmethod
    def holds(value: str, label: Label) -> bool:
        """Whether a value under a key of this label is personal data: not empty, a
        SHA-256 digest under the hashed-data keys, an id (not a flag) in a tracker cookie."""
        value = value.strip()
        if label.form.startswith(TRACKER_COOKIE):
            return holds_id(value)
        if label.category == "behavioural" and _not_an_action(value):
            return False
        return value.lower() not in _EMPTY and (label.form == FIELD_NAME
                                                or bool(_SHA256.fullmatch(value)))

    @staticmethod
    def blanks(values: Iterable[str]) -> set[str]:
        """The values that hold nothing under any label (`holds`), found at once for the
        thousands of a batch."""
        return {value for value in values if value.strip().lower() in _EMPTY}

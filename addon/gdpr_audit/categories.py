"""The data categories of SPEC 3.5 and the groups that rules reason about."""

from typing import Final

CATEGORIES: Final = (
    "email", "phone", "name", "postal_address", "birth_date", "customer_id", "ip_address",
    "device_id", "location", "behavioural", "purchase", "payment_card", "iban", "national_id",
    "credentials",
)
SENSITIVE: Final = frozenset({"payment_card", "iban", "national_id", "credentials"})
# Identify a person on their own, so they must never ride in a third party's URL (pii-in-url).
DIRECT_IDENTIFIERS: Final = frozenset({
    "email", "phone", "name", "postal_address", "birth_date", "payment_card", "iban",
    "national_id", "credentials",
})
# Registry keys that are not categories but spell one out.
IDENTIFIER_ALIASES: Final = {"first_name": "name", "last_name": "name"}
SEVERITIES: Final = ("low", "medium", "high")

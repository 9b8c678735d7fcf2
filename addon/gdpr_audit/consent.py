"""Consent signals carried by the traffic itself, mapped onto the policy's purposes.

Only Google Consent Mode's `gcs` parameter is read so far. A malformed signal never counts
as consent.
"""

import re
from collections.abc import Iterable, Mapping

from .fields import Field

# Which of a signal's switches a purpose needs (all of them); the policy's
# consent.signal_purposes overrides this per signal family.
DEFAULT_SIGNAL_PURPOSES: Mapping[str, Mapping[str, tuple[str | int, ...]]] = {
    "google_consent_mode": {"analytics": ("analytics_storage",),
                            "advertising": ("ad_storage", "ad_user_data")},
}
# G1 + ad_storage + analytics_storage, each 1 (granted), 0 (denied) or - (not set).
_GCS = re.compile(r"G1([01-])([01-])")


def google_consent_mode(fields: Iterable[Field]) -> dict[str, bool]:
    """Switch -> granted, from a `gcs` query parameter."""
    for item in fields:
        if item.location == "query" and item.key == "gcs" and not item.layers:
            match = _GCS.fullmatch(item.value.strip())
            if not match:
                return {}
            states = dict(zip(("ad_storage", "analytics_storage"), match.groups(), strict=True))
            return {k: v == "1" for k, v in states.items() if v != "-"}
    return {}


def purposes_from_signals(fields: list[Field],
                          overrides: Mapping[str, Mapping[str, tuple[str | int, ...]]]) -> dict[str, bool]:
    """Purpose -> granted for every purpose the signals in the flow decide."""
    decided: dict[str, bool] = {}
    switches = google_consent_mode(fields)
    mapping = overrides.get("google_consent_mode", DEFAULT_SIGNAL_PURPOSES["google_consent_mode"])
    for purpose, needed in mapping.items():
        states = [switches.get(str(name)) for name in needed]
        if any(state is False for state in states):
            decided[purpose] = False
        elif states and all(state is True for state in states):
            decided[purpose] = True
        # ad_user_data is not in gcs: advertising stays undecided unless denied
    return decided

"""A field-name guess stands only where nothing recognised the value itself.

Testing strategy: the same key (`distinct_id`, which names a device id) carrying a registry
subject's customer id, an email, or an unknown token; what the flow's findings say."""

import json

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import Policy

URL = "https://eu.i.analytics-example.com/batch/"


def categories(policy: Policy, body: dict) -> set[tuple[str, str | None]]:
    flow = make_flow(URL, "POST", json.dumps(body), {"content-type": "application/json"})
    return {(f.category, f.subject) for f in Auditor(policy).audit(flow).findings}


@pytest.mark.parametrize(("value", "expected"), [
    ("C-9001", {("customer_id", "alice")}),  # the registry knows it: no device id besides
    ("alice.martin@example.org", {("email", "alice")}),
    ("0192f3a1-7c4e-7b9d-a1e2-5d6c7b8a9f00", {("device_id", None)}),  # nobody's known value
])
def test_a_guess_gives_way_to_what_the_registry_recognised(
        policy: Policy, value: str, expected: set[tuple[str, str | None]]) -> None:
    body = {"batch": [{"event": "$identify", "distinct_id": value}]}
    found = {pair for pair in categories(policy, body) if pair[0] != "behavioural"}
    assert found == expected


@pytest.mark.parametrize(("event", "behavioural"), [
    ("$set", False), ("$create_alias", False), ("$groupidentify", False), ("$identify", False),
    ("$pageview", True), ("checkout_started", True),
])
def test_identity_calls_are_no_event_of_the_person(policy: Policy, event: str,
                                                    behavioural: bool) -> None:
    body = {"batch": [{"event": event, "distinct_id": "C-9001"}]}
    assert (("behavioural", None) in categories(policy, body)
            or ("behavioural", "alice") in categories(policy, body)) is behavioural

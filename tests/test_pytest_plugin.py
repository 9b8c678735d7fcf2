"""The pytest plugin, as a team would use it: an inner test session (a real pytest process)
whose tests send traffic through the `gdpr_proxy` fixture. The plugin is found through its
entry point, not imported by the inner tests."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = ROOT / "tests" / "responder.py"

INNER_TESTS = """
import requests

def post(proxy, url, body):
    return requests.post(url, json=body, proxies=proxy.proxies, verify=str(proxy.ca_path),
                         timeout=30)

def test_leaks_an_email(gdpr_proxy):
    post(gdpr_proxy, "https://collect.adnetwork-example.com/e", {"email": "marie.dupont@example.fr"})

def test_sends_nothing_personal(gdpr_proxy):
    assert post(gdpr_proxy, "https://shop.example/api/cart", {"items": 2}).status_code == 200

def test_does_not_use_the_proxy():
    assert True
"""


def test_a_test_that_causes_a_violation_fails_with_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess(
        f"--gdpr-policy={ROOT / 'policies'}", "-p", "no:cacheprovider",
        "--gdpr-proxy-arg=-s", f"--gdpr-proxy-arg={RESPONDER}",
        "--gdpr-proxy-arg=--set", "--gdpr-proxy-arg=connection_strategy=lazy")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*test_leaks_an_email*",
        "*1 GDPR violation(s) during this test*",
        "*undeclared-recipient (high): POST collect.adnetwork-example.com/e -> *",
    ])
    assert "marie.dupont" not in result.stdout.str()

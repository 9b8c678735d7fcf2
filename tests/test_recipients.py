"""Tests for gdpr_audit.recipients: who receives a request, for what, and may the data go there.

Testing strategy: small policy YAML files (SPEC 3.3 format) written into `tmp_path` and loaded
with `load_policy`, so the tests exercise the real policy format. Each host/path is resolved
and the kind (first party / declared / undeclared), name, purposes and allowed categories are
compared with values written by hand. Registrable domains are checked against the Public
Suffix List's well-known entries, and each transfer rule of SPEC 3.6 (`unlawful-transfer`) gets
one recipient country/mechanism pair.
"""

import textwrap

import pytest
from publicsuffixlist import PSLFILE, PublicSuffixList, encode_idn

from gdpr_audit.policy import load_policy
from gdpr_audit.recipients import (
    DECLARED,
    FIRST_PARTY,
    UNDECLARED,
    public_suffixes,
    registrable_domain,
    resolve,
    transfer_problem,
)

POLICY = """
version: 1
organization:
  name: Boutique Exemple SAS
  first_party: [shop.example, "*.shop.example"]
  endpoints:
    - {hosts: [stats.shop.example], purposes: [analytics]}
    - {hosts: ["*.shop.example"], paths: ["/ads/*"], purposes: [advertising]}
purposes:
  service:       {consent_required: false, legal_basis: contract}
  newsletter:    {consent_required: true}
  transactional: {consent_required: false, legal_basis: contract}
  analytics:     {consent_required: true}
  advertising:   {consent_required: true}
recipients:
  - name: Mailchimp
    hosts: ["*.api.mailchimp.com"]
    role: processor
    purposes: [newsletter]
    data: [email, name]
    country: US
    transfer: dpf
  - name: Brevo
    hosts: [api.brevo.com]
    role: processor
    purposes: [transactional, newsletter]
    data: [email, name, phone]
    country: FR
    endpoints:
      - {paths: ["/v3/*"], purposes: [newsletter]}
      - {paths: ["/v3/smtp/*"], purposes: [transactional], data: [email]}
      - {paths: ["/v3/smtp/email"], purposes: [transactional]}
"""


def write_policy(tmp_path, text, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def policy(tmp_path):
    return load_policy(write_policy(tmp_path, POLICY))


# --- first party / declared / undeclared ------------------------------------------------------

@pytest.mark.parametrize(("host", "path", "kind", "name", "purposes"), [
    ("shop.example", "/checkout", FIRST_PARTY, "Boutique Exemple SAS", ("service",)),
    ("WWW.Shop.Example.", "/", FIRST_PARTY, "Boutique Exemple SAS", ("service",)),
    ("stats.shop.example", "/collect", FIRST_PARTY, "Boutique Exemple SAS", ("analytics",)),
    ("cdn.shop.example", "/ads/pixel.gif", FIRST_PARTY, "Boutique Exemple SAS",
     ("advertising",)),
    ("us6.api.mailchimp.com", "/3.0/lists", DECLARED, "Mailchimp", ("newsletter",)),
    ("api.brevo.com", "/v2/other", DECLARED, "Brevo", ("transactional", "newsletter")),
    ("api.mailchimp.com", "/3.0/lists", UNDECLARED, "Mailchimp (mailchimp.com)", ()),  # glob needs a label
    ("tracker.example.net", "/p", UNDECLARED, "example.net", ()),
    ("evilshop.example", "/", UNDECLARED, "evilshop.example", ()),
    ("shop.example.evil.test", "/", UNDECLARED, "evil.test", ()),
])
def test_resolve_kind_name_and_purposes(policy, host, path, kind, name, purposes):
    destination = resolve(policy, host, path)
    assert (destination.kind, destination.name, destination.purposes) == (kind, name, purposes)
    assert destination.is_third_party == (kind != FIRST_PARTY)


def test_declared_recipient_carries_its_data_list(policy):
    destination = resolve(policy, "us6.api.mailchimp.com", "/3.0/lists")
    assert destination.allowed == frozenset({"email", "name"})
    assert destination.recipient is not None and destination.recipient.country == "US"


def test_first_party_and_undeclared_have_no_data_list(policy):
    assert resolve(policy, "shop.example", "/").allowed is None
    assert resolve(policy, "tracker.example.net", "/").allowed is None
    assert resolve(policy, "tracker.example.net", "/").recipient is None


@pytest.mark.parametrize(("path", "purposes", "allowed"), [
    ("/v3/contacts", ("newsletter",), {"email", "name", "phone"}),
    ("/v3/smtp/templates", ("transactional",), {"email"}),       # narrower data list
    ("/v3/smtp/email", ("transactional",), {"email", "name", "phone"}),
    ("/v3/smtp/email?to=jane.roe%40example.org", ("transactional",),
     {"email", "name", "phone"}),                               # the query is not the path
    ("/v2/smtp/email", ("transactional", "newsletter"), {"email", "name", "phone"}),
])
def test_most_specific_endpoint_decides(policy, path, purposes, allowed):
    destination = resolve(policy, "api.brevo.com", path)
    assert destination.purposes == purposes
    assert destination.allowed == frozenset(allowed)


def test_first_party_endpoint_by_host_and_path(policy):
    # stats.shop.example matches the host-only endpoint; /ads/* on it matches both, and the
    # one with a path is more specific.
    assert resolve(policy, "stats.shop.example", "/x").purposes == ("analytics",)
    assert resolve(policy, "stats.shop.example", "/ads/1").purposes == ("advertising",)
    assert resolve(policy, "shop.example", "/ads/1").purposes == ("service",)  # not *.shop


def test_merged_policy_files(tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    write_policy(folder, """
        version: 1
        organization: {name: Exemple, first_party: [shop.example]}
        purposes:
          analytics: {consent_required: true}
        """, "00-base.yaml")
    write_policy(folder, """
        recipients:
          - {name: Matomo Cloud, hosts: [stats.example.net], purposes: [analytics],
             data: [ip_address], country: DE}
        """, "10-recipients.yaml")
    policy = load_policy(folder)
    destination = resolve(policy, "stats.example.net", "/matomo.php")
    assert (destination.kind, destination.name) == (DECLARED, "Matomo Cloud")


# --- registrable domains ----------------------------------------------------------------------

@pytest.mark.parametrize(("host", "expected"), [
    ("a.b.example.co.uk", "example.co.uk"),
    ("example.co.uk", "example.co.uk"),
    ("a.b.c.d.example.com.au", "example.com.au"),
    ("x.github.io", "x.github.io"),           # github.io is a (private) public suffix
    ("deep.x.github.io", "x.github.io"),
    ("bucket.s3.amazonaws.com", "bucket.s3.amazonaws.com"),
    ("WWW.Example.COM.", "example.com"),
    ("pixel.tracker.example.net", "example.net"),
    ("localhost", "localhost"),
    ("203.0.113.7", "203.0.113.7"),           # an address is its own name
    ("2001:db8::1", "2001:db8::1"),
])
def test_registrable_domain(host, expected):
    assert registrable_domain(host) == expected


def test_the_suffix_list_reads_every_rule_as_the_library_would():
    """public_suffixes() punycodes the IDN rules itself (the library's option punycodes every
    rule, slowly): every rule, in both forms, gives the registrable domain the library gives."""
    reference = PublicSuffixList()
    with open(PSLFILE, encoding="utf-8") as source:
        rules = {line.split(" ")[0].strip().lstrip("!*.") for line in source
                 if line.strip() and not line.startswith("//")}
    hosts = [f"a.b.{form}" for rule in rules for form in {rule, encode_idn(rule)}]
    assert len(hosts) > 10_000 and sum(1 for host in hosts if "xn--" in host) > 400
    assert [public_suffixes().privatesuffix(host) for host in hosts] == [
        reference.privatesuffix(host) for host in hosts]


def test_undeclared_ip_host_is_named_by_the_address(policy):
    assert resolve(policy, "198.51.100.23", "/collect").name == "198.51.100.23"


# --- transfers --------------------------------------------------------------------------------

def recipient(tmp_path, country, transfer=None):
    extra = f"\n    transfer: {transfer}" if transfer else ""
    policy = load_policy(write_policy(tmp_path, f"""
version: 1
organization: {{name: Exemple, first_party: [shop.example]}}
purposes:
  analytics: {{consent_required: true}}
recipients:
  - name: Vendor
    hosts: [vendor.example.net]
    purposes: [analytics]
    data: [email]
    country: "{country}"{extra}  # quoted: YAML 1.1 reads a bare NO as false
"""))
    return policy.recipients[0]


@pytest.mark.parametrize(("country", "transfer", "lawful"), [
    ("FR", None, True),
    ("DE", "none", True),       # inside the EEA the mechanism does not matter
    ("NO", None, True),         # EEA, not EU
    ("IE", "dpf", True),
    ("US", "dpf", True),
    ("US", "none", False),
    ("US", None, False),
    ("US", "adequacy", False),  # the US is adequate only through the DPF
    ("IN", "dpf", False),       # the DPF covers US recipients only
    ("IN", "none", False),
    ("IN", "adequacy", False),
    ("CH", None, True),         # adequacy decision
    ("GB", "none", True),
    ("JP", "adequacy", True),
    ("US", "scc", True),
    ("IN", "scc", True),
    ("CN", "scc", True),
    ("BR", "bcr", True),
])
def test_transfer_rules(tmp_path, country, transfer, lawful):
    problem = transfer_problem(recipient(tmp_path, country, transfer))
    if lawful:
        assert problem is None
    else:
        assert problem and country in problem


def test_recipient_without_country_is_not_judged():
    from gdpr_audit.policy import Recipient
    assert transfer_problem(Recipient("X", ("x.example",), ("service",), frozenset())) is None

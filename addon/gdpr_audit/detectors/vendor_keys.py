"""The integration's own secrets: API keys, `api_secret`s, OAuth client secrets.

They are the company's, not a person's (SPEC 3.5), so they are never a finding of any
category, while a person's password, one-time code, reset or magic-login token stays
`credentials` (fieldnames.py). Two ways to tell: the key names an integration's secret, or
the value has the documented shape of a vendor's key (a SendGrid key may travel as an SMTP
`password`)."""

import re

# Keys (as fieldnames.leaf_key writes them: lowercase letters and digits) that vendors'
# documentation uses for the integration's key or secret: GA4 measurement protocol's
# `api_secret`, OAuth's `client_secret`, Stripe's `secret_key`, Sentry's `sentry_secret`,
# Twilio's API key `api_secret`, Mailchimp's `apikey`, HubSpot's `hapikey`, Segment's
# `writeKey`, Mixpanel's `token`, Algolia's `x-algolia-api-key`.
INTEGRATION_KEYS = frozenset(
    "apisecret apikey apikeysecret clientsecret secretkey sentrysecret sentrykey appsecret "
    "consumersecret webhooksecret signingsecret hapikey writekey xalgoliaapikey "
    "publishablekey secretapikey accesskeysecret serversecret".split())

# Documented key shapes, anchored at both ends: a key is a value of its own.
_SHAPES = re.compile("|".join((
    r"(sk|rk|pk)_(live|test)_[0-9A-Za-z]{10,}",           # Stripe secret/restricted/publishable
    r"(pi|seti|cs)_[0-9A-Za-z]+_secret_[0-9A-Za-z]+",     # Stripe.js client secrets
    r"whsec_[0-9A-Za-z]{16,}",                            # Stripe webhook signing secret
    r"SG\.[\w-]{16,}\.[\w-]{16,}",                        # SendGrid
    r"xkeysib-[0-9a-f]{64}-[0-9A-Za-z]{16}",              # Brevo (Sendinblue) API v3
    r"xsmtpsib-[0-9a-f]{64}-[0-9A-Za-z]{16}",             # Brevo SMTP
    r"key-[0-9a-z]{32}",                                  # Mailgun
    r"pat-(na|eu|ap)\d-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",  # HubSpot private app
    r"[0-9a-f]{32}-us\d{1,2}",                            # Mailchimp
    r"(AC|SK)[0-9a-f]{32}",                               # Twilio account SID, API key SID
    r"xox[abposr]-[0-9A-Za-z-]{10,}",                     # Slack
    r"gh[pousr]_[0-9A-Za-z]{36}",                         # GitHub
    r"AIza[0-9A-Za-z_-]{35}",                             # Google API key
    r"shp(at|ca|pa|ss)_[0-9a-fA-F]{32}",                  # Shopify
    r"AKIA[0-9A-Z]{16}",                                  # AWS access key id
)))


def is_integration_key(leaf: str) -> bool:
    """Whether a key (fieldnames.leaf_key) names the integration's own secret."""
    return leaf in INTEGRATION_KEYS


def is_vendor_key(value: str) -> bool:
    """Whether a value has the documented shape of a vendor's API key."""
    return _SHAPES.fullmatch(value.strip()) is not None

"""gdpr-flow-audit: find personal data in outbound traffic and check it against a GDPR sharing policy."""

__version__ = "0.1.0"

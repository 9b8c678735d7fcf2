"""The script mitmproxy loads: `mitmdump -s addon/gdpr_audit_addon.py --set gdpr_policy=policies/`."""

from gdpr_audit.addon import GdprAudit

addons = [GdprAudit()]

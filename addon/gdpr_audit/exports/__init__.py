"""The formats of `gdpr-audit export`, one module each, all read through `log.load`."""

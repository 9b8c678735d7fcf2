"""The rules of SPEC 3.6, registered by discovery: one module, one `Rule` subclass."""

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from .base import FlowFacts, Rule, Violation


def _discover() -> Mapping[str, Rule]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, Rule] = {}
    for cls in Rule.__subclasses__():
        if cls.id in found:
            raise RuntimeError(f"two rules share the id {cls.id!r}")
        found[cls.id] = cls()
    return MappingProxyType(found)


RULES = _discover()

__all__ = ["RULES", "FlowFacts", "Rule", "Violation"]

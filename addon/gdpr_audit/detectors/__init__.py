"""Detectors of personal data, registered by discovery: adding one is adding a module here
with one `Detector` subclass. Their ids are stored in the audit log."""

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from .base import Detector, Finding, canonical
from .known import KnownSubjects


def _discover() -> Mapping[str, type[Detector]]:
    found: dict[str, type[Detector]] = {}
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    for cls in Detector.__subclasses__():
        if cls.id in found:
            raise RuntimeError(f"two detectors share the id {cls.id!r}")
        found[cls.id] = cls
    return MappingProxyType(found)


PATTERN_DETECTORS = _discover()

__all__ = ["PATTERN_DETECTORS", "Detector", "Finding", "KnownSubjects", "canonical"]

"""`gdpr-audit proxy`: mitmproxy's dump master with the addon, and mitmdump's own command
line, option handling and signal handling for everything else."""

from collections.abc import Sequence
from typing import Any

from mitmproxy import options
from mitmproxy.tools import cmdline, main
from mitmproxy.tools.dump import DumpMaster

from .addon import GdprAudit


class AuditingDumpMaster(DumpMaster):
    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.addons.add(GdprAudit())


def run_proxy(arguments: Sequence[str]) -> int:
    """Run until stopped; mitmdump exits the process itself on an options error."""
    main.run(AuditingDumpMaster, cmdline.mitmdump, list(arguments))
    return 0

"""`gdpr-audit` and `python -m gdpr_audit`: the command line in a process of its own.

Such a process keeps what it imports until it exits, so the collector is kept off it: while
importing (there is nothing to collect yet), and at exit, where the interpreter's last
collections would walk every object still held, for nothing."""

import gc
import sys


def run() -> None:
    gc.disable()
    from .cli import main
    gc.freeze()
    gc.enable()
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()

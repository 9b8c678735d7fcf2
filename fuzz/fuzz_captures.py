"""Fuzz capture reading: a damaged, truncated or hostile .flow or .har file is read up to the
damage, and every problem comes back as a CaptureError (file, position, message), never as
an exception out of CaptureReader.flows.

Input: a first byte `h` (the file is a .har) or anything else (a .flow), then its bytes."""

import tempfile
from pathlib import Path

import _common
import atheris

with atheris.instrument_imports(include=["gdpr_audit"]):
    from mitmproxy import http

    from gdpr_audit.captures import CaptureReader

WORKDIR = Path(tempfile.mkdtemp(prefix="fuzz-captures-"))


def test_one_input(data: bytes) -> None:
    path = WORKDIR / ("input.har" if data[:1] == b"h" else "input.flow")
    path.write_bytes(data[1:])
    reader = CaptureReader([str(path)])
    for flow, source in reader.flows():
        assert isinstance(flow, http.HTTPFlow) and source.startswith(str(path))
        assert isinstance(flow.request.path, str) and isinstance(flow.request.pretty_host, str)
    for error in reader.errors:
        assert error.file == str(path) and error.where and error.message


if __name__ == "__main__":
    _common.run(test_one_input, "captures")

"""Recorded captures: mitmproxy's .flow files and HAR, read with mitmproxy's own readers.

A damaged file costs only what follows the damage: every complete flow before it is
yielded, and the error names the file and the byte offset (.flow) or entry (HAR).
"""

import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from mitmproxy import exceptions, http, io
from mitmproxy.io.har import request_to_flow

CAPTURE_SUFFIXES = (".flow", ".mitm", ".har")
# HAR has no flow ids: derive one from the file's entry, so replaying the same HAR again
# names the same flows (and the log does not duplicate them).
_HAR_NAMESPACE = uuid.UUID("5b0c8f52-3f55-4c36-9c1e-9e5f8d1f4a10")


@dataclass
class CaptureError:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


@dataclass
class CaptureReader:
    paths: list[str]
    errors: list[CaptureError] = field(default_factory=list)

    def files(self) -> list[Path]:
        found: list[Path] = []
        for name in self.paths:
            path = Path(name)
            if path.is_dir():
                found += sorted(p for p in path.rglob("*")
                                if p.suffix.lower() in CAPTURE_SUFFIXES and p.is_file())
            elif path.is_file():
                found.append(path)
            else:
                self.errors.append(CaptureError(name, "path", "no such file or folder"))
        return found

    def flows(self) -> Iterator[tuple[http.HTTPFlow, str]]:
        """(flow, source) for every HTTP flow, where source names the file and position."""
        for path in self.files():
            try:
                with path.open("rb") as handle:
                    head = handle.read(4).lstrip(b"\xef\xbb\xbf")
                if not head:
                    self.errors.append(CaptureError(str(path), "offset 0", "empty file"))
                    continue
                if head.lstrip()[:1] == b"{" or path.suffix.lower() == ".har":
                    yield from self._har(path)
                else:
                    yield from self._flow_file(path)
            except OSError as e:
                self.errors.append(CaptureError(str(path), "open", e.strerror or str(e)))

    def _flow_file(self, path: Path) -> Iterator[tuple[http.HTTPFlow, str]]:
        with path.open("rb") as handle:
            reader = io.FlowReader(handle)
            offset, index = 0, 0
            try:
                for flow in reader.stream():
                    if isinstance(flow, http.HTTPFlow):
                        yield flow, f"{path}#{index}"
                    index += 1
                    offset = handle.tell()
            except Exception as e:
                # FlowReadException for bad framing; a record that frames well but does not
                # hold a flow's state fails in mitmproxy's migration (KeyError, TypeError...),
                # whose message may quote the record: only its type is named then.
                problem = e if isinstance(e, exceptions.FlowReadException) else (
                    f"not a flow record ({type(e).__name__})")
                size = path.stat().st_size
                self.errors.append(CaptureError(
                    str(path), f"byte offset {offset}",
                    f"damaged or truncated flow data after {index} complete flow(s) "
                    f"({size - offset} bytes not read): {problem}"))

    def _har(self, path: Path) -> Iterator[tuple[http.HTTPFlow, str]]:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        try:
            document = json.loads(text)
            entries = document["log"]["entries"]
            if not isinstance(entries, list):
                raise TypeError("log.entries is not a list")
        except json.JSONDecodeError as e:
            entries = list(_complete_entries(text))
            self.errors.append(CaptureError(
                str(path), f"line {e.lineno} column {e.colno} (byte offset {e.pos})",
                f"not valid JSON ({e.msg}); read the {len(entries)} complete entries before it"))
        except (KeyError, TypeError) as e:
            self.errors.append(CaptureError(str(path), "log.entries",
                                            f"not a HAR file: missing or invalid {e}"))
            return
        except RecursionError:
            self.errors.append(CaptureError(str(path), "offset 0", "JSON nested too deeply"))
            return
        for index, entry in enumerate(entries):
            try:
                flow = request_to_flow(_lenient_entry(entry))
            except Exception as e:  # mitmproxy's reader raises KeyError, ValueError, TypeError...
                # Other messages may quote the entry's values: name the kind of error only.
                problem = (f"missing key {e}" if isinstance(e, KeyError)
                           else f"{type(e).__name__} on an unexpected value")
                self.errors.append(CaptureError(str(path), f"entry {index}",
                                                f"not a readable HAR entry ({problem})"))
                continue
            flow.id = _har_flow_id(entry, index)
            yield flow, f"{path}#{index}"


def _har_flow_id(entry: dict[str, Any], index: int) -> str:
    """The id a tool recorded in the entry's custom `_flow_id` field (HAR allows custom
    fields starting with `_`), else one derived from the entry: stable across replays."""
    recorded = entry.get("_flow_id")
    if isinstance(recorded, str):
        try:
            return str(uuid.UUID(recorded))
        except ValueError:
            pass
    digest = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
    return str(uuid.uuid5(_HAR_NAMESPACE, f"{index}:{digest}"))


def _lenient_entry(entry: Any) -> Any:
    """Fill what mitmproxy's HAR reader requires but some tools leave out (a response,
    timings, postData.text), without touching what the request says."""
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise KeyError("request")
    entry = copy.copy(entry)
    entry.setdefault("time", 0)
    entry["time"] = entry["time"] if isinstance(entry["time"], int | float) else 0
    request = entry["request"] = dict(entry["request"])
    request.setdefault("headers", [])
    request.setdefault("httpVersion", "HTTP/1.1")
    post = request.get("postData")
    if isinstance(post, dict) and "text" not in post:
        params = [(p.get("name", ""), p.get("value", "")) for p in post.get("params", [])]
        request["postData"] = {**post, "text": urlencode(params)}
    response = entry.get("response")
    if not isinstance(response, dict) or "status" not in response:
        entry["response"] = {"status": 0, "httpVersion": "HTTP/1.1", "headers": [], "content": {}}
    else:
        response = entry["response"] = dict(response)
        response.setdefault("httpVersion", "HTTP/1.1")
        response.setdefault("headers", [])
        response.setdefault("content", {})
    return entry


def _complete_entries(text: str) -> Iterator[Any]:
    """The entries of a truncated HAR that were written out in full."""
    start = text.find('"entries"')
    start = text.find("[", start) + 1 if start >= 0 else 0
    if start <= 0:
        return
    decoder = json.JSONDecoder()
    position = start
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return
        try:
            entry, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return
        yield entry

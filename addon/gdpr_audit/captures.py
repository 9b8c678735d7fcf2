"""Recorded captures: mitmproxy's .flow files and HAR, read with mitmproxy's own readers.

A damaged file costs only what follows the damage: every complete flow before it is
yielded, and the error names the file and the byte offset (.flow) or entry (HAR).
"""

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from mitmproxy import exceptions, http, io
from mitmproxy.io.har import request_to_flow

CAPTURE_SUFFIXES = (".flow", ".mitm", ".har")
# HAR has no flow ids: derive one from the file's entry, so replaying the same HAR again
# names the same flows (and the log does not duplicate them).
_HAR_NAMESPACE = uuid.UUID("5b0c8f52-3f55-4c36-9c1e-9e5f8d1f4a10")
T = TypeVar("T")


@dataclass
class CaptureError:
    file: str
    where: str
    message: str
    ends_file: bool = field(default=False, compare=False, repr=False)
    """Damage in a .flow file: nothing after it in that file is read."""

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


@dataclass
class Chunk:
    """A piece of a capture that can be read on its own, in another process: the records
    [start, end) of a .flow file, some entries of a HAR file, or an error found on the way."""

    path: str
    reading: int
    """Which file of the run (a file named twice is read twice)."""
    first: int = 0
    """The index in its file of the chunk's first flow."""
    start: int = 0
    end: int = 0
    entries: list[Any] | None = None
    error: CaptureError | None = None


# A chunk is one task for a worker: big enough that handing it over costs little beside
# auditing it, small enough that a big flow does not hold up many small ones behind it.
_CHUNK_FLOWS = 32
_CHUNK_BYTES = 1024 * 1024
# mitmproxy's tnetstring framing: `<length>:<payload><type byte>`, at most 12 digits.
_PREFIX = re.compile(rb"(\d{1,12}):")


@dataclass
class CaptureReader:
    paths: list[str]
    errors: list[CaptureError] = field(default_factory=list)
    _damaged: set[int] = field(default_factory=set)

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
        for chunk in self.chunks():
            yield from self.accept(chunk, read_chunk(chunk))

    def chunks(self) -> Iterator[Chunk]:
        """The captures cut into chunks, in order. A .flow file is only framed here (its
        records are length-prefixed): its flows are parsed where the chunk is read."""
        for reading, path in enumerate(self.files()):
            try:
                with path.open("rb") as handle:
                    head = handle.read(4).lstrip(b"\xef\xbb\xbf")
                if not head:
                    yield Chunk(str(path), reading, error=CaptureError(str(path), "offset 0",
                                                                       "empty file"))
                elif head.lstrip()[:1] == b"{" or path.suffix.lower() == ".har":
                    yield from self._har(path, reading)
                else:
                    yield from _frame(path, reading)
            except OSError as e:
                yield Chunk(str(path), reading, error=CaptureError(str(path), "open",
                                                                   e.strerror or str(e)))

    def accept(self, chunk: Chunk, outcomes: Iterable[T | CaptureError]) -> Iterator[T]:
        """What read_chunk gave for `chunk` (or made of it), in order, without the errors,
        which are kept; nothing of a .flow file after its damage."""
        if chunk.reading in self._damaged:
            return
        for outcome in outcomes:
            if isinstance(outcome, CaptureError):
                self.errors.append(outcome)
                if outcome.ends_file:
                    self._damaged.add(chunk.reading)
                    return
            else:
                yield outcome

    def _har(self, path: Path, reading: int) -> Iterator[Chunk]:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        try:
            document = json.loads(text)
            entries = document["log"]["entries"]
            if not isinstance(entries, list):
                raise TypeError("log.entries is not a list")
        except json.JSONDecodeError as e:
            entries = list(_complete_entries(text))
            yield Chunk(str(path), reading, error=CaptureError(
                str(path), f"line {e.lineno} column {e.colno} (byte offset {e.pos})",
                f"not valid JSON ({e.msg}); read the {len(entries)} complete entries before it"))
        except (KeyError, TypeError) as e:
            yield Chunk(str(path), reading, error=CaptureError(
                str(path), "log.entries", f"not a HAR file: missing or invalid {e}"))
            return
        except RecursionError:
            yield Chunk(str(path), reading, error=CaptureError(str(path), "offset 0",
                                                               "JSON nested too deeply"))
            return
        for first in range(0, len(entries), _CHUNK_FLOWS):
            yield Chunk(str(path), reading, first, entries=entries[first:first + _CHUNK_FLOWS])


def _frame(path: Path, reading: int) -> Iterator[Chunk]:
    """Chunks of whole records, found from their length prefixes without reading the rest;
    where the framing breaks, an error chunk, exactly as mitmproxy's reader would fail there
    (a record that frames well but does not parse fails where the chunk is read)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        start = offset = index = first = 0
        while True:
            handle.seek(offset)
            head = handle.read(14)
            if not head:
                break  # the end of the last record is the end of the file
            match = _PREFIX.match(head)
            end = offset + match.end() + int(match[1]) + 1 if match else size + 1
            if end > size:  # no length prefix, or the record goes past the end of the file
                if start < offset:
                    yield Chunk(str(path), reading, first, start, offset)
                yield Chunk(str(path), reading, index, offset, offset,
                            error=_damage(path, offset, index, "Invalid data format."))
                return
            offset, index = end, index + 1
            if index - first >= _CHUNK_FLOWS or offset - start >= _CHUNK_BYTES:
                yield Chunk(str(path), reading, first, start, offset)
                start, first = offset, index
        if start < offset:
            yield Chunk(str(path), reading, first, start, offset)


def _damage(path: Path | str, offset: int, index: int, problem: object) -> CaptureError:
    size = Path(path).stat().st_size
    return CaptureError(str(path), f"byte offset {offset}",
                        f"damaged or truncated flow data after {index} complete flow(s) "
                        f"({size - offset} bytes not read): {problem}", ends_file=True)


def read_chunk(chunk: Chunk) -> Iterator[tuple[http.HTTPFlow, str] | CaptureError]:
    """(flow, source) for every HTTP flow of the chunk, and an error for what is unreadable,
    parsed with mitmproxy's own readers (so that its migration of old formats applies)."""
    if chunk.error is not None:
        yield chunk.error
    elif chunk.entries is not None:
        yield from _har_entries(chunk)
    else:
        yield from _flow_records(chunk)


def _flow_records(chunk: Chunk) -> Iterator[tuple[http.HTTPFlow, str] | CaptureError]:
    offset, index = chunk.start, chunk.first
    try:
        with open(chunk.path, "rb") as handle:
            handle.seek(chunk.start)
            data = BytesIO(handle.read(chunk.end - chunk.start))
        for flow in io.FlowReader(data).stream():
            if isinstance(flow, http.HTTPFlow):
                yield flow, f"{chunk.path}#{index}"
            index += 1
            offset = chunk.start + data.tell()
    except OSError as e:
        yield CaptureError(chunk.path, "open", e.strerror or str(e), ends_file=True)
    except Exception as e:
        # FlowReadException for bad framing; a record that frames well but does not
        # hold a flow's state fails in mitmproxy's migration (KeyError, TypeError...),
        # whose message may quote the record: only its type is named then.
        problem = e if isinstance(e, exceptions.FlowReadException) else (
            f"not a flow record ({type(e).__name__})")
        yield _damage(chunk.path, offset, index, problem)


def _har_entries(chunk: Chunk) -> Iterator[tuple[http.HTTPFlow, str] | CaptureError]:
    for index, entry in enumerate(chunk.entries or (), start=chunk.first):
        try:
            flow = request_to_flow(_lenient_entry(entry))
        except Exception as e:  # mitmproxy's reader raises KeyError, ValueError, TypeError...
            # Other messages may quote the entry's values: name the kind of error only.
            problem = (f"missing key {e}" if isinstance(e, KeyError)
                       else f"{type(e).__name__} on an unexpected value")
            yield CaptureError(chunk.path, f"entry {index}",
                               f"not a readable HAR entry ({problem})")
            continue
        flow.id = _har_flow_id(entry, index)
        yield flow, f"{chunk.path}#{index}"


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

"""What is built from the registry, kept on disk encrypted so that a restart does not build
it again: the registry index, and the screening database that holds a small registry's
spellings.

The index holds every spelling of every registry identifier: a copy of the registry, which
is personal data. It is sealed with AES-GCM under a key derived from the registry itself
(and a random salt per file), so the file tells nothing to whoever does not already hold the
registry, and a registry that changed by one character does not open it. The file's name is
derived from the registry too, through another hash, and does not reveal the key.

Written and read as a stream of chunks (a 100,000-subject index is some hundreds of MB): the
pickle never exists whole in memory, encrypted or not. Each chunk's nonce is its number, and
the last one says so in its associated data: chunks cannot be reordered, dropped or cut off.
"""

import hashlib
import hmac
import io
import os
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a registry index worker imports this module, never
    # uses it, and held cryptography's 9 MB of imports (registry_index._Worker)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"gdpr-audit registry index 1\n"
_CHUNK = 16 << 20
_LAST, _MORE = b"L", b"M"


def cache_folder() -> Path | None:
    """None where there is no home to keep a cache in (a container's arbitrary user)."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gdpr-audit"
    except RuntimeError:
        return None


class Sealed:
    """One file of a `kind` (the `keep` written last are kept per kind): where it is and the
    key that opens it."""

    def __init__(self, folder: Path, material: Iterable[bytes], kind: str = "registry",
                 keep: int = 1) -> None:
        whole = hashlib.sha512()
        for part in material:
            whole.update(len(part).to_bytes(8, "big"))
            whole.update(part)
        digest = whole.digest()
        self.kind, self.keep = kind, keep
        self.path = folder / f"{kind}-{hashlib.sha256(b'name' + digest).hexdigest()[:32]}.idx"
        self._secret = hashlib.sha256(b"key" + digest).digest()

    def _cipher(self, salt: bytes) -> "AESGCM":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        return AESGCM(hmac.digest(self._secret, salt, "sha256"))

    def read(self) -> list[Any] | None:
        """The parts written, or None when there is none for this registry or it does not
        open."""
        try:
            return list(self.parts())
        except ValueError:
            return None

    def parts(self) -> Iterator[Any]:
        """The parts written, one at a time, so that a reader can let each go before the
        next (an index of 100,000 subjects: hundreds of MB). Raises ValueError when there is
        none for this registry or it does not open, maybe after some parts (each was
        authenticated as it was read): only a reader that reached the end may keep what it
        made of them."""
        from cryptography.exceptions import InvalidTag
        try:
            with open(self.path, "rb") as file:
                if file.read(len(_MAGIC)) != _MAGIC:
                    raise ValueError("not an index file")
                opened = _Opening(file, self._cipher(file.read(16)))
                with io.BufferedReader(opened, _CHUNK) as stream:
                    while pickle.load(stream) is True:
                        yield pickle.load(stream)
                    if stream.read(1) or not opened.done:
                        raise ValueError("more after the last part")
        except (OSError, EOFError, InvalidTag, pickle.UnpicklingError) as e:
            raise ValueError(f"the index file does not open: {type(e).__name__}") from e

    def writer(self) -> "Writer":
        """A new index file for this registry, written part by part (the caller can write
        what it has while other processes still work), in place once closed."""
        return Writer(self)


class Writer:
    """Readable by the owner only, like the registry itself. The `keep` files of its kind
    written last are kept (one registry's index); an unwritable cache only costs the next
    load its time. Each part is pickled on its own: a
    pickler keeps everything it wrote alive until it ends, and an automaton's pickled form is
    as large as the automaton."""

    def __init__(self, sealed: Sealed) -> None:
        self.path, self.kind, self.keep = sealed.path, sealed.kind, sealed.keep
        self.partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        self.file: io.BufferedWriter | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            self.file = os.fdopen(os.open(self.partial, flags, 0o600), "wb")
            salt = os.urandom(16)
            self.file.write(_MAGIC + salt)
            self.sealing = _Sealing(self.file, sealed._cipher(salt))
        except OSError:
            self.abandon()

    def add(self, part: Any) -> None:
        if self.file is None:
            return
        try:
            pickle.dump(True, self.sealing, protocol=5)
            pickle.dump(part, self.sealing, protocol=5)
        except OSError:
            self.abandon()

    def close(self) -> None:
        if self.file is None:
            return
        try:
            pickle.dump(False, self.sealing, protocol=5)
            self.sealing.finish()
            self.file.close()
            os.replace(self.partial, self.path)
            self._prune()
        except OSError:
            self.abandon()

    def _prune(self) -> None:
        """Delete the files of this kind but the `keep` written last (this one among them)."""
        others = []
        for old in self.path.parent.glob(f"{self.kind}-*"):
            if old != self.path and not old.name.endswith(".tmp"):
                try:
                    others.append((old.stat().st_mtime_ns, old))
                except FileNotFoundError:  # another process's pruning
                    pass
        for _, old in sorted(others, reverse=True)[self.keep - 1:]:
            old.unlink(missing_ok=True)

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial.unlink(missing_ok=True)


class _Sealing(io.RawIOBase):
    def __init__(self, file: io.BufferedWriter, cipher: "AESGCM") -> None:
        self.file, self.cipher, self.number = file, cipher, 0
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            take = min(_CHUNK - len(self.buffer), len(view) - done)
            self.buffer += view[done:done + take]
            done += take
            if len(self.buffer) == _CHUNK:
                self._seal(_MORE)
        return done

    def finish(self) -> None:
        self._seal(_LAST)

    def _seal(self, flag: bytes) -> None:
        sealed = self.cipher.encrypt(self.number.to_bytes(12, "big"), bytes(self.buffer), flag)
        self.file.write(flag + len(sealed).to_bytes(4, "big") + sealed)
        self.number += 1
        self.buffer.clear()


class _Opening(io.RawIOBase):
    def __init__(self, file: io.BufferedReader, cipher: "AESGCM") -> None:
        self.file, self.cipher, self.number = file, cipher, 0
        self.chunk = memoryview(b"")
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.chunk and not self.done:
            self._open()
        size = min(len(buffer), len(self.chunk))
        buffer[:size] = self.chunk[:size]
        self.chunk = self.chunk[size:]
        return size

    def _open(self) -> None:
        header = self.file.read(5)
        if len(header) != 5 or header[:1] not in (_LAST, _MORE):
            raise ValueError("the index file is cut short")
        sealed = self.file.read(int.from_bytes(header[1:], "big"))
        nonce = self.number.to_bytes(12, "big")
        self.chunk = memoryview(self.cipher.decrypt(nonce, sealed, header[:1]))
        self.number += 1
        self.done = header[:1] == _LAST

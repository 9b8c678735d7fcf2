"""The hashes that vendors and trackers apply to identifiers, computed in bulk, and the tokens
of traffic that could be one of them (hex, base64 of a digest, a decimal checksum)."""

import base64
import binascii
import hashlib
import importlib
import re
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from itertools import product
from operator import methodcaller
from typing import Any

import mmh3
import numpy
import whirlpool

from .base import SPACE, run_table, runs_of

# CPython's own (HACL*) md5, sha1 and sha2 skip OpenSSL's set-up on every call: about a
# third faster on inputs as short as identifiers.
_BUILTIN = {"md5": "_md5", "sha1": "_sha1", "sha224": "_sha2", "sha256": "_sha2",
            "sha384": "_sha2", "sha512": "_sha2"}


def _constructor(name: str) -> Callable[[bytes], Any]:
    try:
        return getattr(importlib.import_module(_BUILTIN[name]), name)
    except (KeyError, ImportError, AttributeError):
        return getattr(hashlib, name, None) or partial(hashlib.new, name)


_CONSTRUCTORS = {name: _constructor(name) for name in (
    "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384",
    "sha3_512", "ripemd160", "blake2b", "blake2s")}
_DIGEST = methodcaller("digest")


def _hashlib(name: str) -> Callable[[bytes], bytes]:
    constructor = _CONSTRUCTORS[name]
    return lambda data: constructor(data).digest()


# Every hash of Englehardt et al. (PETS 2018) and Senol et al. (USENIX Security 2022).
# pycryptodome's MD2 and MD4 are imported when first used (only to build a registry's index):
# importing them costs 40 ms of every start.
ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "md2": lambda data: importlib.import_module("Crypto.Hash.MD2").new(data).digest(),
    "md4": lambda data: importlib.import_module("Crypto.Hash.MD4").new(data).digest(),
    **{name: _hashlib(name) for name in (
        "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256",
        "sha3_384", "sha3_512", "ripemd160", "blake2b", "blake2s")},
    "whirlpool": lambda data: whirlpool.new(data).digest(),
    "murmur3_32": lambda data: mmh3.hash(data, signed=False).to_bytes(4, "big"),
    "murmur3_64": lambda data: mmh3.hash64(data, signed=False)[0].to_bytes(8, "big"),
    "murmur3_128": lambda data: mmh3.hash128(data, signed=False).to_bytes(16, "big"),
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "adler32": lambda data: zlib.adler32(data).to_bytes(4, "big"),
}
# The hashes vendors really use, which are also chained (sha256 of an md5 hex digest).
COMMON = ("md5", "sha1", "sha256", "sha512")
# Where the custom is to send the number itself.
DECIMAL = frozenset({"crc32", "adler32", "murmur3_32", "murmur3_64"})
SALTED = "sha256+salt"
# Inner hash first: ("md5", "sha256") is sha256(md5(x)).
CHAINS: tuple[tuple[str, ...], ...] = (
    *((name,) for name in ALGORITHMS), (SALTED,),
    *product(COMMON, repeat=2), *product(COMMON, repeat=3))
_EVERY = tuple(range(len(CHAINS)))
# MD2 and MD4 cost ten times the others (pycryptodome): the primary email alone gets them.
_SINGLE = tuple(i for i in range(len(ALGORITHMS) + 1) if CHAINS[i] not in (("md2",), ("md4",)))
_NARROW = tuple(CHAINS.index((name,)) for name in (*COMMON, SALTED))
# What the policy's `detection: {hashes: ...}` selects. "vendor" (the default): md5, sha1,
# sha256, sha512 and the salted sha256, over every normalisation vendors document, which is
# what pixels and conversion APIs send. "research": also every other hash of the papers
# (the primary email every chain of COMMON 3 deep, phones every single hash): about four
# times the digests, most of the index's build time (docs/detection.md).
HASH_SCOPES = ("vendor", "research")
# The chains that longer ones continue (md5 and md5 then sha1 for sha256(sha1(md5(x)))):
# CHAINS lists them first, so their digests are hexed for the longer ones as they are made.
CONTINUED = frozenset(chain[:-1] for chain in CHAINS if len(chain) > 1)


# Reference packing in 32 bits: subject index, then input position, then chain.
_CHAIN_BITS, _INPUT_BITS = 7, 5
MAX_SUBJECTS = 1 << (32 - _CHAIN_BITS - _INPUT_BITS)

_HEX_TOKEN = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,128}(?![0-9a-fA-F])")
_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{22,88}={0,2}(?![A-Za-z0-9+/=_-])")
# What each token pattern matches, its padding included: it is looked for only in runs of these.
_HEX_CHARACTERS = run_table("0123456789abcdefABCDEF")
_BASE64_CHARACTERS = run_table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                               "0123456789+/_-=")
_SHORT_DIGEST = re.compile(r"[0-9a-fA-F]{8}|[0-9a-fA-F]{16}")
_DECIMAL = re.compile(r"-?\d{5,20}")
_DIGEST_SIZES = frozenset({4, 8, 16, 20, 28, 32, 48, 64})
# What _digest_candidates takes, as hints over a batch of values (KnownSubjects.hints): runs
# of hex; of base64 only those of a length that decodes to a digest's size; short digests and
# numbers only as a whole value, between two SEPARATORs.
HEX_RUN = "[0-9a-fA-F]{32,}[^0-9a-fA-F]"
_DIGEST_BASE64 = "|".join(f"[A-Za-z0-9+/_-]{{{-(-size * 4 // 3)}}}"
                          for size in sorted(_DIGEST_SIZES) if size >= 16)
BASE64_RUN = f"[^A-Za-z0-9+/_-](?:{_DIGEST_BASE64})=*[^A-Za-z0-9+/_-]"
_SHORT_OR_NUMBER = "[0-9a-fA-F]{8}|[0-9a-fA-F]{16}|-?[0-9]{5,20}"
WHOLE_DIGEST = rf"\x00[{SPACE}]*(?:{_SHORT_OR_NUMBER})[{SPACE}]*\x00"
DIGEST_HINTS = (HEX_RUN, BASE64_RUN, WHOLE_DIGEST)
"""The registry's hints of a digest-shaped token (KnownSubjects.hints): each is reported once
already, where its token ends."""


def _chained(chain: tuple[str, ...], memo: dict[tuple[str, ...], list[bytes]],
             continued: frozenset[tuple[str, ...]] = CONTINUED) -> list[bytes]:
    """The inputs (memo[()]) through `chain`. Each intermediate digest travels as lowercase
    hex, and is hashed once: the hex of every chain in `continued` (those that longer chains
    still to hash continue: see continued_by) is kept in `memo`."""
    digests = _bulk(chain[-1], _hexed(chain[:-1], memo, continued))
    if chain in continued:
        memo[chain] = list(map(binascii.hexlify, digests))
    return digests


def continued_by(chains: tuple[int, ...]) -> frozenset[tuple[str, ...]]:
    """The chains that longer ones among CHAINS[i] for i in `chains` continue: keeping the
    hex of any other (md5 in the vendor set, which no chain continues) only costs memory,
    a third of a worker's peak."""
    return frozenset(CHAINS[i][:k] for i in chains for k in range(1, len(CHAINS[i])))


def _hexed(chain: tuple[str, ...], memo: dict[tuple[str, ...], list[bytes]],
           continued: frozenset[tuple[str, ...]] = CONTINUED) -> list[bytes]:
    """The inputs through `chain`, each digest as lowercase hex: what the next hash reads."""
    if chain not in memo:
        _chained(chain, memo, continued)  # which keeps it: a chain read as hex is continued
    return memo[chain]


def _bulk(name: str, datas: list[bytes]) -> list[bytes]:
    constructor = _CONSTRUCTORS.get(name)
    if constructor is None:
        return list(map(ALGORITHMS[name], datas))
    return list(map(_DIGEST, map(constructor, datas)))


def _prefix_keys(digests: list[bytes]) -> numpy.ndarray:
    """The first 8 bytes of each digest as a big-endian number (shorter ones padded in
    front, as _key reads them)."""
    size = len(digests[0]) if digests else 8
    raw = numpy.frombuffer(b"".join(digests), dtype=numpy.uint8).reshape(len(digests), size)
    width = min(size, 8)
    padded = numpy.zeros((len(digests), 8), dtype=numpy.uint8)
    padded[:, 8 - width:] = raw[:, :width]
    return padded.view(">u8").ravel().astype(numpy.uint64)


def _form_name(chain: tuple[str, ...], category: str, encoding: str) -> str:
    text = category
    for name in chain:
        text = f"{name}({text})"
    return text if encoding == "hex" else f"{encoding}({text})"


def _key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


def _digest_candidates(value: str) -> Iterator[tuple[str, bytes, str]]:
    """(token, digest bytes, how it was written) for everything in `value` that could be a
    digest: hex in either case, base64 of one, and, for a value that is one number, the
    decimal spellings of 32- and 64-bit hashes (signed or not). Short digests (4 and 8 bytes)
    are only taken when they are the whole value: in running text they collide too often."""
    stripped = value.strip()
    # In a long text, the patterns are tried only in runs of their characters (runs_of):
    # at every letter and digit of a MB of log they cost 28 ms.
    if len(value) >= 32:
        for start, end in runs_of(value, _HEX_CHARACTERS, 32):
            for token in _HEX_TOKEN.finditer(value, start, end):
                if len(token.group()) // 2 in _DIGEST_SIZES and len(token.group()) % 2 == 0:
                    yield token.group(), bytes.fromhex(token.group()), "hex"
    if len(value) >= 22:
        for start, end in runs_of(value, _BASE64_CHARACTERS, 22):
            for token in _B64_TOKEN.finditer(value, start, end):
                # Decoded, only a token of a digest's length (not a UUID, say: 27 bytes).
                if len(token.group().rstrip("=")) * 3 // 4 not in _DIGEST_SIZES:
                    continue
                raw = _b64(token.group())
                if raw is not None and len(raw) in _DIGEST_SIZES and len(raw) >= 16:
                    yield token.group(), raw, "base64"
    elif _SHORT_DIGEST.fullmatch(stripped):
        yield stripped, bytes.fromhex(stripped), "hex"
    if _DECIMAL.fullmatch(stripped):
        number = int(stripped)
        if -(1 << 31) <= number < (1 << 32):
            yield stripped, (number % (1 << 32)).to_bytes(4, "big"), "decimal"
        if -(1 << 63) <= number < (1 << 64) and not 0 <= number < (1 << 32):
            yield stripped, (number % (1 << 64)).to_bytes(8, "big"), "decimal"


def _b64(token: str) -> bytes | None:
    text = token.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_")
                                        + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None

"""Binary bodies (SPEC 3.7): recognised by their first bytes, never read as text, and their
metadata turned into values to search.

`kind_of` names a body by its magic bytes (JPEG, PNG, GIF, WebP, HEIC/AVIF, TIFF, PDF, ZIP and
Office files, MP3, MP4/MOV, WebM/Matroska, OGG, FLAC, WAV/AVI, fonts), whatever its
Content-Type says. `metadata` reads what people leave in files: EXIF (GPS position, artist,
copyright, camera owner, description), XMP (dc:creator, dc:rights, xmpRights:Owner, GPS) and
IPTC (by-line, copyright, contact) of images; the document information of a PDF; the
core.xml of Office and OpenDocument files (creator, lastModifiedBy).

Libraries, and what a file costs:
- Pillow reads EXIF, XMP and IPTC of JPEG, WebP, TIFF and GIF: `Image.open` reads the header
  segments and decodes no pixels, so a 3 MB photo costs about a millisecond whatever its size.
  PNG's chunks are walked here (a few us a chunk) and their eXIf handed to Pillow's parser:
  Pillow's own PNG getexif() decodes the pixels when the EXIF comes after them.
- pypdf reads a PDF's cross-reference table and its /Info dictionary (no content stream is
  inflated): a few ms for an ordinary document, linear in its size when the table is broken
  and pypdf rebuilds it by scanning the file.
- zipfile (standard library) reads the central directory and inflates docProps/core.xml or
  meta.xml only, each capped at _MAX_PART bytes.
HEIC/AVIF, audio, video and fonts are recognised and skipped: their metadata needs libraries
(pillow-heif, mutagen) that cost more than they would find in the traffic we see.
"""

import io
import re
import warnings
import zipfile
from collections.abc import Iterator

MAGIC: tuple[tuple[bytes, int, str], ...] = (
    # (bytes, at offset, kind): the signatures each format's specification fixes.
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"), (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"), (b"MM\x00*", 0, "tiff"),
    (b"%PDF-", 0, "pdf"),
    (b"PK\x03\x04", 0, "zip"), (b"PK\x05\x06", 0, "zip"), (b"PK\x07\x08", 0, "zip"),
    (b"ID3", 0, "mp3"),
    (b"\x1a\x45\xdf\xa3", 0, "matroska"),  # WebM too: an EBML header
    (b"OggS", 0, "ogg"),
    (b"fLaC", 0, "flac"),
    (b"wOFF", 0, "woff"), (b"wOF2", 0, "woff2"), (b"OTTO", 0, "otf"),
    (b"\x00\x01\x00\x00\x00", 0, "ttf"),
    (b"ftyp", 4, "iso-media"),  # MP4, MOV, HEIC, AVIF: named by their brand below
    (b"BM", 0, "bmp"),  # followed by the file size: checked in kind_of
    (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"Rar!\x1a\x07", 0, "rar"),
    (b"\x00\x00\x01\x00", 0, "ico"),
)
_RIFF = {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}
_IMAGE_BRANDS = {b"heic": "heic", b"heix": "heic", b"mif1": "heic", b"msf1": "heic",
                 b"heim": "heic", b"heis": "heic", b"avif": "avif", b"avis": "avif"}
# MPEG audio frames without an ID3 tag: 11 bits of sync, then a layer that is not 00.
_MPEG_FRAME = re.compile(rb"\xff[\xe2-\xe7\xf2-\xf7\xfa-\xff]")


def kind_of(body: bytes) -> str | None:
    """The binary format of `body` by its first bytes, or None (text, or unknown)."""
    head = body[:16]
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    for magic, offset, kind in MAGIC:
        if head.startswith(magic, offset):
            if kind == "iso-media":
                return _IMAGE_BRANDS.get(head[8:12], "mp4")
            if kind == "bmp" and int.from_bytes(head[2:6], "little") != len(body):
                continue  # "BM" starts text too
            return kind
    if _MPEG_FRAME.match(head):
        return "mp3"
    return None


def metadata(kind: str, body: bytes) -> Iterator[tuple[str, str]]:
    """(key, text) of what the file says of its people and place; the key names the
    standard and its field (`exif.artist`, `exif.gps`, `pdf.author`, `office.creator`).
    Raises nothing a broken file could cause: a file that cannot be read yields nothing more."""
    reader = _READERS.get(kind)
    if reader is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's and pypdf's complaints about the file
            yield from reader(body)
    except Exception:  # a hostile file may break a library anywhere: what was read counts
        return


# EXIF tags (TIFF/EXIF 2.32) that name a person, by the key they are given.
_EXIF_TEXT = {0x013B: "artist", 0x8298: "copyright", 0x010E: "description",
              0x9C9D: "author", 0x9C9C: "comment", 0x9C9F: "subject"}
_EXIF_IFD_TEXT = {0xA430: "owner", 0x9286: "comment"}
_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
# IPTC IIM (dataset 2): by-line, by-line title, credit, source, copyright, contact, writer.
_IPTC = {(2, 80): "creator", (2, 110): "credit", (2, 116): "copyright",
         (2, 118): "contact", (2, 122): "writer"}
# XMP properties that name people or a place (Dublin Core, XMP Rights, Photoshop, IPTC Core, EXIF).
_XMP_NAMES = ("dc:creator", "dc:rights", "xmpRights:Owner", "photoshop:Credit",
              "photoshop:AuthorsPosition", "Iptc4xmpCore:CreatorContactInfo",
              "Iptc4xmpCore:CiEmailWork", "xmp:CreatorTool", "exif:GPSLatitude",
              "exif:GPSLongitude", "cp:lastModifiedBy", "dc:contributor",
              "meta:initial-creator")
_XMP = re.compile(r"<(%s)\b[^>]*>(.*?)</\1>|\b(%s)=\"([^\"]*)\"" % (
    "|".join(map(re.escape, _XMP_NAMES)), "|".join(map(re.escape, _XMP_NAMES))), re.S)
_TAG = re.compile(r"<[^>]*>")
_MAX_XMP = 1 << 20
_MAX_PART = 1 << 20
"""An Office file's core.xml is a few hundred bytes: a bigger one is not read."""


def _image(body: bytes) -> Iterator[tuple[str, str]]:
    from PIL import Image, IptcImagePlugin

    image = Image.open(io.BytesIO(body))  # the header only: no pixel is decoded
    info = image.info
    raw_exif = info.get("exif")
    if isinstance(raw_exif, bytes):
        yield from _exif(raw_exif)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        yield from _xmp(xmp if isinstance(xmp, str) else xmp.decode("utf-8", "replace"))
    iptc = IptcImagePlugin.getiptcinfo(image) if image.format in ("JPEG", "TIFF") else None
    for dataset, name in _IPTC.items():
        for value in _listed((iptc or {}).get(dataset)):
            yield f"iptc.{name}", value


def _listed(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in items]


def _exif(raw: bytes) -> Iterator[tuple[str, str]]:
    from PIL import Image

    exif = Image.Exif()
    exif.load(raw)
    for tag, name in _EXIF_TEXT.items():
        if (text := _exif_text(exif.get(tag))) is not None:
            yield f"exif.{name}", text
    for tag, name in _EXIF_IFD_TEXT.items():
        if (text := _exif_text(exif.get_ifd(_EXIF_IFD).get(tag))) is not None:
            yield f"exif.{name}", text
    gps = exif.get_ifd(_GPS_IFD)
    latitude, longitude = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if latitude is not None and longitude is not None:
        # `gps` is a location key to the field-name detector (fieldnames.py)
        yield "exif.gps", f"{latitude:.6f},{longitude:.6f}"


def _exif_text(value: object) -> str | None:
    if isinstance(value, bytes):
        # XP* tags are UTF-16LE; UserComment starts with an 8-byte character code.
        if value[:8] in (b"ASCII\0\0\0", b"UNICODE\0", b"\0" * 8):
            code, value = value[:8], value[8:]
            text = value.decode("utf-16" if code == b"UNICODE\0" else "latin-1", "replace")
        else:
            text = value.decode("utf-16-le", "replace")
        value = text
    if not isinstance(value, str):
        return None
    value = value.strip("\0 \t\r\n")
    return value or None


def _degrees(value: object, reference: object) -> float | None:
    """EXIF's degrees, minutes and seconds (rationals) as signed decimal degrees."""
    try:
        degrees, minutes, seconds = (float(part) for part in value)  # type: ignore[union-attr]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    decimal = degrees + minutes / 60 + seconds / 3600
    return -decimal if str(reference).strip("\0").upper() in ("S", "W") else decimal


def _xmp(text: str) -> Iterator[tuple[str, str]]:
    for match in _XMP.finditer(text[:_MAX_XMP]):
        name, inner = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        value = " ".join(_TAG.sub(" ", inner).split())
        if value:
            key = name.partition(":")[2].lower()
            yield f"xmp.{'gps' if key.startswith('gps') else key}", value


def _png(body: bytes) -> Iterator[tuple[str, str]]:
    """PNG's chunks up to the end: eXIf to Pillow's EXIF parser, tEXt/iTXt as they are (XMP,
    Author, Copyright). Compressed text (zTXt, compressed iTXt) is skipped: a bomb's place."""
    position = 8
    while position + 12 <= len(body):
        length = int.from_bytes(body[position:position + 4], "big")
        kind = body[position + 4:position + 8]
        data = body[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"eXIf":
            yield from _exif(data)
        elif kind == b"tEXt":
            keyword, _, text = data.partition(b"\0")
            yield from _png_text(keyword, text.decode("latin-1"))
        elif kind == b"iTXt":
            keyword, _, rest = data.partition(b"\0")
            if rest[:1] == b"\0":  # not compressed
                text = rest[2:].split(b"\0", 2)[-1]
                yield from _png_text(keyword, text.decode("utf-8", "replace"))
        elif kind == b"IEND":
            return


def _png_text(keyword: bytes, text: str) -> Iterator[tuple[str, str]]:
    if keyword == b"XML:com.adobe.xmp":
        yield from _xmp(text)
    elif keyword.lower() in (b"author", b"copyright", b"comment", b"description"):
        yield f"png.{keyword.decode('latin-1').lower()}", text


_PDF_KEYS = {"/Author": "author", "/Creator": "creator", "/Producer": "producer",
             "/Title": "title", "/Subject": "subject", "/Keywords": "keywords"}


def _pdf(body: bytes) -> Iterator[tuple[str, str]]:
    from pypdf import PdfReader

    info = PdfReader(io.BytesIO(body), strict=False).metadata or {}
    for key, name in _PDF_KEYS.items():
        value = info.get(key)
        if isinstance(value, str) and value.strip():
            yield f"pdf.{name}", value.strip()


_OFFICE_PARTS = ("docProps/core.xml", "docProps/custom.xml", "docProps/app.xml", "meta.xml")


def _zip(body: bytes) -> Iterator[tuple[str, str]]:
    """Office (docx, xlsx, pptx) and OpenDocument files are ZIP archives: their properties."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = set(archive.namelist())
        for part in _OFFICE_PARTS:
            if part in names and archive.getinfo(part).file_size <= _MAX_PART:
                with archive.open(part) as handle:
                    text = handle.read(_MAX_PART).decode("utf-8", "replace")
                for key, value in _xmp(text):
                    yield "office." + key.partition(".")[2], value


_READERS = {"jpeg": _image, "webp": _image, "tiff": _image, "gif": _image, "png": _png,
            "pdf": _pdf, "zip": _zip}

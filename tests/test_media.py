"""Binary bodies (SPEC 3.7, issue 19 point 2): recognised by their content, never decoded as
text, their metadata searched.

Testing strategy: real files, made here with the libraries that read them (Pillow writes a
JPEG with EXIF GPS and an Artist, pypdf a PDF with /Author, zipfile a docx core.xml), each
naming a registry subject of policies/subjects.yaml; sent as their own type and as
application/octet-stream, alone and as a multipart file part, through the real Auditor.
Random bytes behind a JPEG signature must reach no text decoder (the Extraction's layers)."""

import io
import random
import zipfile

import pytest
from mitmproxy import http

from conftest import make_flow
from gdpr_audit import media
from gdpr_audit.audit import Auditor, FlowAudit
from gdpr_audit.fields import request_fields
from gdpr_audit.policy import load_policy
from test_cli import ROOT

NAME, EMAIL = "Marie Dupont", "marie.dupont@example.fr"  # cust-001
URL = "https://upload.photos-example.com/v1/files"
TEXT_DECODERS = {"base64", "base32", "hex", "lz-string", "base58", "url", "html", "jwt"}


@pytest.fixture(scope="module")
def auditor() -> Auditor:
    return Auditor(load_policy(ROOT / "policies"))


def jpeg(artist: str = NAME) -> bytes:
    from PIL import Image
    exif = Image.Exif()
    exif[0x013B] = artist  # Artist
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.6), 3: "E", 4: (2.0, 17.0, 40.2)}  # GPS IFD
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "JPEG", exif=exif)
    return out.getvalue()


def pdf(author: str = NAME) -> bytes:
    from pypdf import PdfWriter
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Author": author, "/Title": "Facture"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx(modified_by: str = EMAIL) -> bytes:
    core = ('<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org'
            '/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<dc:creator>Someone</dc:creator><cp:lastModifiedBy>{modified_by}</cp:lastModifiedBy>'
            '</cp:coreProperties>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        archive.writestr("docProps/core.xml", core)
    return out.getvalue()


def upload(body: bytes, content_type: str) -> http.HTTPFlow:
    return make_flow(URL, "POST", body, {"content-type": content_type})


def names_subject(result: FlowAudit, category: str = "name") -> bool:
    return any(f.subject == "cust-001" and f.category == category for f in result.findings)


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream"])
def test_jpeg_exif_gives_location_and_names_the_artist(auditor: Auditor, content_type: str) -> None:
    result = auditor.audit(upload(jpeg(), content_type))
    assert result.error is None and result.status == "audited"
    assert names_subject(result)
    assert any(f.category == "location" and f.field.key == "exif.gps" for f in result.findings)


def test_pdf_author_names_the_subject(auditor: Auditor) -> None:
    result = auditor.audit(upload(pdf(), "application/pdf"))
    assert names_subject(result)
    assert any(f.field.key == "pdf.author" for f in result.findings)


def test_office_last_modified_by_names_the_subject(auditor: Auditor) -> None:
    body = docx()
    result = auditor.audit(upload(body, "application/vnd.openxmlformats-officedocument."
                                        "wordprocessingml.document"))
    assert names_subject(result, "email")


def test_multipart_file_part_is_read_as_a_file(auditor: Auditor) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nholidays\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; "
            f"filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    body += jpeg() + f"\r\n--{boundary}--\r\n".encode()
    result = auditor.audit(upload(body, f"multipart/form-data; boundary={boundary}"))
    assert names_subject(result)
    assert any(f.category == "location" and f.field.key == "photo.exif.gps"
               for f in result.findings)


def test_random_bytes_behind_a_jpeg_signature_reach_no_text_decoder() -> None:
    noise = random.Random(3).randbytes(3 << 20)
    for body in (b"\xff\xd8\xff\xe0" + noise, noise[:2] + b"\xff\xd8\xff" + noise):
        flow = upload(body, "image/jpeg")
        extraction = request_fields(flow.request, 10 << 20)
        layers = {layer.split(".")[0] for f in extraction.fields for layer in f.layers}
        assert not layers & TEXT_DECODERS
        if body.startswith(b"\xff\xd8\xff"):
            assert not [f for f in extraction.fields if f.location == "body"]
        else:  # no signature, yet image/jpeg and no UTF-8: a file all the same
            assert not [f for f in extraction.fields if f.location == "body"]


@pytest.mark.parametrize(("head", "kind"), [
    (b"\xff\xd8\xff\xe1", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF89a", "gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"), (b"\x00\x00\x00\x18ftypheic", "heic"),
    (b"\x00\x00\x00\x1cftypavif", "avif"), (b"\x00\x00\x00\x20ftypisom", "mp4"),
    (b"%PDF-1.7", "pdf"), (b"PK\x03\x04", "zip"), (b"ID3\x04", "mp3"), (b"\xff\xfb\x90", "mp3"),
    (b"\x1a\x45\xdf\xa3", "matroska"), (b"OggS", "ogg"), (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
    (b"wOFF", "woff"), (b"wOF2", "woff2"), (b"OTTO", "otf"), (b"\x00\x01\x00\x00\x00\x0c", "ttf"),
    # what must stay text
    (b'{"email": "x"}', None), (b"<svg xmlns=", None), (b"BMW drivers", None), (b"", None),
])
def test_kind_by_first_bytes(head: bytes, kind: str | None) -> None:
    assert media.kind_of(head + b"\x00" * 32 if kind else head) == kind


def test_broken_files_yield_what_was_read() -> None:
    for kind, body in (("jpeg", jpeg()[:200]), ("pdf", pdf()[:100]), ("zip", docx()[:50]),
                       ("png", b"\x89PNG\r\n\x1a\n" + b"\xff" * 40)):
        assert isinstance(list(media.metadata(kind, body)), list)

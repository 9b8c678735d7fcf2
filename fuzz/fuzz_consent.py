"""Fuzz consent-signal parsing: every decoder refuses bad input with MalformedSignal only,
read_consent never raises, a malformed signal never grants, and what the TCF decoder
accepts is within the format's own bounds.

Input: lines `<location>:<key>=<value>`, each one field of a request (fuzz/seeds.py)."""


import _common
import atheris

with atheris.instrument_imports(include=["gdpr_audit"]):
    from gdpr_audit import consent
    from gdpr_audit.fields import Field

DECODERS = (consent.decode_tc_string, consent.decode_gcs, consent.decode_gcd,
            consent.decode_onetrust, consent.decode_cookiebot, consent.decode_didomi,
            consent.decode_tarteaucitron)


def fields_of(data: bytes) -> list[Field]:
    fields = []
    for line in data.decode("utf-8", "replace").split("\n"):
        location, _, rest = line.partition(":")
        key, _, value = rest.partition("=")
        fields.append(Field(location, key, value))
    return fields


def check_tc(tc: dict) -> None:
    """A decoded TC string stays inside what its bit widths allow."""
    assert tc["version"] == 2
    assert all(1 <= p <= 24 for p in tc["purpose_consents"] + tc["purpose_legitimate_interests"])
    assert all(1 <= v <= tc["max_vendor_id_consent"] for v in tc["vendor_consents"])
    assert all(1 <= v <= tc["max_vendor_id_legitimate_interest"]
               for v in tc["vendor_legitimate_interests"])


def test_one_input(data: bytes) -> None:
    fields = fields_of(data)
    for field in fields:
        for decode in DECODERS:
            try:
                decoded = decode(field.value)
            except consent.MalformedSignal:
                continue
            if decode is consent.decode_tc_string:
                check_tc(decoded)
    try:
        consent.decode_axeptio({f.key: f.value for f in fields})
    except consent.MalformedSignal:
        pass
    reading = consent.read_consent(fields, {})
    # A family that did not decode decides nothing on its own.
    if reading.decisions.malformed:
        assert set(reading.record["malformed"]) == set(reading.decisions.malformed)


if __name__ == "__main__":
    _common.run(test_one_input, "consent")

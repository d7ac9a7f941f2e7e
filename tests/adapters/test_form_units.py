"""The referral form's checks (pure): Dutch messages for the BSN's 11-test, dates,
postcodes, required fields and the 'informed' question; the CSRF token's binding."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.adapters.referral_form import (
    FormState,
    check_bsn_nl,
    parse_birth_date,
    validate_referral,
)
from tests.conftest import BSN

TODAY = dt.date(2026, 11, 28)
GOOD = {
    "naam": "Barend Testmans",
    "bsn": BSN,
    "geboortedatum": "03-02-1980",
    "straat": "Voorbeeldstraat 12",
    "postcode": "3011ab",
    "woonplaats": "Rotterdam",
    "reden": "reden",
    "doel": "doel",
    "geinformeerd": "ja",
    "hoe_geinformeerd": "in een gesprek op 12 november",
    "melder_naam": "J. de Vries",
}


def test_a_complete_form_becomes_the_referral_body() -> None:
    body, errors = validate_referral(GOOD, ["ggz-a"], ["ggz-a", "vt-b"], TODAY)
    assert errors == {}
    assert body is not None
    assert body["persoon"]["geboortedatum"] == "1980-02-03"
    assert body["persoon"]["adres"]["postcode"] == "3011 AB"
    assert body["partners"] == ["ggz-a"]
    assert body["geinformeerd"] is True
    assert body["hoe_geinformeerd"] == GOOD["hoe_geinformeerd"]
    assert "waarom_niet_geinformeerd" not in body


def test_everything_missing_says_so_in_dutch_in_form_order() -> None:
    body, errors = validate_referral({}, [], [], TODAY)
    assert body is None
    assert list(errors)[:3] == ["naam", "bsn", "geboortedatum"]
    assert errors["bsn"] == "Vul het BSN in."
    assert errors["geinformeerd"] == "Geef aan of de persoon is geïnformeerd."


@pytest.mark.parametrize(
    ("bsn", "message"),
    [
        ("12345678", "Een BSN bestaat uit 9 cijfers."),
        ("12345678a", "Een BSN bestaat uit 9 cijfers."),
        ("123456789", "Dit BSN is ongeldig: het voldoet niet aan de elfproef."),
        (BSN[:-1] + str((int(BSN[-1]) + 1) % 10), "elfproef"),
    ],
)
def test_bsn_messages(bsn: str, message: str) -> None:
    result = check_bsn_nl(bsn)
    assert result is not None
    assert message in result
    assert bsn not in result  # never echo the number


def test_a_valid_bsn_passes() -> None:
    assert check_bsn_nl(BSN) is None


@pytest.mark.parametrize(
    ("value", "iso", "message"),
    [
        ("03-02-1980", "1980-02-03", None),
        ("3-2-1980", "1980-02-03", None),
        ("1980-02-03", "1980-02-03", None),
        ("31-02-1980", None, "Deze geboortedatum bestaat niet."),
        ("01-01-2027", None, "De geboortedatum ligt in de toekomst."),
        ("01-01-1850", None, "De geboortedatum ligt te ver in het verleden."),
        ("1980/02/03", None, "Vul de geboortedatum in als dd-mm-jjjj"),
        ("gisteren", None, "Vul de geboortedatum in als dd-mm-jjjj"),
    ],
)
def test_birth_dates(value: str, iso: str | None, message: str | None) -> None:
    parsed, error = parse_birth_date(value, TODAY)
    assert parsed == iso
    if message is None:
        assert error is None
    else:
        assert error is not None
        assert error.startswith(message)


def test_informed_needs_how_or_why_not() -> None:
    _, errors = validate_referral({**GOOD, "hoe_geinformeerd": ""}, [], [], TODAY)
    assert errors == {"hoe_geinformeerd": "Beschrijf hoe de persoon is geïnformeerd."}
    _, errors = validate_referral({**GOOD, "geinformeerd": "nee"}, [], [], TODAY)
    assert errors == {"waarom_niet": "Geef aan waarom de persoon niet is geïnformeerd."}
    body, errors = validate_referral(
        {**GOOD, "geinformeerd": "nee", "waarom_niet": "veiligheid"}, [], [], TODAY
    )
    assert body is not None
    assert body["waarom_niet_geinformeerd"] == "veiligheid"
    _, errors = validate_referral({**GOOD, "geinformeerd": "misschien"}, [], [], TODAY)
    assert "geinformeerd" in errors


def test_postcode_partners_and_length() -> None:
    _, errors = validate_referral({**GOOD, "postcode": "0123 AB"}, [], [], TODAY)
    assert errors == {"postcode": "Vul een geldige postcode in, bijvoorbeeld 1234 AB."}
    _, errors = validate_referral(GOOD, ["onbekend"], ["ggz-a"], TODAY)
    assert errors == {"partners": "Kies alleen partners uit de lijst."}
    _, errors = validate_referral(GOOD, ["ggz-a", "ggz-a"], ["ggz-a"], TODAY)
    assert "partners" in errors
    _, errors = validate_referral({**GOOD, "reden": "x" * 4001}, [], [], TODAY)
    assert errors == {"reden": "Gebruik hooguit 4000 tekens."}


def test_csrf_token_is_bound_to_its_cookie() -> None:
    state = FormState("org")
    token = state.token_for("cookie-a")
    assert state.csrf_ok("cookie-a", token)
    assert not state.csrf_ok("cookie-b", token)
    assert not state.csrf_ok(None, token)
    assert not state.csrf_ok("cookie-a", None)
    assert not state.csrf_ok("cookie-a", "")
    # Another process (another secret) does not accept it.
    assert not FormState("org").csrf_ok("cookie-a", token)

"""The referral form (aanmeldformulier) served by a partner's adapter at `/aanmelden`.

A professional fills it in; the adapter checks it (Dutch messages: the BSN's 11-test,
dates, required fields), seals it to the region's ZVH organisation and sends it
through the hub as a referral (`Outbound.perform("referrals", ...)`). The ZVH's own
adapter delivers it to its case system's webhook.

CSRF: GET sets a random cookie (HttpOnly, SameSite=Strict) and puts
HMAC(secret, cookie) in the form; a POST without both, or with a token for another
cookie, is 403 and changes nothing. The secret lives in this process only, so a
restart expires open forms (the professional reloads). Each rendered form carries a
random submission id, used as the idempotency key: a double click or a reload of the
POST sends the referral once.

Must not: log a field, or echo a value outside the form it came from (the page is
served with `Cache-Control: no-store`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from aiohttp import web

from gateway.adapters.adapter_app import LOCAL
from gateway.adapters.local_models import ReferralRequest
from gateway.adapters.outbound import HubUnavailable
from gateway.crypto.encoding import sha256
from gateway.crypto.oprf import is_valid_bsn
from gateway.errors import ProblemError

log = logging.getLogger(__name__)
FORM_PATH = "/aanmelden"
COOKIE = "zvh_aanmelden"
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
TEXT_FIELDS = (
    "naam",
    "bsn",
    "geboortedatum",
    "straat",
    "postcode",
    "woonplaats",
    "reden",
    "doel",
    "geinformeerd",
    "hoe_geinformeerd",
    "waarom_niet",
    "melder_naam",
    "melder_telefoon",
)
REQUIRED = {
    "naam": "Vul de naam van de persoon in.",
    "bsn": "Vul het BSN in.",
    "geboortedatum": "Vul de geboortedatum in.",
    "straat": "Vul de straat en het huisnummer in.",
    "postcode": "Vul de postcode in.",
    "woonplaats": "Vul de woonplaats in.",
    "reden": "Vul de reden van de aanmelding in.",
    "doel": "Vul het doel van de aanmelding in.",
    "geinformeerd": "Geef aan of de persoon is geïnformeerd.",
    "melder_naam": "Vul uw naam in.",
}
MAX_LENGTH = 4000
_POSTCODE = re.compile(r"^[1-9][0-9]{3} ?[A-Za-z]{2}$")
_DATE_NL = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})$")
_DATE_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class FormState:
    def __init__(self, organisation: str) -> None:
        self.organisation = organisation
        self.secret = secrets.token_bytes(32)

    def token_for(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), "sha256").hexdigest()

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(sha256(self.token_for(cookie).encode()), sha256(token.encode()))


FORM = web.AppKey("referral_form", FormState)


def check_bsn_nl(value: str) -> str | None:
    """A Dutch message for a BSN that is not 9 digits or fails the 11-test."""
    if not re.fullmatch(r"[0-9]{9}", value):
        return "Een BSN bestaat uit 9 cijfers."
    if not is_valid_bsn(value):
        return "Dit BSN is ongeldig: het voldoet niet aan de elfproef. Controleer het nummer."
    return None


def parse_birth_date(value: str, today: dt.date) -> tuple[str | None, str | None]:
    """(ISO date, None) or (None, Dutch message); dd-mm-jjjj or jjjj-mm-dd."""
    m = _DATE_NL.match(value)
    parts = (m.group(3), m.group(2), m.group(1)) if m else None
    if parts is None and (iso := _DATE_ISO.match(value)):
        parts = (iso.group(1), iso.group(2), iso.group(3))
    if parts is None:
        return None, "Vul de geboortedatum in als dd-mm-jjjj, bijvoorbeeld 03-02-1980."
    try:
        born = dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None, "Deze geboortedatum bestaat niet. Controleer dag en maand."
    if born > today:
        return None, "De geboortedatum ligt in de toekomst."
    if born.year < 1900:
        return None, "De geboortedatum ligt te ver in het verleden."
    return born.isoformat(), None


def validate_referral(
    form: Mapping[str, str], chosen: Sequence[str], partners: Sequence[str], today: dt.date
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The referral body, or the errors per field (Dutch), in the order of the form."""
    values = {k: form.get(k, "").strip() for k in TEXT_FIELDS}
    errors: dict[str, str] = {}
    for field, message in REQUIRED.items():
        if not values[field]:
            errors[field] = message
    for field, value in values.items():
        if len(value) > MAX_LENGTH:
            errors[field] = f"Gebruik hooguit {MAX_LENGTH} tekens."
    if values["bsn"] and "bsn" not in errors and (msg := check_bsn_nl(values["bsn"])):
        errors["bsn"] = msg
    birth: str | None = None
    if values["geboortedatum"] and "geboortedatum" not in errors:
        birth, msg = parse_birth_date(values["geboortedatum"], today)
        if msg:
            errors["geboortedatum"] = msg
    if values["postcode"] and not _POSTCODE.match(values["postcode"]):
        errors["postcode"] = "Vul een geldige postcode in, bijvoorbeeld 1234 AB."
    informed = values["geinformeerd"]
    if informed and informed not in ("ja", "nee"):
        errors["geinformeerd"] = REQUIRED["geinformeerd"]
    if informed == "ja" and not values["hoe_geinformeerd"]:
        errors["hoe_geinformeerd"] = "Beschrijf hoe de persoon is geïnformeerd."
    if informed == "nee" and not values["waarom_niet"]:
        errors["waarom_niet"] = "Geef aan waarom de persoon niet is geïnformeerd."
    unknown = [p for p in chosen if p not in partners]
    if unknown or len(set(chosen)) != len(chosen):
        errors["partners"] = "Kies alleen partners uit de lijst."
    if errors:
        order = [*TEXT_FIELDS, "partners"]
        return None, {k: errors[k] for k in sorted(errors, key=order.index)}
    postcode = values["postcode"].replace(" ", "").upper()
    body: dict[str, Any] = {
        "soort": "aanmelding",
        "persoon": {
            "naam": values["naam"],
            "bsn": values["bsn"],
            "geboortedatum": birth,
            "adres": {
                "straat": values["straat"],
                "postcode": f"{postcode[:4]} {postcode[4:]}",
                "woonplaats": values["woonplaats"],
            },
        },
        "reden": values["reden"],
        "doel": values["doel"],
        "partners": list(chosen),
        "geinformeerd": informed == "ja",
        "melder": {"naam": values["melder_naam"], "telefoon": values["melder_telefoon"]},
    }
    if informed == "ja":
        body["hoe_geinformeerd"] = values["hoe_geinformeerd"]
    else:
        body["waarom_niet_geinformeerd"] = values["waarom_niet"]
    return body, {}


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.adapters", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )
    return env.get_template("aanmelden.html")


def _page(status: int = 200, **context: Any) -> web.Response:
    html = _template().render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


async def _partners(request: web.Request) -> list[str]:
    """Organisations a referral may ask to invite: the region's members but the hub,
    this organisation and the ZVH itself (which receives the referral anyway)."""
    client = request.app[LOCAL].outbound.client
    try:
        peers = await client.directory()
    except Exception:  # the form still works; the list is then empty
        log.warning("directory unavailable for the form")
        return []
    me = client.keys.org
    return sorted(
        p.org
        for p in peers.values()
        if p.status == "active" and p.role in ("partner", "incidental") and p.org != me
    )


def _secure(request: web.Request) -> bool:
    return request.app[LOCAL].secure_cookies


def _fresh_form(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    state = request.app[FORM]
    cookie = request.cookies.get(COOKIE) or secrets.token_urlsafe(32)
    response = _page(
        status,
        csrf=state.token_for(cookie),
        submission=context.pop("submission", None) or secrets.token_urlsafe(16),
        organisation=state.organisation,
        values=context.pop("values", {}),
        errors=context.pop("errors", {}),
        chosen=context.pop("chosen", []),
        **context,
    )
    response.set_cookie(
        COOKIE, cookie, path=FORM_PATH, httponly=True, samesite="Strict", secure=_secure(request)
    )
    return response


async def get_form(request: web.Request) -> web.StreamResponse:
    return _fresh_form(request, partners=await _partners(request))


async def post_form(request: web.Request) -> web.StreamResponse:
    state = request.app[FORM]
    form = await request.post()
    token = form.get("csrf")
    if not state.csrf_ok(request.cookies.get(COOKIE), token if isinstance(token, str) else None):
        return _page(403, forbidden=True)
    fields = {k: v for k, v in form.items() if isinstance(v, str) and k in TEXT_FIELDS}
    chosen = [v for v in form.getall("partners", []) if isinstance(v, str)]
    submission = form.get("inzending")
    if not isinstance(submission, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", submission):
        return _page(403, forbidden=True)
    partners = await _partners(request)
    now_ms = request.app[LOCAL].outbound.clock.now_ms()
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    body, errors = validate_referral(fields, chosen, partners, today)
    common = {"values": fields, "chosen": chosen, "partners": partners, "submission": submission}
    if body is None:
        return _fresh_form(request, 400, errors=errors, **common)
    outbound = request.app[LOCAL].outbound
    try:
        outcome = await outbound.perform(
            "referrals", f"form:{submission}", ReferralRequest(body=body)
        )
    except HubUnavailable:
        failure = "De aanmelding kon nu niet worden verzonden. Probeer het later opnieuw."
        return _fresh_form(request, 502, failure=failure, **common)
    except ProblemError as exc:
        log.warning("referral refused", extra={"code": exc.code})
        failure = "De aanmelding is geweigerd. Neem contact op met uw functioneel beheerder."
        return _fresh_form(request, exc.status, failure=failure, **common)
    if outcome.status >= 400:
        log.warning("referral refused by the hub", extra={"code": outcome.body.get("code")})
        failure = "De aanmelding is geweigerd. Neem contact op met uw functioneel beheerder."
        return _fresh_form(request, outcome.status, failure=failure, **common)
    log.info("referral sent")
    return _page(200, sent=True, reference=str(outcome.body.get("exchange_id", "")))


def add_form_routes(app: web.Application, organisation: str) -> None:
    app[FORM] = FormState(organisation)
    app.router.add_get(FORM_PATH, get_form)
    app.router.add_post(FORM_PATH, post_form)

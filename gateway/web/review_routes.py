"""The review pages (`/review/`, server-rendered, Dutch) and the review JSON API
(`/api/v1/review/`), for people with a login session (issue 6, PROTOCOL §2).

Owns the session cookie and the CSRF checks. The cookie holds only a random session
id (HttpOnly, SameSite=Strict, Secure when the hub is served over https); the
session itself is in `ReviewAuth.sessions`. Forms that change state carry a CSRF
token bound to the session (the login form, before there is a session, a
double-submit cookie). Without a session pages redirect to the login page and the
API answers 401. Organisation signatures are refused before this module is reached
(`middleware.authenticate`: 403 forbidden-role).

Must not: log a password, a form body or a query (filters may name a case).
"""

from __future__ import annotations

import datetime
import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import jinja2
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.crypto.pid_inputs import PseudonymInputError
from gateway.errors import (
    CsrfRejected,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from gateway.services import ops, review_export
from gateway.services import review as review_svc
from gateway.services.review_auth import Session, csrf_ok
from gateway.web.state import HUB

routes = web.RouteTableDef()

SESSION_COOKIE = "zvh_review"
LOGIN_CSRF_COOKIE = "zvh_login_csrf"
LOGIN_PATH = "/review/login"
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
_API_HEADERS = {"Cache-Control": "no-store"}


def _when(ms: object) -> str:
    if not isinstance(ms, int):
        return ""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    return env


def _secure(request: web.Request) -> bool:
    return request.app[HUB].settings.http.scheme == "https"


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = _templates().get_template(template).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
    )


def _session(request: web.Request) -> Session | None:
    return request.app[HUB].review_auth.sessions.get(request.cookies.get(SESSION_COOKIE))


Page = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def page(fn: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for people with a session; without one, off to the login page."""

    @functools.wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        if session is None:
            raise web.HTTPFound(LOGIN_PATH)
        return await fn(request, session)

    return wrapper


def api(fn: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A review API call: a session or 401 (never a redirect for a machine)."""

    @functools.wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        if session is None:
            raise Unauthenticated("no review session")
        return await fn(request, session)

    return wrapper


def _json(data: Any) -> web.Response:
    return web.json_response(data, headers=_API_HEADERS)


# -- login and logout ---------------------------------------------------------------


@routes.get("/review/")
@routes.get("/review")
async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/review/exchanges" if _session(request) else LOGIN_PATH)


def _login_form(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = _render(request, "login.html", status=status, csrf=token, error=error, user=None)
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


@routes.get(LOGIN_PATH)
async def login_page(request: web.Request) -> web.StreamResponse:
    return _login_form(request)


@routes.post(LOGIN_PATH)
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form.get("csrf")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not isinstance(token, str) or expected is None or not csrf_ok(expected, token):
        raise CsrfRejected("The form's CSRF token is missing or wrong.")
    name, password = form.get("name"), form.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
        return _login_form(request, status=400, error="Vul gebruikersnaam en wachtwoord in.")
    session = await request.app[HUB].review_auth.login(name[:64], password)
    if session is None:
        # One message for a wrong name, a wrong password and a locked account.
        return _login_form(
            request,
            status=401,
            error="Inloggen mislukt. Controleer uw gegevens of probeer het later opnieuw.",
        )
    response = web.HTTPSeeOther("/review/exchanges")
    _set_cookie(request, response, SESSION_COOKIE, session.sid)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    raise response


@routes.post("/review/logout")
@page
async def logout(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not csrf_ok(session.csrf, token):
        raise CsrfRejected("The form's CSRF token is missing or wrong.")
    await request.app[HUB].review_auth.logout(session)
    response = web.HTTPSeeOther(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# -- the reports, as pages and as JSON ----------------------------------------------


def _filter_params(request: web.Request) -> dict[str, str]:
    return {k: request.query[k] for k in review_svc.FILTER_KEYS if request.query.get(k)}


async def _exchanges(request: web.Request, session: Session) -> dict[str, Any]:
    flt = review_svc.parse_filter(request.query)
    before, limit = review_svc.parse_page(request.query)
    review = request.app[HUB].review
    data = await review.exchanges(flt, before, limit)
    await review.record_report(
        session.user, "exchanges", {**_filter_params(request), "before": before}
    )
    return data


async def _exchange(request: web.Request, session: Session) -> dict[str, Any]:
    exchange_id = request.match_info["exchange_id"]
    review = request.app[HUB].review
    data = await review.exchange(exchange_id)
    await review.record_report(session.user, "exchange", {"exchange_id": exchange_id})
    return data


async def _members(request: web.Request, session: Session) -> dict[str, Any]:
    review = request.app[HUB].review
    data = await review.members()
    await review.record_report(session.user, "members", {})
    return data


async def _refusals(request: web.Request, session: Session) -> dict[str, Any]:
    before, limit = review_svc.parse_page(request.query)
    review = request.app[HUB].review
    data = await review.refusals(before, limit)
    await review.record_report(session.user, "refusals", {"before": before})
    return data


@routes.get("/api/v1/review/exchanges")
@api
async def api_exchanges(request: web.Request, session: Session) -> web.StreamResponse:
    return _json(await _exchanges(request, session))


@routes.get("/api/v1/review/exchanges/{exchange_id}")
@api
async def api_exchange(request: web.Request, session: Session) -> web.StreamResponse:
    return _json(await _exchange(request, session))


@routes.get("/api/v1/review/members")
@api
async def api_members(request: web.Request, session: Session) -> web.StreamResponse:
    return _json(await _members(request, session))


@routes.get("/api/v1/review/refusals")
@api
async def api_refusals(request: web.Request, session: Session) -> web.StreamResponse:
    return _json(await _refusals(request, session))


def _common(session: Session) -> dict[str, Any]:
    return {"user": session.user, "role": session.role.value, "csrf": session.csrf}


async def _ledger(request: web.Request, session: Session) -> dict[str, Any]:
    hub = request.app[HUB]
    check = await ops.check_ledger(hub.ledger, hub.db, hub.keys.signing_key, None)
    data = await hub.review.ledger_status(
        {"ok": check.ok, "size": check.size, "problem": check.problem}
    )
    await hub.review.record_report(session.user, "ledger-status", {})
    return data


@routes.get("/api/v1/review/ledger")
@api
async def api_ledger(request: web.Request, session: Session) -> web.StreamResponse:
    return _json(await _ledger(request, session))


@routes.get("/review/ledger")
@page
async def ledger_page(request: web.Request, session: Session) -> web.StreamResponse:
    return _render(request, "ledger.html", data=await _ledger(request, session), **_common(session))


@routes.get("/review/exchanges")
@page
async def exchanges_page(request: web.Request, session: Session) -> web.StreamResponse:
    data = await _exchanges(request, session)
    params = _filter_params(request)
    return _render(
        request,
        "exchanges.html",
        data=data,
        params=params,
        types=list(review_svc.TYPE_ALIASES),
        **_common(session),
    )


@routes.get("/review/exchanges/{exchange_id}")
@page
async def exchange_page(request: web.Request, session: Session) -> web.StreamResponse:
    return _render(
        request, "exchange.html", data=await _exchange(request, session), **_common(session)
    )


@routes.get("/review/members")
@page
async def members_page(request: web.Request, session: Session) -> web.StreamResponse:
    return _render(
        request, "members.html", data=await _members(request, session), **_common(session)
    )


@routes.get("/review/refusals")
@page
async def refusals_page(request: web.Request, session: Session) -> web.StreamResponse:
    return _render(
        request, "refusals.html", data=await _refusals(request, session), **_common(session)
    )


# -- subject access (inzage, GDPR art. 15) --------------------------------------------


class SubjectReportIn(BaseModel):
    """Either `pid`, or `bsn` and `birth_date` (the hub computes the pid through the
    pseudonymiser); never both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: str | None = Field(default=None, max_length=128)
    bsn: str | None = Field(default=None, max_length=16)
    birth_date: str | None = Field(default=None, max_length=10)
    format: Literal["json", "csv"] = "json"


NO_PSEUDONYMISER = (
    "Deze hub is niet aangesloten op de landelijke pseudonimiseringsdienst: zoeken op"
    " BSN en geboortedatum kan hier niet. Zoek op pseudoniem (pid)."
)


async def _pid_from_bsn(request: web.Request, bsn: str, birth_date: str) -> str:
    """The subject's pid from BSN and birth date, through the hub's pseudonymiser.
    Bad input: InvalidRequest whose messages (English `msg`, Dutch `msg_nl`) never
    repeat the value."""
    national = request.app[HUB].national
    if not national.can_compute_pids:
        raise ServiceUnavailable(
            "This hub has no pseudonymiser: ask for the report by pid instead."
        )
    try:
        return await national.pid_of(bsn, birth_date)
    except PseudonymInputError as exc:
        raise InvalidRequest(
            "Invalid BSN or birth date.",
            errors=[{"loc": ["body", exc.field], "msg": str(exc), "msg_nl": exc.dutch}],
        ) from None


def _csv_response(text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={**_API_HEADERS, "Content-Disposition": 'attachment; filename="inzage.csv"'},
    )


@routes.get("/api/v1/review/session")
@api
async def api_session(request: web.Request, session: Session) -> web.StreamResponse:
    """Who is logged in, and the CSRF token that POSTs to the review API must carry."""
    return _json({"user": session.user, "role": session.role.value, "csrf": session.csrf})


@routes.post("/api/v1/review/subject-report")
@api
async def api_subject_report(request: web.Request, session: Session) -> web.StreamResponse:
    if not csrf_ok(session.csrf, request.headers.get("X-CSRF-Token")):
        raise CsrfRejected("The X-CSRF-Token header is missing or wrong.")
    try:
        wanted = SubjectReportIn.model_validate_json(await request.read())
    except ValidationError as exc:
        raise InvalidRequest(
            "Invalid request.",
            errors=[{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    by_bsn = wanted.bsn is not None or wanted.birth_date is not None
    if by_bsn == (wanted.pid is not None):
        raise InvalidRequest(
            "Give either pid, or bsn and birth_date.",
            errors=[{"loc": ["body"], "msg": "either pid, or bsn and birth_date"}],
        )
    if by_bsn:
        pid = await _pid_from_bsn(request, wanted.bsn or "", wanted.birth_date or "")
    else:
        pid = wanted.pid or ""
    review = request.app[HUB].review
    rows = await review.subject_report(
        session.user, pid, wanted.format, by="bsn" if by_bsn else "pid"
    )
    if wanted.format == "csv":
        return _csv_response(review_svc.subject_csv(rows))
    return _json({"entries": rows})


def _subject_page(
    request: web.Request,
    session: Session,
    *,
    status: int = 200,
    rows: list[dict[str, Any]] | None = None,
    pid: str = "",
    by: str = "",
    error: str | None = None,
) -> web.Response:
    national = request.app[HUB].national
    return _render(
        request,
        "subject.html",
        status=status,
        rows=rows,
        pid=pid,
        by=by,
        error=error,
        bsn_available=national.can_compute_pids,
        no_pseudonymiser=NO_PSEUDONYMISER,
        **_common(session),
    )


@routes.get("/review/subject")
@page
async def subject_form(request: web.Request, session: Session) -> web.StreamResponse:
    return _subject_page(request, session)


@routes.post("/review/subject")
@page
async def subject_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Two forms post here: by pid (`pid`), or by BSN and birth date (`bsn`,
    `birth_date`). A BSN is never put back into the page, a URL or a log."""
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not csrf_ok(session.csrf, token):
        raise CsrfRejected("The form's CSRF token is missing or wrong.")
    pid, bsn, birth, fmt = (form.get(k) for k in ("pid", "bsn", "birth_date", "format"))
    if fmt not in ("html", "csv"):
        raise InvalidRequest("Invalid form.")
    if isinstance(bsn, str) and isinstance(birth, str) and pid is None:
        if not request.app[HUB].national.can_compute_pids:
            return _subject_page(request, session, status=503, error=NO_PSEUDONYMISER)
        try:
            pid = await _pid_from_bsn(request, bsn.strip()[:16], birth.strip()[:10])
        except InvalidRequest as exc:
            message = " ".join(str(e.get("msg_nl", "")) for e in exc.errors) or "Ongeldige invoer."
            return _subject_page(request, session, status=400, error=message)
        except (ServiceUnavailable, RateLimited):
            return _subject_page(
                request,
                session,
                status=503,
                error="De pseudonimiseringsdienst antwoordt nu niet. Probeer het later opnieuw.",
            )
        by = "bsn"
    elif isinstance(pid, str) and bsn is None and birth is None:
        by = "pid"
    else:
        raise InvalidRequest("Invalid form.")
    review = request.app[HUB].review
    try:
        rows = await review.subject_report(session.user, pid, fmt, by=by)
    except InvalidRequest:
        return _subject_page(
            request,
            session,
            status=400,
            error="Dit is geen geldig pseudoniem: een pid bestaat uit 128 hexadecimale tekens.",
        )
    if fmt == "csv":
        return _csv_response(review_svc.subject_csv(rows))
    return _subject_page(request, session, rows=rows, pid=pid.strip().lower(), by=by)


async def _export(request: web.Request, session: Session) -> web.Response:
    hub = request.app[HUB]
    check = await ops.check_ledger(hub.ledger, hub.db, hub.keys.signing_key, None)
    head = hub.ledger.head
    data = await review_export.compliance_zip(
        hub.review,
        user=session.user,
        ledger_note=None if head is None else head.note,
        self_check=check,
    )
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={
            **_API_HEADERS,
            "Content-Disposition": 'attachment; filename="compliance-export.zip"',
        },
    )


@routes.post("/api/v1/review/compliance-export")
@api
async def api_compliance_export(request: web.Request, session: Session) -> web.StreamResponse:
    if not csrf_ok(session.csrf, request.headers.get("X-CSRF-Token")):
        raise CsrfRejected("The X-CSRF-Token header is missing or wrong.")
    return await _export(request, session)


@routes.post("/review/compliance-export")
@page
async def compliance_export_page(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    token = form.get("csrf")
    if not isinstance(token, str) or not csrf_ok(session.csrf, token):
        raise CsrfRejected("The form's CSRF token is missing or wrong.")
    return await _export(request, session)

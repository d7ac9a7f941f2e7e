"""The hub's side of the national check: pseudonym evaluation, known-checks, canary.

- `evaluate` forwards a member's blinded elements to the pseudonymiser (signed as the
  hub) and hands back the evaluated ones. The hub checks that each is a group element
  but learns nothing from them: the BSN never leaves the partner's process.
- `known_check` answers "is this pid in a case at any ZVH?" from the hub's own open
  cases and the national index, within the deadline, with hubs and contact routes
  from the national list, never case content. Every check is a ledger entry with its
  purpose and a hash of the pid (never the pid); every denial too.
- `pid_of` computes one person's pid for the hub itself, exactly as a partner does
  (check the BSN and birth date, Blind, evaluate at the pseudonymiser, Finalize): the
  privacy officer's subject-access report by BSN. The BSN stays in this process and
  is neither logged nor stored; the pseudonymiser sees only the blinded element.
- The canary: the hub computes the pid of a published synthetic input through the
  pseudonymiser and compares it with the one pinned in its config. A different pid
  means the pseudonymiser's key changed: the hub logs an error, sets the gauge, and
  refuses to evaluate (fail closed: pids made with another key would silently never
  match) until the canary matches again.

The pseudonymiser and the index are reached through the ports below (implemented by
`gateway.federation.client`); nothing here does network I/O itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.config import NationalSettings
from gateway.crypto.encoding import b64u_decode, b64u_encode, sha256
from gateway.crypto.oprf import blind, finalize, is_valid_element, pid_input
from gateway.crypto.pid_inputs import check_birth_date, check_bsn
from gateway.errors import (
    CryptoError,
    DenyCode,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from gateway.metrics import Metrics
from gateway.models import EvaluateIn, IndexRegistration, KnownCheckIn
from gateway.policy.access import CaseView, case_access
from gateway.policy.national import may_evaluate, may_run_known_check
from gateway.policy.ratelimit import RateLimiter
from gateway.services.auth import RequestAuth
from gateway.services.directory import Directory
from gateway.services.outcome import Done, Outcome, deny, settle
from gateway.services.parties import party
from gateway.storage import national_store, stores
from gateway.storage.database import Database, Tx

log = logging.getLogger(__name__)

EVALUATE_ROUTE = "/api/v1/pseudonyms/evaluate"
KNOWN_CHECK_ROUTE = "/api/v1/known-checks"
MAX_BATCH = 100
CANARY_RETRY_S = 5.0  # after the pseudonymiser did not answer


class OprfPort(Protocol):
    async def evaluate(self, blinded: list[str]) -> list[str]: ...


class IndexLookupPort(Protocol):
    async def lookup(self, pid: str) -> list[IndexRegistration]: ...


def pid_sha256(pid: str) -> str:
    """What ledgers record instead of a pid: SHA-256 of its 64 bytes, hex."""
    return sha256(bytes.fromhex(pid)).hex()


class NationalService:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        clock: Clock,
        metrics: Metrics,
        *,
        hub_org: str,
        themes: Iterable[str],
        settings: NationalSettings | None,
        oprf: OprfPort | None,
        index: IndexLookupPort | None,
    ) -> None:
        self._db = db
        self._directory = directory
        self._clock = clock
        self._metrics = metrics
        self._hub = hub_org
        self._themes = frozenset(themes)
        self._settings = settings
        self._oprf = oprf
        self._index = index
        self.canary_mismatch = False
        self.canary_checks = 0
        self._contacts: Mapping[str, str] = {
            h.org: h.contact for h in (settings.hubs if settings is not None else [])
        }
        allowed = None if settings is None else settings.known_check_themes
        self._check_themes = self._themes if allowed is None else frozenset(allowed) & self._themes
        self._check_limit = RateLimiter(
            1 if settings is None else settings.known_check_rate_per_minute
        )
        self._evaluate_limit = RateLimiter(
            1 if settings is None else settings.evaluate_rate_per_minute
        )
        if settings is not None and hub_org not in self._contacts:
            log.warning("this hub is not in [[national.hubs]]: its matches have no contact")

    def _require(self) -> NationalSettings:
        if self._settings is None:
            raise ServiceUnavailable("This hub is not connected to the national check.")
        return self._settings

    def _limit(self, limiter: RateLimiter, org: str, route: str, cost: int = 1) -> None:
        wait = limiter.take(org, self._clock.monotonic(), cost)
        if wait:
            self._metrics.rate_limited.labels(route, org).inc()
            raise RateLimited(wait, f"Over this organisation's limit; retry after {wait} s.")

    def _known_check_orgs(self, settings: NationalSettings) -> frozenset[str]:
        if settings.known_check_orgs is not None:
            return frozenset(settings.known_check_orgs)
        return frozenset(o.org for o in self._directory.orgs.values() if o.role == "zvh")

    # -- pseudonyms (PROTOCOL §6) ------------------------------------------------------

    async def evaluate(self, auth: RequestAuth, req: EvaluateIn) -> dict[str, Any]:
        self._require()
        if len(req.blinded) > MAX_BATCH:
            raise InvalidRequest(
                f"At most {MAX_BATCH} blinded elements per request.",
                errors=[{"loc": ["blinded"], "msg": f"more than {MAX_BATCH}"}],
            )
        bad = [
            {"loc": ["blinded", i], "msg": "not a group element"}
            for i, item in enumerate(req.blinded)
            if not _is_element(item)
        ]
        if bad:
            raise InvalidRequest("Not a blinded group element.", errors=bad)
        self._limit(self._evaluate_limit, auth.org, EVALUATE_ROUTE, len(req.blinded))
        now = self._clock.now_ms()
        code = await self._db.read(
            "evaluate_policy", lambda tx: may_evaluate(party(tx, auth.caller, now))
        )
        if code is not None:
            settle(
                await self._db.write(
                    "evaluate_denied",
                    functools.partial(_deny, auth=auth, code=code, action="evaluate", now_ms=now),
                )
            )
        if self.canary_mismatch:
            raise ServiceUnavailable(
                "The pseudonymiser failed its canary check; pseudonyms are suspended."
            )
        assert self._oprf is not None
        evaluated = await self._oprf.evaluate(list(req.blinded))
        self._metrics.oprf_evaluations.labels(auth.org).inc(len(evaluated))
        return {"evaluated": evaluated}

    # -- known-checks (PROTOCOL §7) ----------------------------------------------------

    async def known_check(self, auth: RequestAuth, req: KnownCheckIn) -> Done:
        settings = self._require()
        self._limit(self._check_limit, auth.org, KNOWN_CHECK_ROUTE)
        if req.purpose not in self._themes:
            raise InvalidRequest(
                "Unknown purpose.",
                errors=[{"loc": ["purpose"], "msg": "not a theme of this region"}],
            )
        now = self._clock.now_ms()
        orgs = self._known_check_orgs(settings)

        def check(tx: Tx) -> tuple[DenyCode | None, int | None]:
            """The policy, in PROTOCOL §3 order, then the hub's own open cases."""
            who = party(tx, auth.caller, now, req.case_ref)
            code = may_run_known_check(who, req.purpose, orgs=orgs, themes=self._check_themes)
            if code is None and req.case_ref is not None:
                case = stores.get_case(tx, req.case_ref)
                if case is None:
                    raise NotFound("Unknown case.")
                code = case_access(who, CaseView(case.case_ref, case.participants))
            if code is not None:
                return code, None
            return None, national_store.open_since(tx, req.pid)

        code, local = await self._db.read("known_check_local", check)
        if code is not None:
            settle(
                await self._db.write(
                    "known_check_denied",
                    functools.partial(
                        _deny,
                        auth=auth,
                        code=code,
                        action="known-check",
                        now_ms=now,
                        case_ref=req.case_ref,
                    ),
                )
            )
        registrations, unreachable = await self._ask_index(req.pid, settings.timeout_s)
        matches = self._matches(local, registrations)
        check_id = str(uuid.uuid4())

        def record(tx: Tx) -> Done:
            auth.persist(tx)
            body: dict[str, Any] = {
                "check_id": check_id,
                "org": auth.org,
                "purpose": req.purpose,
                "pid_sha256": pid_sha256(req.pid),
                "hubs": [m["hub"] for m in matches],
                "unreachable": unreachable,
            }
            if req.case_ref is not None:
                body["case_ref"] = req.case_ref
            ref = tx.append_ledger("known-check", now, body, (auth.org,))
            return Done(
                200,
                {
                    "check_id": check_id,
                    "matches": matches,
                    "unreachable": unreachable,
                    "ledger": [ref.to_json()],
                },
            )

        done = await self._db.write("known_check", record)
        result = "partial" if unreachable else ("match" if matches else "no-match")
        self._metrics.known_checks.labels(result).inc()
        return done

    async def _ask_index(
        self, pid: str, timeout_s: float
    ) -> tuple[list[IndexRegistration], list[str]]:
        assert self._index is not None
        try:
            # The client keeps the same deadline; this guard holds even if it does not.
            async with asyncio.timeout(timeout_s * 1.05):
                return await self._index.lookup(pid), []
        except (TimeoutError, ServiceUnavailable, RateLimited):
            return [], ["index"]

    def _matches(
        self, local_since: int | None, registrations: list[IndexRegistration]
    ) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for reg in registrations:
            found[reg.hub] = {
                "hub": reg.hub,
                "contact": self._contacts.get(reg.hub),
                "status": reg.status.value,
                "since_ms": reg.since_ms,
            }
        if local_since is not None:
            # Our own open cases are the truth about us, whatever the index has heard yet.
            found[self._hub] = {
                "hub": self._hub,
                "contact": self._contacts.get(self._hub),
                "status": "open",
                "since_ms": local_since,
            }
        return [found[h] for h in sorted(found)]

    # -- the hub's own pids (subject access) --------------------------------------------

    @property
    def can_compute_pids(self) -> bool:
        """Whether this hub reaches a pseudonymiser (has a `[national]` section)."""
        return self._settings is not None and self._oprf is not None

    async def pid_of(self, bsn: str, birth_date: str) -> str:
        """The pid of one person, computed here through the pseudonymiser.

        Raises PseudonymInputError (before anything is sent) for a BSN that fails the
        11-test or an impossible birth date; ServiceUnavailable when the hub has no
        pseudonymiser, its canary does not match, or it did not answer; RateLimited.
        """
        self._require()
        today = dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, dt.UTC).date()
        x = pid_input(check_bsn(bsn), check_birth_date(birth_date, today))
        if self._oprf is None:
            raise ServiceUnavailable("This hub is not connected to the national check.")
        if self.canary_mismatch:
            raise ServiceUnavailable(
                "The pseudonymiser failed its canary check; pseudonyms are suspended."
            )
        pid = await self._finalized(x)
        if pid is None:
            raise ServiceUnavailable("The pseudonymiser returned an invalid element.")
        self._metrics.oprf_evaluations.labels(self._hub).inc()
        return pid

    async def _finalized(self, x: bytes) -> str | None:
        """Blind x, have the pseudonymiser evaluate it, Finalize: the pid, or None when
        the answer is not a valid element."""
        assert self._oprf is not None
        r, blinded = blind(x)
        [evaluated] = await self._oprf.evaluate([b64u_encode(blinded)])
        try:
            return finalize(x, r, b64u_decode(evaluated)).hex()
        except (CryptoError, ValueError):
            return None

    # -- the canary --------------------------------------------------------------------

    async def check_canary(self) -> bool:
        """Compute the canary pid through the pseudonymiser; True when it is the pinned one.

        Raises ServiceUnavailable / RateLimited when the pseudonymiser did not answer
        (that says nothing about its key, so the state is left as it was).
        """
        settings = self._require()
        if settings.canary_input is None or settings.canary_pid is None or self._oprf is None:
            raise ServiceUnavailable("No canary is configured.")
        bsn, _, birth = settings.canary_input.partition("|")
        pid = await self._finalized(pid_input(bsn, birth)) or ""
        match = hmac.compare_digest(pid, settings.canary_pid)
        self._metrics.canary_match.set(1 if match else 0)
        self._metrics.canary_time.set(self._clock.now_ms() / 1000)
        if not match:
            log.error(
                "pseudonymiser canary MISMATCH: its key changed or it is not the national"
                " pseudonymiser; pseudonym evaluation is suspended",
                extra={"expected_pid_prefix": settings.canary_pid[:16]},
            )
        elif self.canary_mismatch:
            log.warning("pseudonymiser canary matches again; pseudonym evaluation resumed")
        self.canary_mismatch = not match
        self.canary_checks += 1
        return match

    async def run_canary(self) -> None:
        settings = self._require()
        while True:
            wait = settings.canary_interval_s
            try:
                await self.check_canary()
            except (ServiceUnavailable, RateLimited):
                log.warning("canary check skipped: the pseudonymiser did not answer")
                wait = min(wait, CANARY_RETRY_S)
            except Exception:
                log.exception("canary check failed to run")
            await asyncio.sleep(wait)


def _is_element(text: str) -> bool:
    try:
        return is_valid_element(b64u_decode(text))
    except ValueError:  # 43 characters whose trailing bits are not canonical
        return False


def _deny(
    tx: Tx,
    *,
    auth: RequestAuth,
    code: DenyCode,
    action: str,
    now_ms: int,
    case_ref: str | None = None,
) -> Outcome:
    auth.persist(tx)
    return deny(tx, code, action=action, org=auth.org, now_ms=now_ms, case_ref=case_ref)

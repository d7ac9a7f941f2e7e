"""People who log in to the review pages: users, logins with lockout, sessions, CSRF.

Sessions live in memory, not in the database: a session id then never reaches a
disk or a backup (a stolen copy of the file holds no live session), checking one
costs no read, and a restart simply logs everybody out, which fails closed. The
failed-login count and the lockout are in the `users` table, so a restart does not
lift a lockout. Every login attempt (success, failure, locked) is a ledger entry;
the password never leaves `login` and is never logged or recorded.

Must not: know HTTP (cookies and forms are the web layer's), or read the clock itself.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from gateway.clock import Clock
from gateway.config import Settings
from gateway.crypto.passwords import DUMMY_HASH, hash_password, verify_password
from gateway.errors import ConfigError
from gateway.storage import review_store
from gateway.storage.database import Database, Tx
from gateway.storage.offline import offline_transaction

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCKOUT_MS = 15 * 60_000
IDLE_MS = 15 * 60_000
ABSOLUTE_MS = 8 * 3_600_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


class UserRole(StrEnum):
    PRIVACY_OFFICER = "privacy-officer"
    ADMIN = "admin"


class LoginOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    LOCKED = "locked"


@dataclass(slots=True)
class Session:
    sid: str
    user: str
    role: UserRole
    csrf: str
    created_ms: int
    last_seen_ms: int


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError("a user name is 2-64 letters, digits or . _ @ -")
    return name


def add_user(settings: Settings, clock: Clock, *, name: str, role: str, password: str) -> bool:
    """Offline (`zvh-gateway users add`): create or reset a user. Returns whether new."""
    check_name(name)
    try:
        user_role = UserRole(role)
    except ValueError as exc:
        raise ConfigError(f"role must be privacy-officer or admin, not {role!r}") from exc
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    now = clock.now_ms()
    with offline_transaction(settings.node.database) as tx:
        new = review_store.insert_user(
            tx, name=name, role=user_role.value, password_hash=hashed, now_ms=now
        )
        tx.append_ledger(
            "review-user-added" if new else "review-user-reset",
            now,
            {"user": name, "role": user_role.value},
            (settings.node.org,),
        )
    return new


class Sessions:
    """The live sessions of one hub process (see the module docstring for why memory)."""

    def __init__(self, clock: Clock, *, idle_ms: int = IDLE_MS, absolute_ms: int = ABSOLUTE_MS):
        self._clock = clock
        self._idle_ms = idle_ms
        self._absolute_ms = absolute_ms
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, role: UserRole) -> Session:
        now = self._clock.now_ms()
        self._prune(now)
        session = Session(
            secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), now, now
        )
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session for `sid` (refreshing its idle timer), or None."""
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = self._clock.now_ms()
        if (
            now - session.last_seen_ms >= self._idle_ms
            or now - session.created_ms >= self._absolute_ms
        ):
            del self._by_id[sid]
            return None
        session.last_seen_ms = now
        return session

    def end(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def _prune(self, now: int) -> None:
        gone = [
            sid
            for sid, s in self._by_id.items()
            if now - s.last_seen_ms >= self._idle_ms or now - s.created_ms >= self._absolute_ms
        ]
        for sid in gone:
            del self._by_id[sid]


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class ReviewAuth:
    """Logins with lockout; each attempt is one ledger entry."""

    def __init__(self, db: Database, clock: Clock, sessions: Sessions, hub_org: str) -> None:
        self._db = db
        self._clock = clock
        self.sessions = sessions
        self._hub_org = hub_org

    async def login(self, name: str, password: str) -> Session | None:
        """A new session, or None (wrong name, wrong password or locked: one answer)."""
        user = None
        if _NAME.match(name):
            user = await self._db.read("review_user", lambda tx: review_store.get_user(tx, name))
        stored = DUMMY_HASH if user is None or user.disabled else user.password_hash
        # argon2id takes a good fraction of a second: never on the event loop. An unknown
        # name is checked against a dummy hash so that it takes as long as a known one.
        matches = await asyncio.to_thread(verify_password, stored, password)
        if user is None or user.disabled:
            matches = False
        outcome = await self._db.write(
            "review_login",
            functools.partial(self._record, name=name if user is not None else None, ok=matches),
        )
        log.info("review login", extra={"outcome": outcome.value})
        if outcome is not LoginOutcome.SUCCESS or user is None:
            return None
        return self.sessions.create(user.name, UserRole(user.role))

    def _record(self, tx: Tx, *, name: str | None, ok: bool) -> LoginOutcome:
        now = self._clock.now_ms()
        # An unknown name is not recorded: it may be a password typed in the wrong field.
        user = None if name is None else review_store.get_user(tx, name)
        if user is None:
            outcome = LoginOutcome.FAILURE
        elif user.locked_until_ms is not None and user.locked_until_ms > now:
            outcome = LoginOutcome.LOCKED
        elif ok:
            outcome = LoginOutcome.SUCCESS
            review_store.set_login_state(tx, user.name, failed=0, locked_until_ms=None)
        else:
            outcome = LoginOutcome.FAILURE
            failed = user.failed_logins + 1
            if failed >= MAX_FAILURES:
                review_store.set_login_state(
                    tx, user.name, failed=0, locked_until_ms=now + LOCKOUT_MS
                )
            else:
                review_store.set_login_state(tx, user.name, failed=failed, locked_until_ms=None)
        body: dict[str, object] = {"user": name, "outcome": outcome.value}
        tx.append_ledger("review-login", now, body, (self._hub_org,))
        return outcome

    async def logout(self, session: Session) -> None:
        self.sessions.end(session.sid)
        now = self._clock.now_ms()
        await self._db.write(
            "review_logout",
            lambda tx: tx.append_ledger(
                "review-logout", now, {"user": session.user}, (self._hub_org,)
            ),
        )

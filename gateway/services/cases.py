"""Cases (casussen): register, add a participant, close. Only the region's ZVH may.

Each step is one storage job: the check, the state change, the ledger entry and
the caller's nonce commit together. Pids are stored for the national check but
never written into ledger bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.clock import Clock
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.models import CaseCreate
from gateway.policy.access import may_manage_cases
from gateway.services.auth import RequestAuth
from gateway.services.directory import Directory
from gateway.services.notifications import Notifier
from gateway.services.outcome import Done, Outcome, deny, settle
from gateway.services.parties import party
from gateway.storage import national_store, stores
from gateway.storage.database import Database, Tx


class CaseService:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        clock: Clock,
        themes: Iterable[str],
        *,
        index_outbox: Callable[[], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._db = db
        self._directory = directory
        self._clock = clock
        self._themes = frozenset(themes)
        # With the national check: queue the subjects' pids for the index in the same
        # job as the case (write-ahead), and wake the sync once it is durable.
        self._index_outbox = index_outbox
        # Participants are told (inbox notifications) of closures and new participants.
        self._notifier = notifier

    def _check_orgs(self, orgs: list[str], field: str, *, scalar: bool = False) -> None:
        errors = [
            {"loc": [field] if scalar else [field, i], "msg": "unknown organisation"}
            for i, org in enumerate(orgs)
            if (rec := self._directory.get(org)) is None or rec.role == "hub"
        ]
        if errors:
            raise InvalidRequest("Unknown organisation.", errors=errors)

    async def register(self, auth: RequestAuth, req: CaseCreate) -> Done:
        if req.theme not in self._themes:
            raise InvalidRequest(
                "Unknown theme.", errors=[{"loc": ["theme"], "msg": "not a theme of this region"}]
            )
        refs = [s.subject_ref for s in req.subjects]
        if len(set(refs)) != len(refs):
            raise InvalidRequest(
                "Duplicate subject.", errors=[{"loc": ["subjects"], "msg": "subject_ref repeated"}]
            )
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if code := may_manage_cases(party(tx, auth.caller, now)):
                return deny(tx, code, action="register-case", org=auth.org, now_ms=now)
            if stores.get_case(tx, req.case_ref) is not None:
                raise Conflict("A case with this case_ref exists.", code="case-exists")
            self._check_orgs(list(req.participants), "participants")
            participants = sorted({*req.participants, auth.org})
            stores.insert_case(
                tx,
                case_ref=req.case_ref,
                theme=req.theme,
                registered_by=auth.org,
                now_ms=now,
                subjects=[(s.subject_ref, s.pid) for s in req.subjects],
                participants=participants,
            )
            if self._index_outbox is not None:
                national_store.outbox_open(tx, [s.pid for s in req.subjects], now)
                tx.on_commit(self._index_outbox)
            ref = tx.append_ledger(
                "case-registered",
                now,
                {
                    "case_ref": req.case_ref,
                    "theme": req.theme,
                    "subjects": refs,
                    "participants": participants,
                    "registered_by": auth.org,
                },
                tuple(participants),
            )
            return Done(
                201,
                {
                    "case_ref": req.case_ref,
                    "status": "open",
                    "participants": participants,
                    "ledger": [ref.to_json()],
                },
            )

        return settle(await self._db.write("case_register", job))

    async def add_participant(self, auth: RequestAuth, case_ref: str, org: str) -> Done:
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if code := may_manage_cases(party(tx, auth.caller, now)):
                return deny(
                    tx, code, action="add-participant", org=auth.org, now_ms=now, case_ref=case_ref
                )
            case = stores.get_case(tx, case_ref)
            if case is None:
                raise NotFound("Unknown case.")
            if case.status == "closed":
                raise Conflict("The case is closed.", code="case-closed")
            self._check_orgs([org], "org", scalar=True)
            participants = sorted({*case.participants, org})
            if org in case.participants:
                return Done(200, {"case_ref": case_ref, "participants": participants, "ledger": []})
            stores.add_participants(tx, case_ref, [org], now)
            ref = tx.append_ledger(
                "participant-added",
                now,
                {"case_ref": case_ref, "org": org, "added_by": auth.org},
                (auth.org, org),
            )
            if self._notifier is not None:
                self._notifier.send(
                    tx,
                    set(participants) - {auth.org},
                    event="participant-added",
                    case_ref=case_ref,
                    now_ms=now,
                    org=org,
                )
            return Done(
                200, {"case_ref": case_ref, "participants": participants, "ledger": [ref.to_json()]}
            )

        return settle(await self._db.write("case_add_participant", job))

    async def close(self, auth: RequestAuth, case_ref: str) -> Done:
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if code := may_manage_cases(party(tx, auth.caller, now)):
                return deny(
                    tx, code, action="close-case", org=auth.org, now_ms=now, case_ref=case_ref
                )
            case = stores.get_case(tx, case_ref)
            if case is None:
                raise NotFound("Unknown case.")
            if case.status == "closed":
                # Closing twice is a harmless retry: answer with the original entry.
                return Done(
                    200,
                    {
                        "case_ref": case_ref,
                        "status": "closed",
                        "closed_ms": case.closed_ms,
                        "ledger": [],
                    },
                )
            ref = tx.append_ledger(
                "case-closed",
                now,
                {"case_ref": case_ref, "closed_by": auth.org},
                tuple(sorted(case.participants)),
            )
            stores.close_case(tx, case_ref, now, ref.index)
            if self._notifier is not None:
                self._notifier.send(
                    tx,
                    case.participants - {auth.org},
                    event="case-closed",
                    case_ref=case_ref,
                    now_ms=now,
                    closed_ms=now,
                )
            if self._index_outbox is not None:
                national_store.outbox_close_case(tx, case_ref, now)
                tx.on_commit(self._index_outbox)
            return Done(
                200,
                {
                    "case_ref": case_ref,
                    "status": "closed",
                    "closed_ms": now,
                    "ledger": [ref.to_json()],
                },
            )

        return settle(await self._db.write("case_close", job))

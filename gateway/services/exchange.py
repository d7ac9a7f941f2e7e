"""The dat/wat broker: accept requests and answers, record them, deliver them.

The hub never sees content: it checks each envelope's outer signature and
binding (PROTOCOL §4), records SHA-256(enc || ct) in the ledger, and queues the
envelope for the addressee. Checks run in the protocol's order of precedence
(PROTOCOL §3); the ones that need stored state run inside the storage job, so
the decision and its record are one atomic, durable step.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from gateway.clock import Clock
from gateway.crypto.canonical import canonical_sha256
from gateway.crypto.envelope import payload_hash, verify_outer
from gateway.errors import Conflict, DenyCode, EnvelopeError, InvalidRequest, NotFound
from gateway.models import DAT_DECISIONS, Answer, DatRequest, Envelope, EnvelopeKind
from gateway.policy.access import (
    CaseView,
    Party,
    case_access,
    membership,
    no_declarations,
    recipient_access,
)
from gateway.services.auth import RequestAuth
from gateway.services.directory import Directory
from gateway.services.outcome import DETAILS, Denied, Done, Outcome, deny, record_denial, settle
from gateway.storage import stores
from gateway.storage.database import Database, Tx
from gateway.storage.records import ExchangeRecord, RecipientRecord

_PRECEDENCE = (DenyCode.NOT_A_MEMBER, DenyCode.DECLARATION_REQUIRED, DenyCode.NOT_A_PARTICIPANT)


def _bad(loc: list[str | int], msg: str) -> InvalidRequest:
    return InvalidRequest("The request does not validate.", errors=[{"loc": loc, "msg": msg}])


def _compact(envelope: Envelope) -> str:
    return json.dumps(envelope.model_dump(mode="json"), separators=(",", ":"))


class ExchangeService:
    def __init__(
        self,
        db: Database,
        directory: Directory,
        clock: Clock,
        notify: Callable[[str], None],
    ) -> None:
        self._db = db
        self._directory = directory
        self._clock = clock
        self._notify = notify

    # -- checks without stored state (400, before anything else) ------------

    def _check_binding(
        self,
        env: Envelope,
        loc: list[str | int],
        *,
        kind: EnvelopeKind,
        exchange_id: str,
        case_ref: str,
        subject_ref: str,
    ) -> None:
        for name, want in (
            ("kind", kind.value),
            ("exchange_id", exchange_id),
            ("case_ref", case_ref),
            ("subject_ref", subject_ref),
        ):
            if getattr(env, name) != want:
                raise _bad([*loc, name], f"does not match the request ({name})")

    def _check_signature(self, auth: RequestAuth, env: Envelope, loc: list[str | int]) -> None:
        if env.sender != auth.org or env.sender_kid != auth.caller.signing_kid:
            raise _bad([*loc, "sender"], "is not the authenticated organisation's current key")
        try:
            verify_outer(env.model_dump(mode="json"), auth.caller.signing_key)
        except EnvelopeError as exc:
            raise _bad([*loc, "sig"], "envelope signature or encoding is invalid") from exc

    def _check_recipient_key(self, env: Envelope, loc: list[str | int]) -> None:
        rec = self._directory.get(env.recipient)
        if rec is None or rec.role == "hub":
            raise _bad([*loc, "recipient"], "unknown organisation")
        if rec.encryption_kid != env.recipient_kid:
            raise _bad([*loc, "recipient_kid"], "is not the recipient's current encryption key")

    def _party(self, org: str) -> Party | None:
        rec = self._directory.get(org)
        return None if rec is None else Party(rec.org, rec.role, rec.status)

    # -- dat-request -----------------------------------------------------------

    async def submit_dat(self, auth: RequestAuth, req: DatRequest, raw: dict[str, Any]) -> Done:
        exchange_id = req.envelopes[0].exchange_id
        recipients = [env.recipient for env in req.envelopes]
        if len(set(recipients)) != len(recipients):
            raise _bad(["envelopes"], "one envelope per recipient")
        for i, env in enumerate(req.envelopes):
            self._check_binding(
                env,
                ["envelopes", i],
                kind=EnvelopeKind.DAT_REQUEST,
                exchange_id=exchange_id,
                case_ref=req.case_ref,
                subject_ref=req.subject_ref,
            )
            self._check_signature(auth, env, ["envelopes", i])
            if env.recipient == auth.org:
                raise _bad(["envelopes", i, "recipient"], "a request to yourself")
        body_hash = canonical_sha256(raw)
        now = self._clock.now_ms()
        sender = Party(auth.caller.org, auth.caller.role, auth.caller.status)

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            existing = stores.get_exchange(tx, exchange_id)
            if (
                existing is not None
                and existing.requester == auth.org
                and existing.body_sha256 == body_hash
            ):
                return Done(202, json.loads(existing.response))
            where = {"case_ref": req.case_ref, "exchange_id": exchange_id}
            if code := membership(sender):
                return deny(tx, code, action="dat-request", org=auth.org, now_ms=now, **where)
            case = stores.get_case(tx, req.case_ref)
            if case is None:
                raise NotFound("Unknown case.")
            if existing is not None:
                raise Conflict(
                    "This exchange_id was used for another request.", code="exchange-exists"
                )
            view = CaseView(case.case_ref, case.participants)
            if code := case_access(sender, view, now, no_declarations):
                return deny(tx, code, action="dat-request", org=auth.org, now_ms=now, **where)
            if case.status == "closed":
                raise Conflict("The case is closed.", code="case-closed")
            if req.subject_ref not in case.subjects:
                raise _bad(["subject_ref"], "is not a subject of this case")
            for i, env in enumerate(req.envelopes):
                self._check_recipient_key(env, ["envelopes", i])
            delivered: list[Envelope] = []
            denied: list[tuple[str, DenyCode]] = []
            for env in req.envelopes:
                party = self._party(env.recipient)
                code = (
                    DenyCode.NOT_A_PARTICIPANT
                    if party is None
                    else recipient_access(party, view, now, no_declarations)
                )
                if code is None:
                    delivered.append(env)
                else:
                    denied.append((env.recipient, code))
            if not delivered:
                refs = tuple(
                    record_denial(
                        tx,
                        code=code,
                        action="dat-request",
                        org=auth.org,
                        now_ms=now,
                        subject_org=org,
                        **where,
                    )
                    for org, code in denied
                )
                first = min((c for _, c in denied), key=_PRECEDENCE.index)
                return Denied(first, DETAILS[first], refs)
            return self._accept_dat(
                tx,
                auth,
                req,
                exchange_id=exchange_id,
                body_hash=body_hash,
                now=now,
                delivered=delivered,
                denied=denied,
            )

        return settle(await self._db.write("dat_request", job))

    def _accept_dat(
        self,
        tx: Tx,
        auth: RequestAuth,
        req: DatRequest,
        *,
        exchange_id: str,
        body_hash: bytes,
        now: int,
        delivered: Sequence[Envelope],
        denied: Sequence[tuple[str, DenyCode]],
    ) -> Done:
        hashes = {env.recipient: payload_hash(env.model_dump(mode="json")) for env in delivered}
        ref = tx.append_ledger(
            "dat-request",
            now,
            {
                "exchange_id": exchange_id,
                "case_ref": req.case_ref,
                "subject_ref": req.subject_ref,
                "requester": auth.org,
                "recipients": sorted(hashes),
                "payload_sha256": {org: h.hex() for org, h in sorted(hashes.items())},
                "request_sha256": body_hash.hex(),
            },
            (auth.org, *hashes),
        )
        refs = [ref]
        for org, code in denied:
            refs.append(
                record_denial(
                    tx,
                    code=code,
                    action="dat-request",
                    org=auth.org,
                    now_ms=now,
                    subject_org=org,
                    case_ref=req.case_ref,
                    exchange_id=exchange_id,
                )
            )
        response = {
            "exchange_id": exchange_id,
            "delivered": sorted(hashes),
            "denied": [{"org": org, "code": code.value} for org, code in denied],
            "ledger": [r.to_json() for r in refs],
        }
        stores.insert_exchange(
            tx,
            ExchangeRecord(
                exchange_id,
                "dat",
                req.case_ref,
                req.subject_ref,
                auth.org,
                body_hash,
                json.dumps(response, separators=(",", ":")),
                now,
            ),
        )
        stores.insert_recipients(
            tx,
            [
                RecipientRecord(
                    exchange_id,
                    env.recipient,
                    "delivered",
                    hashes[env.recipient],
                    None,
                    None,
                    None,
                    None,
                )
                for env in delivered
            ]
            + [
                RecipientRecord(exchange_id, org, code.value, None, None, None, None, None)
                for org, code in denied
            ],
        )
        for env in delivered:
            stores.enqueue(
                tx,
                org=env.recipient,
                kind=EnvelopeKind.DAT_REQUEST.value,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=req.case_ref,
                subject_ref=req.subject_ref,
                decision=None,
                reason_code=None,
                envelope=_compact(env),
                now_ms=now,
            )
            tx.on_commit(functools.partial(self._notify, env.recipient))
        return Done(202, response)

    # -- answers ---------------------------------------------------------------

    async def answer(
        self, auth: RequestAuth, exchange_id: str, ans: Answer, raw: dict[str, Any]
    ) -> Done:
        if ans.envelope is not None:
            if ans.envelope.exchange_id != exchange_id:
                raise _bad(["envelope", "exchange_id"], "does not match the path")
            self._check_signature(auth, ans.envelope, ["envelope"])
        answer_hash = canonical_sha256(raw)
        now = self._clock.now_ms()
        sender = Party(auth.caller.org, auth.caller.role, auth.caller.status)

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            exchange = stores.get_exchange(tx, exchange_id)
            mine = None if exchange is None else stores.get_recipient(tx, exchange_id, auth.org)
            if exchange is None or mine is None or mine.outcome != "delivered":
                raise NotFound("Unknown exchange.")
            if mine.answer_sha256 is not None:
                if mine.answer_sha256 == answer_hash and mine.answer_response is not None:
                    return Done(202, json.loads(mine.answer_response))
                raise Conflict(
                    "This exchange was already answered differently.", code="exchange-exists"
                )
            if exchange.kind == "dat" and ans.decision not in DAT_DECISIONS:
                raise _bad(["decision"], "a dat-request is answered known or not-known")
            if ans.envelope is not None:
                self._check_binding(
                    ans.envelope,
                    ["envelope"],
                    kind=EnvelopeKind.DAT_ANSWER,
                    exchange_id=exchange_id,
                    case_ref=exchange.case_ref,
                    subject_ref=exchange.subject_ref,
                )
            where = {"case_ref": exchange.case_ref, "exchange_id": exchange_id}
            if code := membership(sender):
                return deny(tx, code, action="dat-answer", org=auth.org, now_ms=now, **where)
            case = stores.get_case(tx, exchange.case_ref)
            assert case is not None  # exchanges reference cases (foreign key)
            view = CaseView(case.case_ref, case.participants)
            if code := case_access(sender, view, now, no_declarations):
                return deny(tx, code, action="dat-answer", org=auth.org, now_ms=now, **where)
            if case.status == "closed":
                raise Conflict("The case is closed.", code="case-closed")
            if ans.envelope is not None:
                if ans.envelope.recipient != exchange.requester:
                    raise _bad(["envelope", "recipient"], "answers go to the requester")
                self._check_recipient_key(ans.envelope, ["envelope"])
            env_hash = (
                None if ans.envelope is None else payload_hash(ans.envelope.model_dump(mode="json"))
            )
            ref = tx.append_ledger(
                "dat-answer",
                now,
                {
                    "exchange_id": exchange_id,
                    "case_ref": exchange.case_ref,
                    "subject_ref": exchange.subject_ref,
                    "from": auth.org,
                    "to": exchange.requester,
                    "decision": ans.decision.value,
                    "reason_code": ans.reason_code,
                    "payload_sha256": None if env_hash is None else env_hash.hex(),
                },
                (auth.org, exchange.requester),
            )
            response = {"exchange_id": exchange_id, "ledger": [ref.to_json()]}
            stores.record_answer(
                tx,
                exchange_id=exchange_id,
                org=auth.org,
                decision=ans.decision.value,
                answer_sha256=answer_hash,
                response=json.dumps(response, separators=(",", ":")),
                now_ms=now,
            )
            stores.enqueue(
                tx,
                org=exchange.requester,
                kind=EnvelopeKind.DAT_ANSWER.value,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=exchange.case_ref,
                subject_ref=exchange.subject_ref,
                decision=ans.decision.value,
                reason_code=ans.reason_code,
                envelope=None if ans.envelope is None else _compact(ans.envelope),
                now_ms=now,
            )
            tx.on_commit(lambda: self._notify(exchange.requester))
            return Done(202, response)

        return settle(await self._db.write("dat_answer", job))

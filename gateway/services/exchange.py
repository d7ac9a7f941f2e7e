"""The dat/wat broker: accept requests and answers, decide, record, deliver.

The hub never sees content: it checks each envelope's outer signature and binding
(PROTOCOL §4), records SHA-256(enc || ct) in the ledger, and queues the envelope
for the addressee. Checks run in the protocol's order of precedence (PROTOCOL §3);
the ones that need stored state run inside the storage job, so a decision and its
record are one atomic, durable step, and a denial is in the ledger before the
caller hears of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.crypto.canonical import canonical_sha256
from gateway.crypto.envelope import signed_payload_hash
from gateway.crypto.verifier import Item
from gateway.errors import Conflict, DenyCode, InvalidRequest, NotFound, ProblemError
from gateway.models import (
    DAT_DECISIONS,
    WAT_DECISIONS,
    Answer,
    AnswerItem,
    DatRequest,
    Decision,
    Envelope,
    EnvelopeKind,
    WatRequest,
)
from gateway.policy.access import CaseView, Party, case_access, membership
from gateway.policy.decide import WatCase, decide_wat
from gateway.services.auth import RequestAuth
from gateway.services.exchange_base import (
    HOUR_MS as _HOUR_MS,
)
from gateway.services.exchange_base import (
    Admitted,
    ExchangeBase,
    deny_recipients,
    fan_out_entry,
    fan_out_response,
    first_denial,
    payload_hashes,
)
from gateway.services.exchange_base import (
    bad as _bad,
)
from gateway.services.exchange_base import (
    compact as _compact,
)
from gateway.services.outcome import DETAILS, Denied, Done, Outcome, deny, settle
from gateway.services.parties import party
from gateway.storage import message_store, policy_store, stores
from gateway.storage.database import Tx
from gateway.storage.records import ExchangeRecord, RecipientRecord


class ExchangeService(ExchangeBase):
    async def submit_dat(self, auth: RequestAuth, req: DatRequest, raw: dict[str, Any]) -> Done:
        exchange_id, checked = await self._check_fan_out(
            auth,
            req.envelopes,
            kind=EnvelopeKind.DAT_REQUEST,
            case_ref=req.case_ref,
            subject_ref=req.subject_ref,
            to_self="a request to yourself",
        )
        body_hash = canonical_sha256(raw)
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            admitted = self._admit(
                tx,
                auth,
                action="dat-request",
                exchange_id=exchange_id,
                case_ref=req.case_ref,
                body_hash=body_hash,
                now=now,
            )
            if not isinstance(admitted, Admitted):
                return admitted
            if req.subject_ref not in admitted.case.subjects:
                raise _bad(["subject_ref"], "is not a subject of this case")
            delivered, denied = self._fan_out(tx, req.envelopes, admitted.view, now)
            if not delivered:
                where = {"case_ref": req.case_ref, "exchange_id": exchange_id}
                refs = deny_recipients(
                    tx, denied, action="dat-request", org=auth.org, now=now, where=where
                )
                return first_denial(denied, refs)
            return self._accept_dat(
                tx,
                auth,
                req,
                exchange_id=exchange_id,
                body_hash=body_hash,
                now=now,
                delivered=delivered,
                denied=denied,
                checked=checked,
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
        checked: Mapping[str, bytes],
    ) -> Done:
        hashes = payload_hashes(delivered, checked)
        ref = tx.append_ledger(
            "dat-request",
            now,
            {
                "exchange_id": exchange_id,
                "case_ref": req.case_ref,
                "subject_ref": req.subject_ref,
                "requester": auth.org,
                **fan_out_entry(hashes),
                "request_sha256": body_hash.hex(),
            },
            (auth.org, *hashes),
        )
        where = {"case_ref": req.case_ref, "exchange_id": exchange_id}
        refs = [
            ref,
            *deny_recipients(tx, denied, action="dat-request", org=auth.org, now=now, where=where),
        ]
        response = fan_out_response(exchange_id, list(hashes), denied, refs)
        stores.insert_exchange(
            tx,
            ExchangeRecord(
                exchange_id,
                "dat",
                req.case_ref,
                req.subject_ref,
                auth.org,
                body_hash,
                _compact(response),
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
            self._deliver(
                tx,
                org=env.recipient,
                kind=EnvelopeKind.DAT_REQUEST,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=req.case_ref,
                subject_ref=req.subject_ref,
                envelope=env,
                now=now,
            )
        return Done(202, response)

    # -- wat-request -----------------------------------------------------------

    async def submit_wat(self, auth: RequestAuth, req: WatRequest, raw: dict[str, Any]) -> Done:
        env = req.envelope
        exchange_id = env.exchange_id
        self._check_binding(
            env,
            ["envelope"],
            kind=EnvelopeKind.WAT_REQUEST,
            exchange_id=exchange_id,
            case_ref=req.case_ref,
            subject_ref=req.subject_ref,
        )
        digest = await self._check_signature(auth, env, ["envelope"])
        if env.recipient != req.holder:
            raise _bad(["envelope", "recipient"], "is not the holder")
        if req.holder == auth.org:
            raise _bad(["holder"], "a request to yourself")
        if len(set(req.categories)) != len(req.categories):
            raise _bad(["categories"], "a category is repeated")
        body_hash = canonical_sha256(raw)
        basis = req.legal_basis.model_dump(mode="json", exclude_none=True)
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            admitted = self._admit(
                tx,
                auth,
                action="wat-request",
                exchange_id=exchange_id,
                case_ref=req.case_ref,
                body_hash=body_hash,
                now=now,
            )
            if not isinstance(admitted, Admitted):
                return admitted
            case = admitted.case
            if req.subject_ref not in case.subjects:
                raise _bad(["subject_ref"], "is not a subject of this case")
            self._check_recipient_key(env, ["envelope"])
            where = {"case_ref": req.case_ref, "exchange_id": exchange_id}
            if code := self._recipient(tx, req.holder, admitted.view, now):
                return deny(
                    tx,
                    code,
                    action="wat-request",
                    org=auth.org,
                    now_ms=now,
                    subject_org=req.holder,
                    **where,
                )
            decision = decide_wat(
                self._policy,
                WatCase(
                    theme=case.theme,
                    requester_domain=auth.caller.domain,
                    categories=tuple(req.categories),
                    legal_basis=basis,
                    dat_known=policy_store.dat_known(tx, req.case_ref, req.subject_ref, req.holder),
                ),
            )
            if not decision.allowed:
                assert decision.code is not None
                ref = tx.append_ledger(
                    "denied",
                    now,
                    {
                        "action": "wat-request",
                        "code": decision.code.value,
                        "org": auth.org,
                        "denied_org": req.holder,
                        "rule": decision.rule,
                        "detail": decision.detail,
                        "categories": list(req.categories),
                        "legal_basis": basis,
                        **where,
                    },
                    (auth.org, req.holder),
                )
                return Denied(decision.code, f"{DETAILS[decision.code]} {decision.detail}.", (ref,))
            deadline = now + decision.deadline_hours * _HOUR_MS
            ref = tx.append_ledger(
                "wat-request",
                now,
                {
                    **where,
                    "subject_ref": req.subject_ref,
                    "requester": auth.org,
                    "holder": req.holder,
                    "theme": case.theme,
                    "categories": list(req.categories),
                    "purpose": req.purpose,
                    "processing_activity": req.processing_activity,
                    "legal_basis": basis,
                    "rule": decision.rule,
                    "deadline_ms": deadline,
                    "payload_sha256": digest.hex(),
                    "request_sha256": body_hash.hex(),
                },
                (auth.org, req.holder),
            )
            response = {
                "exchange_id": exchange_id,
                "delivered": [req.holder],
                "denied": [],
                "deadline_ms": deadline,
                "rule": decision.rule,
                "ledger": [ref.to_json()],
            }
            stores.insert_exchange(
                tx,
                ExchangeRecord(
                    exchange_id,
                    "wat",
                    req.case_ref,
                    req.subject_ref,
                    auth.org,
                    body_hash,
                    _compact(response),
                    now,
                ),
            )
            stores.insert_recipients(
                tx,
                [
                    RecipientRecord(
                        exchange_id, req.holder, "delivered", digest, None, None, None, None
                    )
                ],
            )
            policy_store.insert_wat(
                tx,
                exchange_id=exchange_id,
                holder=req.holder,
                categories=req.categories,
                purpose=req.purpose,
                processing_activity=req.processing_activity,
                legal_basis=basis,
                rule=decision.rule,
                manual_release=decision.manual_release,
                deadline_ms=deadline,
            )
            self._deliver(
                tx,
                org=req.holder,
                kind=EnvelopeKind.WAT_REQUEST,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=req.case_ref,
                subject_ref=req.subject_ref,
                envelope=env,
                now=now,
                extra={
                    "wat": {
                        "categories": list(req.categories),
                        "purpose": req.purpose,
                        "processing_activity": req.processing_activity,
                        "legal_basis": basis,
                        "deadline_ms": deadline,
                        "manual_release": decision.manual_release,
                    }
                },
            )
            return Done(202, response)

        return settle(await self._db.write("wat_request", job))

    # -- answers ---------------------------------------------------------------

    def _check_decision(self, kind: str, ans: Answer) -> EnvelopeKind:
        if kind == "dat":
            if ans.decision not in DAT_DECISIONS:
                raise _bad(["decision"], "a dat-request is answered known or not-known")
            return EnvelopeKind.DAT_ANSWER
        if ans.decision not in WAT_DECISIONS:
            raise _bad(["decision"], "a wat-request is answered release, partial or refuse")
        if ans.decision in (Decision.PARTIAL, Decision.REFUSE) and ans.reason_code is None:
            raise _bad(["reason_code"], "partial and refuse need a reason code")
        if ans.reason_code is not None and ans.reason_code not in self._policy.reason_codes:
            raise _bad(["reason_code"], "not one of the policy's reason codes")
        if ans.decision in (Decision.RELEASE, Decision.PARTIAL) and ans.envelope is None:
            raise _bad(["envelope"], "a release carries the released information")
        return EnvelopeKind.WAT_ANSWER

    async def answer_many(
        self, auth: RequestAuth, items: Sequence[tuple[AnswerItem, dict[str, Any]]]
    ) -> list[Done | ProblemError]:
        """Extension: answer several exchanges in one signed request. Each answer is its
        own storage job (they share a group commit), so a refused answer never undoes
        another; the request's nonce is persisted with the first. They are bulk jobs:
        single requests queued with them commit first."""
        ids = [item.exchange_id for item, _ in items]
        if len(set(ids)) != len(ids):
            raise _bad(["answers"], "one answer per exchange")
        valid = await self._valid_envelopes(auth, [item.envelope for item, _ in items])
        settled = await asyncio.gather(
            *(
                self.answer(
                    auth,
                    item.exchange_id,
                    item,
                    # The same idempotency hash as the single-answer endpoint's body.
                    {k: v for k, v in raw.items() if k != "exchange_id"},
                    persist_nonce=i == 0,
                    bulk=True,
                    checked=valid.get(i),
                )
                for i, (item, raw) in enumerate(items)
            ),
            return_exceptions=True,
        )
        results: list[Done | ProblemError] = []
        for outcome in settled:
            if isinstance(outcome, Done | ProblemError):
                results.append(outcome)
            else:
                raise outcome
        return results

    async def _valid_envelopes(
        self, auth: RequestAuth, envelopes: Sequence[Envelope | None]
    ) -> dict[int, bytes]:
        """The positions of the envelopes that pass `_outer_item` and whose outer
        signatures verify, all in one call to the verifier (one hand-over for a whole
        batch, with the request's own if its check was put off), with their payload
        hashes. The others are left to `answer`, which finds and reports their fault."""
        checks: dict[int, Item] = {}
        for i, env in enumerate(envelopes):
            if env is not None:
                with contextlib.suppress(InvalidRequest):
                    checks[i] = self._outer_item(auth, env, ["envelope"])
        valid = await auth.verify_along(self._verifier, list(checks.values()))
        return {
            i: signed_payload_hash(item[2])
            for (i, item), ok in zip(checks.items(), valid, strict=True)
            if ok
        }

    async def _answer_signatures(
        self, auth: RequestAuth, exchange_id: str, ans: Answer, checked: bytes | None
    ) -> bytes | None:
        """The answer's envelope signature (with the request's, if its check was put
        off) unless `checked` already has it; returns the envelope's payload hash."""
        if ans.envelope is None:
            await auth.confirm()  # nothing to go with: the request's signature alone
            return None
        if ans.envelope.exchange_id != exchange_id:
            raise _bad(["envelope", "exchange_id"], "does not match the path")
        if checked is not None:
            return checked
        return await self._check_signature(auth, ans.envelope, ["envelope"])

    async def answer(
        self,
        auth: RequestAuth,
        exchange_id: str,
        ans: Answer,
        raw: dict[str, Any],
        *,
        persist_nonce: bool = True,
        bulk: bool = False,
        checked: bytes | None = None,
    ) -> Done:
        """`checked`: the envelope's payload hash, when the caller already verified its
        outer signature (answer_many verifies a batch's in one call)."""
        digest = await self._answer_signatures(auth, exchange_id, ans, checked)
        answer_hash = canonical_sha256(raw)
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            if persist_nonce:
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
            env_kind = self._check_decision(exchange.kind, ans)
            if ans.envelope is not None:
                self._check_binding(
                    ans.envelope,
                    ["envelope"],
                    kind=env_kind,
                    exchange_id=exchange_id,
                    case_ref=exchange.case_ref,
                    subject_ref=exchange.subject_ref,
                )
            action = env_kind.value
            where = {"case_ref": exchange.case_ref, "exchange_id": exchange_id}
            sender = party(tx, auth.caller, now, exchange.case_ref)
            if code := membership(sender):
                return deny(tx, code, action=action, org=auth.org, now_ms=now, **where)
            case = stores.get_case(tx, exchange.case_ref)
            assert case is not None  # exchanges reference cases (foreign key)
            view = CaseView(case.case_ref, case.participants)
            if code := case_access(sender, view):
                return deny(tx, code, action=action, org=auth.org, now_ms=now, **where)
            if case.status == "closed":
                raise Conflict("The case is closed.", code="case-closed")
            if ans.envelope is not None:
                if ans.envelope.recipient != exchange.requester:
                    raise _bad(["envelope", "recipient"], "answers go to the requester")
                self._check_recipient_key(ans.envelope, ["envelope"])
            elif ans.blobs:
                raise _bad(["blobs"], "attachments travel in a sealed answer")
            self._check_blobs(tx, auth, ans.blobs)
            # The requester must still be allowed to receive (membership, declaration).
            if code := self._recipient(tx, exchange.requester, view, now):
                return deny(
                    tx,
                    code,
                    action=action,
                    org=auth.org,
                    now_ms=now,
                    subject_org=exchange.requester,
                    **where,
                )
            ref = tx.append_ledger(
                action,
                now,
                {
                    **where,
                    "subject_ref": exchange.subject_ref,
                    "from": auth.org,
                    "to": exchange.requester,
                    "decision": ans.decision.value,
                    "reason_code": ans.reason_code,
                    "payload_sha256": None if digest is None else digest.hex(),
                    **({"blobs": sorted(ans.blobs)} if ans.blobs else {}),
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
                response=_compact(response),
                now_ms=now,
            )
            if exchange.kind == "wat":
                policy_store.wat_decided(tx, exchange_id, now)
            if ans.blobs:
                message_store.reference_blobs(
                    tx, blob_ids=ans.blobs, exchange_id=exchange_id, orgs=[exchange.requester]
                )
            self._deliver(
                tx,
                org=exchange.requester,
                kind=env_kind,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=exchange.case_ref,
                subject_ref=exchange.subject_ref,
                envelope=ans.envelope,
                now=now,
                decision=ans.decision.value,
                reason_code=ans.reason_code,
                extra={"blobs": list(ans.blobs)} if ans.blobs else None,
            )
            if ans.decision == Decision.KNOWN:
                self._notify_match(tx, exchange, holder=auth.org, now=now)
            return Done(202, response)

        return settle(await self._db.write("answer", job, bulk=bulk))

    async def overdue(self, auth: RequestAuth) -> list[dict[str, Any]]:
        now = self._clock.now_ms()
        return await self._db.read(
            "wat_overdue", lambda tx: policy_store.overdue_wat(tx, auth.org, now)
        )


__all__ = ["ExchangeService", "Party"]

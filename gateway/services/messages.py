"""Secure case messages and referrals (issue #8): the replacement for e-mail.

A message is sealed per recipient (envelopes of kind `message`, PROTOCOL §4) and
goes only to participants of the case, with the same membership and declaration
checks, in the same order of precedence, as a dat-request (PROTOCOL §3); a referral
(kind `referral`, case_ref "") goes from any member to the region's ZVH
organisation. Like every exchange step, a message is one storage job: the
idempotency record, the caller's nonce, the ledger entry (hashes only: SHA-256 of
enc || ct per envelope and the blob ids, never content), the attachment recipients
and the inbox rows commit together, and the caller hears of it only after.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.crypto.canonical import canonical_sha256
from gateway.errors import Conflict, DenyCode
from gateway.models import Envelope, EnvelopeKind, MessageIn, ReferralIn
from gateway.policy.access import MEMBER_ROLES, membership
from gateway.services.auth import RequestAuth
from gateway.services.exchange_base import (
    Admitted,
    ExchangeBase,
    bad,
    compact,
    deny_recipients,
    fan_out_entry,
    fan_out_response,
    first_denial,
    payload_hashes,
)
from gateway.services.outcome import Done, Outcome, deny, settle
from gateway.services.parties import party
from gateway.storage import message_store
from gateway.storage.database import Tx
from gateway.storage.ledger_store import LedgerRef
from gateway.storage.message_store import MessageRecord


class MessageService(ExchangeBase):
    # -- shared ----------------------------------------------------------------------

    def _replay(self, tx: Tx, auth: RequestAuth, exchange_id: str, body_hash: bytes) -> Done | None:
        existing = message_store.get_message(tx, exchange_id)
        if (
            existing is not None
            and existing.sender == auth.org
            and existing.body_sha256 == body_hash
        ):
            return Done(202, json.loads(existing.response))
        return None

    def _record(
        self,
        tx: Tx,
        *,
        kind: EnvelopeKind,
        auth: RequestAuth,
        exchange_id: str,
        case_ref: str,
        body_hash: bytes,
        response: dict[str, Any],
        blobs: Sequence[str],
        delivered: Sequence[Envelope],
        subject_ref: str,
        now: int,
    ) -> None:
        message_store.insert_message(
            tx,
            MessageRecord(
                exchange_id, kind.value, case_ref, auth.org, body_hash, compact(response), now
            ),
        )
        if blobs:
            message_store.reference_blobs(
                tx,
                blob_ids=list(blobs),
                exchange_id=exchange_id,
                orgs=[env.recipient for env in delivered],
            )
        for env in delivered:
            self._deliver(
                tx,
                org=env.recipient,
                kind=kind,
                exchange_id=exchange_id,
                sender=auth.org,
                case_ref=case_ref,
                subject_ref=subject_ref,
                envelope=env,
                now=now,
                # The recipient checks that the attachments its sealed body describes
                # are the ones it may fetch.
                extra={"blobs": list(blobs)},
            )

    # -- POST /api/v1/messages -------------------------------------------------------------

    async def submit_message(self, auth: RequestAuth, req: MessageIn, raw: dict[str, Any]) -> Done:
        exchange_id, checked = await self._check_fan_out(
            auth,
            req.envelopes,
            kind=EnvelopeKind.MESSAGE,
            case_ref=req.case_ref,
            subject_ref=req.subject_ref,
            to_self="a message to yourself",
        )
        body_hash = canonical_sha256(raw)
        now = self._clock.now_ms()
        where = {"case_ref": req.case_ref, "exchange_id": exchange_id}

        def job(tx: Tx) -> Outcome:
            admitted = self._admit(
                tx,
                auth,
                action="message",
                exchange_id=exchange_id,
                case_ref=req.case_ref,
                body_hash=body_hash,
                now=now,
                replay=self._replay,
            )
            if not isinstance(admitted, Admitted):
                return admitted
            if req.subject_ref and req.subject_ref not in admitted.case.subjects:
                raise bad(["subject_ref"], "is not a subject of this case")
            self._check_blobs(tx, auth, req.blobs)
            delivered, denied = self._fan_out(tx, req.envelopes, admitted.view, now)
            refs: list[LedgerRef] = []
            if delivered:
                hashes = payload_hashes(delivered, checked)
                body = {
                    **where,
                    "subject_ref": req.subject_ref,
                    "sender": auth.org,
                    **fan_out_entry(hashes),
                    "blobs": sorted(req.blobs),
                    "request_sha256": body_hash.hex(),
                }
                refs.append(tx.append_ledger("message", now, body, (auth.org, *hashes)))
            refs += deny_recipients(
                tx, denied, action="message", org=auth.org, now=now, where=where
            )
            if not delivered:
                return first_denial(denied, refs)
            response = fan_out_response(
                exchange_id, [env.recipient for env in delivered], denied, refs
            )
            self._record(
                tx,
                kind=EnvelopeKind.MESSAGE,
                auth=auth,
                exchange_id=exchange_id,
                case_ref=req.case_ref,
                body_hash=body_hash,
                response=response,
                blobs=req.blobs,
                delivered=delivered,
                subject_ref=req.subject_ref,
                now=now,
            )
            return Done(202, response)

        return settle(await self._db.write("message", job))

    # -- POST /api/v1/referrals ------------------------------------------------------------

    async def submit_referral(
        self, auth: RequestAuth, req: ReferralIn, raw: dict[str, Any]
    ) -> Done:
        env = req.envelope
        exchange_id = env.exchange_id
        self._check_binding(
            env,
            ["envelope"],
            kind=EnvelopeKind.REFERRAL,
            exchange_id=exchange_id,
            case_ref="",
            subject_ref="",
        )
        digest = await self._check_signature(auth, env, ["envelope"])
        body_hash = canonical_sha256(raw)
        now = self._clock.now_ms()
        where = {"exchange_id": exchange_id}

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if (replay := self._replay(tx, auth, exchange_id, body_hash)) is not None:
                return replay
            sender = party(tx, auth.caller, now)
            # Any registered member may refer; an incidental partner has no protocol
            # membership to refer under (it takes part in one case only).
            code = (
                DenyCode.FORBIDDEN_ROLE if sender.role not in MEMBER_ROLES else membership(sender)
            )
            if code:
                return deny(tx, code, action="referral", org=auth.org, now_ms=now, **where)
            if message_store.exchange_id_taken(tx, exchange_id):
                raise Conflict(
                    "This exchange_id was used for another request.", code="exchange-exists"
                )
            zvh = self._directory.get(env.recipient)
            if zvh is None or zvh.role != "zvh" or env.recipient == auth.org:
                raise bad(["envelope", "recipient"], "is not the region's ZVH organisation")
            self._check_recipient_key(env, ["envelope"])
            self._check_blobs(tx, auth, req.blobs)
            if code := membership(party(tx, zvh, now)):
                return deny(
                    tx,
                    code,
                    action="referral",
                    org=auth.org,
                    now_ms=now,
                    subject_org=env.recipient,
                    **where,
                )
            ref = tx.append_ledger(
                "referral",
                now,
                {
                    **where,
                    "sender": auth.org,
                    "recipient": env.recipient,
                    "payload_sha256": digest.hex(),
                    "blobs": sorted(req.blobs),
                    "request_sha256": body_hash.hex(),
                },
                (auth.org, env.recipient),
            )
            response = {
                "exchange_id": exchange_id,
                "delivered": [env.recipient],
                "denied": [],
                "ledger": [ref.to_json()],
            }
            self._record(
                tx,
                kind=EnvelopeKind.REFERRAL,
                auth=auth,
                exchange_id=exchange_id,
                case_ref="",
                body_hash=body_hash,
                response=response,
                blobs=req.blobs,
                delivered=[env],
                subject_ref="",
                now=now,
            )
            return Done(202, response)

        return settle(await self._db.write("referral", job))

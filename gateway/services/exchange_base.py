"""The parts every exchange step shares: envelope checks in the protocol's order of
precedence (PROTOCOL §3, §4), the sender's admission inside a storage job, and
delivery to an inbox. `ExchangeService` builds the dat and wat flows on them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock
from gateway.crypto.envelope import outer_signature, signed_payload_hash
from gateway.crypto.verifier import Item, Verifier
from gateway.errors import Conflict, DenyCode, EnvelopeError, InvalidRequest, NotFound
from gateway.models import (
    Envelope,
    EnvelopeKind,
)
from gateway.policy.access import CaseView, case_access, membership, recipient_access
from gateway.policy.rules import Policy
from gateway.services.auth import RequestAuth
from gateway.services.directory import Directory
from gateway.services.notifications import Notifier
from gateway.services.outcome import DETAILS, Denied, Done, Outcome, deny, record_denial
from gateway.services.parties import party
from gateway.storage import message_store, stores
from gateway.storage.database import Database, Tx
from gateway.storage.ledger_store import LedgerRef
from gateway.storage.records import CaseRecord, ExchangeRecord

_BAD_ENVELOPE = "envelope signature or encoding is invalid"
PRECEDENCE = (DenyCode.NOT_A_MEMBER, DenyCode.DECLARATION_REQUIRED, DenyCode.NOT_A_PARTICIPANT)
HOUR_MS = 3_600_000


def bad(loc: list[str | int], msg: str) -> InvalidRequest:
    return InvalidRequest("The request does not validate.", errors=[{"loc": loc, "msg": msg}])


def compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def deny_recipients(
    tx: Tx,
    denied: Sequence[tuple[str, DenyCode]],
    *,
    action: str,
    org: str,
    now: int,
    where: dict[str, Any],
) -> list[LedgerRef]:
    """A ledger entry for each recipient the hub refused to deliver to."""
    return [
        record_denial(
            tx, code=code, action=action, org=org, now_ms=now, subject_org=denied_org, **where
        )
        for denied_org, code in denied
    ]


def first_denial(denied: Sequence[tuple[str, DenyCode]], refs: Sequence[LedgerRef]) -> Denied:
    """Nobody could be delivered to: the answer names the first code in precedence."""
    first = min((code for _, code in denied), key=PRECEDENCE.index)
    return Denied(first, DETAILS[first], tuple(refs))


# (tx, auth, exchange_id, body_hash) -> the stored answer to the same request, or None
Replay = Callable[[Tx, RequestAuth, str, bytes], Done | None]


def replay_exchange(tx: Tx, auth: RequestAuth, exchange_id: str, body_hash: bytes) -> Done | None:
    existing = stores.get_exchange(tx, exchange_id)
    if (
        existing is not None
        and existing.requester == auth.org
        and existing.body_sha256 == body_hash
    ):
        return Done(202, json.loads(existing.response))
    return None


def payload_hashes(delivered: Sequence[Envelope], checked: Mapping[str, bytes]) -> dict[str, bytes]:
    """Recipient -> its envelope's payload hash (what the ledger records of the
    content), of those delivered, out of what `_check_fan_out` returned."""
    return {env.recipient: checked[env.recipient] for env in delivered}


def fan_out_entry(hashes: dict[str, bytes]) -> dict[str, Any]:
    """The recipients part of a ledger body: names and payload hashes, sorted."""
    return {
        "recipients": sorted(hashes),
        "payload_sha256": {org: h.hex() for org, h in sorted(hashes.items())},
    }


def fan_out_response(
    exchange_id: str,
    delivered: Sequence[str],
    denied: Sequence[tuple[str, DenyCode]],
    refs: Sequence[LedgerRef],
) -> dict[str, Any]:
    """The 202 of a request sealed per recipient: who got it, who was denied, entries."""
    return {
        "exchange_id": exchange_id,
        "delivered": sorted(delivered),
        "denied": [{"org": org, "code": code.value} for org, code in denied],
        "ledger": [r.to_json() for r in refs],
    }


@dataclass(frozen=True, slots=True)
class Admitted:
    """The sender passed its checks inside a job: the case it acts in."""

    case: CaseRecord
    view: CaseView


class ExchangeBase:
    # Set by the composition root: the first `known` dat answer notifies the requester.
    notifier: Notifier | None = None

    def __init__(
        self,
        db: Database,
        directory: Directory,
        clock: Clock,
        policy: Policy,
        notify: Callable[[str], None],
        *,
        verifier: Verifier | None = None,
    ) -> None:
        self._verifier = verifier or Verifier()
        self._db = db
        self._directory = directory
        self._clock = clock
        self._policy = policy
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
                raise bad([*loc, name], f"does not match the request ({name})")

    def _outer_item(self, auth: RequestAuth, env: Envelope, loc: list[str | int]) -> Item:
        """The sender and the envelope's structure (400s); returns its outer signature
        for `_verify_outer` to check."""
        if env.sender != auth.org or env.sender_kid != auth.caller.signing_kid:
            raise bad([*loc, "sender"], "is not the authenticated organisation's current key")
        try:
            return outer_signature(env.model_dump(mode="json"), auth.caller.signing_key)
        except EnvelopeError as exc:
            raise bad([*loc, "sig"], _BAD_ENVELOPE) from exc

    async def _verify_outer(
        self, auth: RequestAuth, checks: Sequence[tuple[Item, list[str | int]]]
    ) -> None:
        """The outer signatures, all at once (in the verifier process, when the node
        has one) and with the request's own when its check was put off (its 401
        first); the first invalid envelope is the 400."""
        valid = await auth.verify_along(self._verifier, [item for item, _ in checks])
        for (_, loc), ok in zip(checks, valid, strict=True):
            if not ok:
                raise bad([*loc, "sig"], _BAD_ENVELOPE)

    async def _check_signature(
        self, auth: RequestAuth, env: Envelope, loc: list[str | int]
    ) -> bytes:
        """The envelope's outer signature; returns its payload hash (for the ledger)."""
        item = self._outer_item(auth, env, loc)
        await self._verify_outer(auth, [(item, loc)])
        return signed_payload_hash(item[2])

    async def _check_fan_out(
        self,
        auth: RequestAuth,
        envelopes: Sequence[Envelope],
        *,
        kind: EnvelopeKind,
        case_ref: str,
        subject_ref: str,
        to_self: str,
    ) -> tuple[str, dict[str, bytes]]:
        """A request sealed once per recipient (dat-request, case message): one
        envelope each, every one bound to the request and signed by the caller, none
        to itself (`to_self` says so). Returns the exchange id they share and each
        recipient's payload hash (from the bytes the signature check decoded).

        Envelope by envelope, the binding, then the signature, then the recipient; the
        signatures are verified together, and an invalid one still comes before any
        later envelope's other fault."""
        exchange_id = envelopes[0].exchange_id
        recipients = [env.recipient for env in envelopes]
        if len(set(recipients)) != len(recipients):
            raise bad(["envelopes"], "one envelope per recipient")
        signed: list[tuple[Item, list[str | int]]] = []
        fault: InvalidRequest | None = None
        for i, env in enumerate(envelopes):
            loc: list[str | int] = ["envelopes", i]
            try:
                self._check_binding(
                    env,
                    loc,
                    kind=kind,
                    exchange_id=exchange_id,
                    case_ref=case_ref,
                    subject_ref=subject_ref,
                )
                signed.append((self._outer_item(auth, env, loc), loc))
                if env.recipient == auth.org:
                    raise bad([*loc, "recipient"], to_self)
            except InvalidRequest as exc:
                fault = exc
                break
        await self._verify_outer(auth, signed)
        if fault is not None:
            raise fault
        hashes = {
            env.recipient: signed_payload_hash(item[2])
            for env, (item, _) in zip(envelopes, signed, strict=True)
        }
        return exchange_id, hashes

    def _fan_out(
        self, tx: Tx, envelopes: Sequence[Envelope], view: CaseView, now: int
    ) -> tuple[list[Envelope], list[tuple[str, DenyCode]]]:
        """Inside the job: the recipients' keys (400), then who may receive (each
        recipient delivered to or denied with its code)."""
        for i, env in enumerate(envelopes):
            self._check_recipient_key(env, ["envelopes", i])
        delivered: list[Envelope] = []
        denied: list[tuple[str, DenyCode]] = []
        for env in envelopes:
            code = self._recipient(tx, env.recipient, view, now)
            if code is None:
                delivered.append(env)
            else:
                denied.append((env.recipient, code))
        return delivered, denied

    def _check_recipient_key(self, env: Envelope, loc: list[str | int]) -> None:
        rec = self._directory.get(env.recipient)
        if rec is None or rec.role == "hub":
            raise bad([*loc, "recipient"], "unknown organisation")
        if rec.encryption_kid != env.recipient_kid:
            raise bad([*loc, "recipient_kid"], "is not the recipient's current encryption key")

    def _check_blobs(self, tx: Tx, auth: RequestAuth, blobs: Sequence[str]) -> None:
        """Only the uploader may name a blob: naming another organisation's blob id
        must never make it fetchable by someone else."""
        if len(set(blobs)) != len(blobs):
            raise bad(["blobs"], "a blob is named twice")
        if not blobs:
            return
        owned = message_store.owned_blobs(tx, auth.org, list(blobs))
        for i, blob_id in enumerate(blobs):
            if blob_id not in owned:
                raise bad(["blobs", i], "unknown blob (upload it first)")

    def _recipient(self, tx: Tx, org: str, view: CaseView, now: int) -> DenyCode | None:
        rec = self._directory.get(org)
        if rec is None:
            return DenyCode.NOT_A_PARTICIPANT
        return recipient_access(party(tx, rec, now, view.case_ref), view)

    # -- the sender's checks, shared by dat and wat ------------------------------

    def _admit(
        self,
        tx: Tx,
        auth: RequestAuth,
        *,
        action: str,
        exchange_id: str,
        case_ref: str,
        body_hash: bytes,
        now: int,
        replay: Replay | None = None,
    ) -> Admitted | Outcome:
        """The case, or what to answer at once (an identical retry's original
        response, or a recorded denial). In order: idempotent replay, forbidden-role /
        not-a-member, 404, 409 exchange-exists, declaration-required /
        not-a-participant, 409 case-closed. `replay` finds the caller's earlier
        identical request (default: a dat or wat exchange)."""
        auth.persist(tx)
        done = (replay or replay_exchange)(tx, auth, exchange_id, body_hash)
        if done is not None:
            return done
        where = {"case_ref": case_ref, "exchange_id": exchange_id}
        sender = party(tx, auth.caller, now, case_ref)
        if code := membership(sender):
            return deny(tx, code, action=action, org=auth.org, now_ms=now, **where)
        case = stores.get_case(tx, case_ref)
        if case is None:
            raise NotFound("Unknown case.")
        # Exchange ids are unique per hub, across dat/wat exchanges and case messages.
        if message_store.exchange_id_taken(tx, exchange_id):
            raise Conflict("This exchange_id was used for another request.", code="exchange-exists")
        view = CaseView(case.case_ref, case.participants)
        if code := case_access(sender, view):
            return deny(tx, code, action=action, org=auth.org, now_ms=now, **where)
        if case.status == "closed":
            raise Conflict("The case is closed.", code="case-closed")
        return Admitted(case, view)

    def _deliver(
        self,
        tx: Tx,
        *,
        org: str,
        kind: EnvelopeKind,
        exchange_id: str,
        sender: str,
        case_ref: str,
        subject_ref: str,
        envelope: Envelope | None,
        now: int,
        decision: str | None = None,
        reason_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        env_json = None
        if envelope is not None:
            if extra:
                env_json = compact({"envelope": envelope.model_dump(mode="json"), **extra})
            else:
                # pydantic's own serialiser: compact JSON in wire order, as `compact`
                # gives it, at a fifth of the cost (this runs on the database thread).
                env_json = envelope.model_dump_json()
        elif extra:
            env_json = compact({"envelope": None, **extra})
        stores.enqueue(
            tx,
            org=org,
            kind=kind.value,
            exchange_id=exchange_id,
            sender=sender,
            case_ref=case_ref,
            subject_ref=subject_ref,
            decision=decision,
            reason_code=reason_code,
            envelope=env_json,
            now_ms=now,
        )
        tx.on_commit(functools.partial(self._notify, org))

    # -- dat-request -----------------------------------------------------------

    def _notify_match(self, tx: Tx, exchange: ExchangeRecord, *, holder: str, now: int) -> None:
        """`dat-match`, once per dat-request: at its first `known` answer (the answers
        themselves follow in the inbox; a second holder's match adds nothing new)."""
        if self.notifier is None or stores.known_answers(tx, exchange.exchange_id) > 1:
            return
        self.notifier.send(
            tx,
            [exchange.requester],
            event="dat-match",
            case_ref=exchange.case_ref,
            subject_ref=exchange.subject_ref,
            exchange_id=exchange.exchange_id,
            now_ms=now,
            holder=holder,
        )

"""What the policy tests share: a `World` around a running hub (signed raw HTTP through
`tests.web.helpers.Wire`, the client library for set-up steps) and the `Outcome` a
step must have, checked against the response and the hub's SQLite ledger."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.adapters.client import HubClient, Received
from gateway.clock import SystemClock
from gateway.crypto.encoding import sha256
from gateway.crypto.keys import OrgKeys, sign_record
from gateway.errors import DenyCode
from gateway.services import admin
from gateway.storage.policy_store import ProtocolRecord
from tests.conftest import MEMBERS, Network, accede_all, synthetic_pid
from tests.web.helpers import (
    Reply,
    Wire,
    assert_durable,
    assert_ledger_refs,
    assert_ok,
    assert_problem,
    locs,
)

CASE = "C-1"
SUBJECT = "S1"
THEME = "huiselijk-geweld"
PROTOCOL_V1 = "privacyprotocol-v1"
DAY_MS = 86_400_000
FIVE = {
    "purpose": "veiligheid van het kind",
    "necessity": "zonder deze informatie geen risicotaxatie",
    "subsidiarity": "niet op een minder ingrijpende manier te verkrijgen",
    "proportionality": "alleen contactgegevens",
    "effectiveness": "maakt afstemming tussen hulpverleners mogelijk",
}
# Complete for a non-special category under a statutory duty.
BASIS: dict[str, Any] = {
    "gdpr_art6": "e",
    "national_law": "Wet gemeentelijke schuldhulpverlening art. 7",
    "secrecy_permission": "statutory-duty",
    "five_questions": FIVE,
}
# Complete for the special category `justitiele-gegevens` (AVG art. 10) too.
CRIMINAL_BASIS: dict[str, Any] = {**BASIS, "gdpr_special": "art10"}
CONSENT_BASIS: dict[str, Any] = {
    "gdpr_art6": "a",
    "national_law": "AVG art. 6 lid 1 sub a",
    "secrecy_permission": "consent",
    "consent_ref": "toestemming-2024-0042",
}
# The codes a dat-request's recipients can fail, in PROTOCOL §3's order of precedence.
RECIPIENT_PRECEDENCE = (
    DenyCode.NOT_A_MEMBER.value,
    DenyCode.DECLARATION_REQUIRED.value,
    DenyCode.NOT_A_PARTICIPANT.value,
)


def without(basis: Mapping[str, Any], *path: str) -> dict[str, Any]:
    """A copy of `basis` with the field at `path` (one or two keys) removed."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in basis.items()}
    if len(path) == 1:
        out.pop(path[0], None)
    else:
        out[path[0]].pop(path[1], None)
    return out


def with_(basis: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    return {**basis, **changes}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a step must answer. For a 403: `code`, and every ledger ref the problem names
    is a `denied` entry (with `rule` when given, and exactly `denied` as its
    (denied_org, code) pairs when given). For a 2xx: the response's first ledger ref is
    an entry of type `entry`. For a 400: `loc` is among the problem's field paths."""

    status: int
    code: str | None = None
    entry: str | None = None
    rule: str | None = None
    loc: tuple[str | int, ...] | None = None
    denied: frozenset[tuple[str, str]] | None = None


def allow(status: int, entry: str) -> Outcome:
    return Outcome(status, entry=entry)


def forbidden(
    code: DenyCode, rule: str | None = None, denied: Sequence[tuple[str, DenyCode]] = ()
) -> Outcome:
    pairs = frozenset((org, c.value) for org, c in denied) if denied else None
    return Outcome(403, code.value, rule=rule, denied=pairs)


def conflict(code: str) -> Outcome:
    return Outcome(409, code)


def invalid(*loc: str | int) -> Outcome:
    return Outcome(400, "invalid-request", loc=loc)


@dataclass(frozen=True, slots=True)
class WatSpec:
    """One wat-request as its requester means it (and as `policy explain` takes it)."""

    requester: str
    holder: str
    categories: tuple[str, ...]
    legal_basis: Mapping[str, Any]
    case_ref: str = CASE
    subject_ref: str = SUBJECT
    purpose: str = "risicotaxatie"
    processing_activity: str = "mda-plus-plus"

    def explain_request(self) -> dict[str, Any]:
        return {
            "requester": self.requester,
            "case_ref": self.case_ref,
            "subject_ref": self.subject_ref,
            "holder": self.holder,
            "categories": list(self.categories),
            "legal_basis": dict(self.legal_basis),
        }


@dataclass
class World:
    net: Network
    wire: Wire
    _clients: dict[str, HubClient] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.net.settings.node.database

    def keys(self, org: str) -> OrgKeys:
        return self.net.keys[org]

    def client(self, org: str) -> HubClient:
        if org not in self._clients:
            self._clients[org] = self.net.client(org)
        return self._clients[org]

    async def post(self, org: str, target: str, payload: Mapping[str, Any]) -> Reply:
        return await self.wire.signed(self.keys(org), "POST", target, dict(payload))

    # -- cases ---------------------------------------------------------------------------

    def case_body(
        self,
        case_ref: str = CASE,
        *,
        theme: str = THEME,
        participants: Sequence[str] = ("politie-test", "vt-test"),
        subjects: Sequence[str] = (SUBJECT,),
    ) -> dict[str, Any]:
        return {
            "case_ref": case_ref,
            "theme": theme,
            "subjects": [{"subject_ref": s, "pid": synthetic_pid()} for s in subjects],
            "participants": list(participants),
        }

    async def register(
        self,
        case_ref: str = CASE,
        *,
        theme: str = THEME,
        participants: Sequence[str] = ("politie-test", "vt-test"),
        subjects: Sequence[str] = (SUBJECT,),
        by: str = "zvh-test",
    ) -> Reply:
        body = self.case_body(case_ref, theme=theme, participants=participants, subjects=subjects)
        return await self.post(by, "/api/v1/cases", body)

    async def open_case(
        self,
        case_ref: str = CASE,
        *,
        theme: str = THEME,
        participants: Sequence[str] = ("politie-test", "vt-test"),
        subjects: Sequence[str] = (SUBJECT,),
    ) -> None:
        reply = await self.register(
            case_ref, theme=theme, participants=participants, subjects=subjects
        )
        assert_ok(reply, 201)

    async def close_case(self, case_ref: str = CASE) -> None:
        await self.client("zvh-test").close_case(case_ref)

    # -- dat -----------------------------------------------------------------------------

    async def dat_body(
        self,
        sender: str,
        recipients: Sequence[str],
        *,
        case_ref: str = CASE,
        subject_ref: str = SUBJECT,
        exchange_id: str | None = None,
        question: str = "known?",
    ) -> dict[str, Any]:
        xid = exchange_id or str(uuid.uuid4())
        envelopes = [
            await self.client(sender).seal_to(
                org,
                kind="dat-request",
                exchange_id=xid,
                case_ref=case_ref,
                subject_ref=subject_ref,
                body={"question": question},
            )
            for org in recipients
        ]
        return {"case_ref": case_ref, "subject_ref": subject_ref, "envelopes": envelopes}

    async def dat(
        self,
        sender: str,
        recipients: Sequence[str],
        *,
        case_ref: str = CASE,
        subject_ref: str = SUBJECT,
        exchange_id: str | None = None,
    ) -> Reply:
        body = await self.dat_body(
            sender, recipients, case_ref=case_ref, subject_ref=subject_ref, exchange_id=exchange_id
        )
        return await self.post(sender, "/api/v1/dat-requests", body)

    async def received(self, org: str, exchange_id: str) -> Received:
        """The message of `exchange_id` in `org`'s inbox (fetched, not acked)."""
        for message in await self.client(org).fetch(wait=0, limit=1000):
            if message.exchange_id == exchange_id:
                assert message.error is None, message
                return message
        raise AssertionError(f"{org} never received {exchange_id}")

    async def answer(
        self,
        org: str,
        request: Received,
        decision: str,
        content: Mapping[str, Any] | None = None,
        *,
        reason_code: str | None = None,
    ) -> Reply:
        assert request.exchange_id is not None
        payload: dict[str, Any] = {"decision": decision}
        if reason_code is not None:
            payload["reason_code"] = reason_code
        if content is not None:
            kind = "dat-answer" if request.kind == "dat-request" else "wat-answer"
            payload["envelope"] = await self.client(org).seal_to(
                request.sender,
                kind=kind,
                exchange_id=request.exchange_id,
                case_ref=request.case_ref,
                subject_ref=request.subject_ref,
                body=dict(content),
            )
        return await self.post(org, f"/api/v1/exchanges/{request.exchange_id}/answers", payload)

    async def dat_answered(
        self,
        holder: str,
        decision: str = "known",
        *,
        requester: str = "zvh-test",
        case_ref: str = CASE,
        subject_ref: str = SUBJECT,
    ) -> None:
        """`requester` asks `holder` about the subject, and `holder` answers `decision`."""
        asked = assert_ok(
            await self.dat(requester, [holder], case_ref=case_ref, subject_ref=subject_ref), 202
        )
        request = await self.received(holder, asked["exchange_id"])
        assert_ok(await self.answer(holder, request, decision, {"contact": "team Noord"}), 202)

    # -- wat -----------------------------------------------------------------------------

    async def wat(self, spec: WatSpec, *, exchange_id: str | None = None) -> Reply:
        xid = exchange_id or str(uuid.uuid4())
        envelope = await self.client(spec.requester).seal_to(
            spec.holder,
            kind="wat-request",
            exchange_id=xid,
            case_ref=spec.case_ref,
            subject_ref=spec.subject_ref,
            body={"question": "wat mag gedeeld worden?"},
        )
        body = {
            "case_ref": spec.case_ref,
            "subject_ref": spec.subject_ref,
            "holder": spec.holder,
            "categories": list(spec.categories),
            "purpose": spec.purpose,
            "processing_activity": spec.processing_activity,
            "legal_basis": dict(spec.legal_basis),
            "envelope": envelope,
        }
        return await self.post(spec.requester, "/api/v1/wat-requests", body)

    # -- accessions and declarations ----------------------------------------------------

    async def accession_body(
        self,
        org: str,
        protocol_id: str = PROTOCOL_V1,
        *,
        hub: str | None = None,
        text_sha256: str | None = None,
        signer: OrgKeys | None = None,
    ) -> dict[str, Any]:
        """A signed accession; `hub`, `text_sha256` and the signing key may be wrong."""
        text = await self.client(org).call_text(f"/api/v1/protocols/{protocol_id}/text")
        record = {
            "protocol_id": protocol_id,
            "hub": hub or self.net.settings.node.org,
            "org": org,
            "text_sha256": text_sha256 or sha256(text).hex(),
            "signed_at_ms": SystemClock().now_ms(),
        }
        return {**record, "sig": sign_record(signer or self.keys(org), record)}

    async def accede(self, org: str, protocol_id: str = PROTOCOL_V1, **wrong: Any) -> Reply:
        body = await self.accession_body(org, protocol_id, **wrong)
        return await self.post(org, f"/api/v1/protocols/{protocol_id}/accessions", body)

    async def declare(
        self,
        org: str,
        case_ref: str = CASE,
        *,
        valid_from_ms: int | None = None,
        valid_until_ms: int | None = None,
        text_sha256: str | None = None,
        hub: str | None = None,
    ) -> Reply:
        """A signed geheimhoudingsverklaring over the text the hub serves (unless
        `text_sha256` is given); `hub` and `text_sha256` may be wrong on purpose."""
        now = SystemClock().now_ms()
        start = now - 60_000 if valid_from_ms is None else valid_from_ms
        if text_sha256 is None:
            text_sha256 = sha256(await self.client(org).declaration_text(case_ref)).hex()
        record = {
            "hub": hub or self.net.settings.node.org,
            "case_ref": case_ref,
            "signer": {"name": "J. de Vries", "role": "teamleider wonen"},
            "valid_from_ms": start,
            "valid_until_ms": start + 30 * DAY_MS if valid_until_ms is None else valid_until_ms,
            "text_sha256": text_sha256,
        }
        sig = sign_record(self.keys(org), {**record, "org": org})
        return await self.post(org, "/api/v1/declarations", {**record, "sig": sig})

    def revoke_accession(self, org: str, protocol_id: str = PROTOCOL_V1) -> None:
        assert admin.revoke_accession(self.net.settings, SystemClock(), protocol_id, org)

    def publish_protocol(self, text: str = "Privacyprotocol Testregio, versie 2.\n") -> str:
        rec: ProtocolRecord = admin.publish_protocol(
            self.net.settings,
            SystemClock(),
            text=text.encode(),
            title="Privacyprotocol v2",
            themes=[THEME, "zsm-advies"],
        )
        return rec.protocol_id

    # -- checking an outcome ------------------------------------------------------------

    async def expect(self, reply: Reply, want: Outcome) -> dict[str, Any]:
        """Assert `reply` is `want`, including its ledger entries; return its body."""
        if want.status >= 400:
            assert want.code is not None
            body = assert_problem(reply, want.status, want.code)
            if want.status == 403:
                await self._expect_denials(body, want)
            else:
                assert "ledger" not in body, body  # only denials and steps are recorded
            if want.loc is not None:
                assert list(want.loc) in locs(body), body
            return body
        body = assert_ok(reply, want.status)
        assert want.entry is not None
        refs = assert_ledger_refs(body, len(body["ledger"]))
        assert refs, body
        leaf = await assert_durable(self.db, refs[0])
        assert leaf.entry_type == want.entry, (leaf.entry_type, body)
        return body

    async def _expect_denials(self, problem: dict[str, Any], want: Outcome) -> None:
        refs = assert_ledger_refs(problem, len(problem.get("ledger", [])))
        assert refs, f"a 403 without a ledger entry: {problem}"
        pairs: set[tuple[str, str]] = set()
        for ref in refs:
            leaf = await assert_durable(self.db, ref)
            assert leaf.entry_type == "denied", leaf
            assert leaf.body is not None
            if want.rule is not None:
                assert leaf.body.get("rule") == want.rule, leaf.body
            pairs.add((str(leaf.body.get("denied_org", leaf.body["org"])), leaf.body["code"]))
        codes = {code for _, code in pairs}
        if want.denied is not None:
            assert pairs == set(want.denied), pairs
            # The problem's code is the first of the recipients' codes by precedence.
            first = min(codes, key=RECIPIENT_PRECEDENCE.index)
            assert first == want.code
        else:
            assert len(refs) == 1, refs
            assert codes == {want.code}, pairs


@contextlib.asynccontextmanager
async def world(net: Network, members: Sequence[str] = MEMBERS) -> AsyncIterator[World]:
    """A `World` on `net` (a `bare_network`) where `members` have signed their accession."""
    await accede_all(net, tuple(members))
    w = Wire(net.url, net.settings.authority)
    try:
        yield World(net, w)
    finally:
        await w.close()


Step = Callable[[World], Awaitable[Reply]]
Prepare = Callable[[World], Awaitable[None]]

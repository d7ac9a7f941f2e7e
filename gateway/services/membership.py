"""Privacy protocols, accessions and geheimhoudingsverklaringen (PROTOCOL §7).

A protocol is published by the region (admin CLI) with its exact text; partners
accede by signing `{protocol_id, hub, org, text_sha256, signed_at_ms}`. An
incidental partner signs a case-scoped, time-bound declaration over the exact
Dutch text the hub serves for that case. The hub keeps every signed record as
received, so it can show it to the signer's organisation and a privacy officer,
and records each one in the ledger.
"""

from __future__ import annotations

from typing import Any

from gateway.clock import Clock
from gateway.crypto.canonical import canonical_json
from gateway.crypto.encoding import sha256
from gateway.crypto.keys import verify_record
from gateway.errors import Conflict, DenyCode, InvalidRequest, NotFound
from gateway.models import AccessionIn, DeclarationIn
from gateway.policy.access import may_accede, may_declare
from gateway.services.auth import RequestAuth
from gateway.services.directory import Directory
from gateway.services.outcome import Done, Outcome, deny, settle
from gateway.services.parties import party
from gateway.storage import policy_store, stores
from gateway.storage.database import Database, Tx

MAX_DECLARATION_DAYS = 366
_NOT_PARTICIPANT = DenyCode.NOT_A_PARTICIPANT
_DAY_MS = 86_400_000

DECLARATION_TEMPLATE = """GEHEIMHOUDINGSVERKLARING

Zorg- en Veiligheidshuis (hub): {hub}
Casus: {case_ref}
Organisatie: {org_name} ({org})

Ondergetekende, handelend namens bovengenoemde organisatie, neemt incidenteel deel
aan de persoonsgerichte aanpak van bovengenoemde casus en verklaart:

1. alle informatie die in het kader van deze casus met de organisatie wordt gedeeld
   vertrouwelijk te behandelen en uitsluitend te gebruiken voor het doel waarvoor
   zij is verstrekt;
2. deze informatie niet aan derden te verstrekken, tenzij een wettelijk voorschrift
   daartoe verplicht;
3. de informatie niet langer te bewaren dan voor dat doel noodzakelijk is, en haar
   daarna te vernietigen;
4. ervan op de hoogte te zijn dat schending van deze verklaring kan leiden tot
   uitsluiting van het casusoverleg en tot juridische stappen.

Deze verklaring geldt uitsluitend voor de genoemde casus en voor de periode
waarvoor zij is ondertekend.
"""


def _bad(loc: list[str | int], msg: str) -> InvalidRequest:
    return InvalidRequest("The signed record is not valid here.", errors=[{"loc": loc, "msg": msg}])


class MembershipService:
    def __init__(self, db: Database, directory: Directory, clock: Clock, hub_org: str) -> None:
        self._db = db
        self._directory = directory
        self._clock = clock
        self._hub = hub_org

    # -- protocols -------------------------------------------------------------

    async def protocols(self) -> list[dict[str, Any]]:
        records = await self._db.read("protocols", policy_store.list_protocols)
        return [r.summary() for r in records]

    async def protocol_text(self, protocol_id: str) -> bytes:
        rec = await self._db.read("protocol", lambda tx: policy_store.get_protocol(tx, protocol_id))
        if rec is None:
            raise NotFound("Unknown protocol.")
        return rec.text

    async def accede(self, auth: RequestAuth, protocol_id: str, req: AccessionIn) -> Done:
        record = req.model_dump(mode="json", exclude={"sig"})
        if req.protocol_id != protocol_id:
            raise _bad(["protocol_id"], "does not match the path")
        if req.org != auth.org:
            raise _bad(["org"], "is not the authenticated organisation")
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if code := may_accede(party(tx, auth.caller, now)):
                return deny(tx, code, action="accession", org=auth.org, now_ms=now)
            protocol = policy_store.get_protocol(tx, protocol_id)
            if protocol is None:
                raise NotFound("Unknown protocol.")
            if req.hub != self._hub:
                raise _bad(["hub"], "the record is signed for another hub")
            if req.text_sha256 != protocol.text_sha256:
                raise _bad(["text_sha256"], "is not the hash of this protocol's text")
            if protocol.valid_until_ms is not None and protocol.valid_until_ms <= now:
                raise _bad(["protocol_id"], "this protocol is no longer in force")
            if not verify_record(auth.caller.signing_key, record, req.sig):
                raise _bad(["sig"], "the signature does not verify with the organisation's key")
            signed = canonical_json({**record, "sig": req.sig}).decode()
            existing = policy_store.get_accession_record(tx, protocol_id, auth.org)
            body = {"protocol_id": protocol_id, "org": auth.org, "signed_at_ms": req.signed_at_ms}
            if existing is not None and existing == (signed, None):
                return Done(201, {**body, "ledger": []})  # the same record again: a retry
            policy_store.upsert_accession(
                tx,
                protocol_id=protocol_id,
                org=auth.org,
                text_sha256=req.text_sha256,
                signed_at_ms=req.signed_at_ms,
                record=signed,
                now_ms=now,
            )
            ref = tx.append_ledger(
                "accession",
                now,
                {
                    **body,
                    "hub": self._hub,
                    "text_sha256": req.text_sha256,
                    "record_sha256": sha256(signed.encode()).hex(),
                },
                (auth.org,),
            )
            return Done(201, {**body, "ledger": [ref.to_json()]})

        return settle(await self._db.write("accession", job))

    # -- declarations ----------------------------------------------------------

    def declaration_text(self, case_ref: str, org: str) -> bytes:
        rec = self._directory.get(org)
        name = rec.name if rec is not None else org
        return DECLARATION_TEMPLATE.format(
            hub=self._hub, case_ref=case_ref, org=org, org_name=name
        ).encode("utf-8")

    async def declaration_text_for(self, auth: RequestAuth, case_ref: str) -> bytes:
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            if code := may_declare(party(tx, auth.caller, now)):
                return deny(
                    tx, code, action="declaration-text", org=auth.org, now_ms=now, case_ref=case_ref
                )
            case = stores.get_case(tx, case_ref)
            if case is None:
                raise NotFound("Unknown case.")
            if auth.org not in case.participants:
                return deny(
                    tx,
                    _NOT_PARTICIPANT,
                    action="declaration-text",
                    org=auth.org,
                    now_ms=now,
                    case_ref=case_ref,
                )
            return Done(200, {})

        settle(await self._db.write("declaration_text", job))
        return self.declaration_text(case_ref, auth.org)

    async def declare(self, auth: RequestAuth, req: DeclarationIn) -> Done:
        record = {**req.model_dump(mode="json", exclude={"sig"}), "org": auth.org}
        if req.valid_until_ms <= req.valid_from_ms:
            raise _bad(["valid_until_ms"], "must be after valid_from_ms")
        if req.valid_until_ms - req.valid_from_ms > MAX_DECLARATION_DAYS * _DAY_MS:
            raise _bad(
                ["valid_until_ms"], f"a declaration lasts at most {MAX_DECLARATION_DAYS} days"
            )
        now = self._clock.now_ms()

        def job(tx: Tx) -> Outcome:
            auth.persist(tx)
            me = party(tx, auth.caller, now)
            if code := may_declare(me):
                return deny(
                    tx, code, action="declaration", org=auth.org, now_ms=now, case_ref=req.case_ref
                )
            case = stores.get_case(tx, req.case_ref)
            if case is None:
                raise NotFound("Unknown case.")
            if auth.org not in case.participants:
                return deny(
                    tx,
                    _NOT_PARTICIPANT,
                    action="declaration",
                    org=auth.org,
                    now_ms=now,
                    case_ref=req.case_ref,
                )
            if case.status == "closed":
                raise Conflict("The case is closed.", code="case-closed")
            if req.hub != self._hub:
                raise _bad(["hub"], "the record is signed for another hub")
            expected = sha256(self.declaration_text(req.case_ref, auth.org)).hex()
            if req.text_sha256 != expected:
                raise _bad(["text_sha256"], "is not the hash of this case's declaration text")
            if not verify_record(auth.caller.signing_key, record, req.sig):
                raise _bad(["sig"], "the signature does not verify with the organisation's key")
            signed = canonical_json({**record, "sig": req.sig}).decode()
            body = {
                "case_ref": req.case_ref,
                "org": auth.org,
                "valid_from_ms": req.valid_from_ms,
                "valid_until_ms": req.valid_until_ms,
            }
            found = policy_store.find_declaration(tx, auth.org, req.case_ref, signed)
            if found is not None:
                return Done(201, {**body, "declaration_id": found, "ledger": []})
            declaration_id = policy_store.insert_declaration(
                tx,
                org=auth.org,
                case_ref=req.case_ref,
                signer_name=req.signer.name,
                signer_role=req.signer.role,
                valid_from_ms=req.valid_from_ms,
                valid_until_ms=req.valid_until_ms,
                text_sha256=req.text_sha256,
                record=signed,
                now_ms=now,
            )
            ref = tx.append_ledger(
                "declaration",
                now,
                {
                    **body,
                    "declaration_id": declaration_id,
                    "hub": self._hub,
                    "signer_role": req.signer.role,
                    "text_sha256": req.text_sha256,
                    "record_sha256": sha256(signed.encode()).hex(),
                },
                (auth.org,),
            )
            return Done(201, {**body, "declaration_id": declaration_id, "ledger": [ref.to_json()]})

        return settle(await self._db.write("declaration", job))

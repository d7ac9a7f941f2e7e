"""The partner-side client library: sign requests, seal and open envelopes, poll.

Everything a partner system needs to talk to its hub without writing crypto:
`HubClient` signs every request (RFC 9421), seals each payload end to end to its
recipient (HPKE, PROTOCOL §4), opens what arrives after checking that the hub did
not relabel it, and runs the inbox loop. The demo, the tests and the benchmark
use it; so can partners who integrate directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from gateway.adapters import attachments as _attachments
from gateway.adapters.pseudonym import BirthDate, blind_people
from gateway.adapters.received import HubError, Peer, Received, Reply
from gateway.clock import Clock, SystemClock
from gateway.crypto.encoding import b64u_decode, sha256
from gateway.crypto.envelope import open_envelope, seal
from gateway.crypto.httpsig import normalise_authority, sign_request
from gateway.crypto.keys import OrgKeys, sign_record
from gateway.errors import EnvelopeError

log = logging.getLogger(__name__)
__all__ = ["HubClient", "HubError", "Peer", "Received", "Reply"]


class HubClient:
    def __init__(
        self,
        base_url: str,
        keys: OrgKeys,
        *,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.authority = normalise_authority(parts.netloc, parts.scheme or "http")
        self.keys = keys
        self._clock = clock or SystemClock()
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._peers: dict[str, Peer] = {}

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # -- signed HTTP -----------------------------------------------------------

    def signed_headers(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        *,
        body_sha256: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, str]:
        """Signature headers; a body streamed from a file is given as its SHA-256."""
        if body or body_sha256 is not None:
            content_type = content_type or "application/json"
        headers = sign_request(
            keys=self.keys,
            method=method,
            authority=self.authority,
            path=path,
            query=query,
            body=body,
            content_type=content_type,
            created=self._clock.now_ms() // 1000,
            body_sha256=body_sha256,
        )
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> dict[str, Any]:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        qs = urlencode(query or {})
        headers = self.signed_headers(method, path, qs, raw)
        url = URL(self.base_url + path + (f"?{qs}" if qs else ""), encoded=True)
        async with self._http().request(method, url, data=raw or None, headers=headers) as resp:
            return await self.read_json(resp)

    @staticmethod
    async def read_json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        """The JSON object of a response; a problem (status >= 400) raises HubError."""
        text = await resp.read()
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {"code": "bad-response", "detail": "the hub did not answer JSON"}
        if resp.status >= 400:
            raise HubError(resp.status, data if isinstance(data, dict) else {})
        if not isinstance(data, dict):
            raise HubError(resp.status, {"code": "bad-response"})
        return data

    # -- directory -------------------------------------------------------------

    async def directory(self, *, refresh: bool = False) -> dict[str, Peer]:
        if refresh or not self._peers:
            data = await self.call("GET", "/api/v1/directory")
            self._peers = {
                o["org"]: Peer(
                    o["org"],
                    o["role"],
                    o.get("domain"),
                    b64u_decode(o["signing_key"]),
                    b64u_decode(o["encryption_key"]),
                    o["status"],
                )
                for o in data["organisations"]
            }
        return self._peers

    async def peer(self, org: str) -> Peer:
        peers = await self.directory()
        if org not in peers:
            peers = await self.directory(refresh=True)
        if org not in peers:
            raise HubError(404, {"code": "not-found", "detail": f"unknown organisation {org}"})
        return peers[org]

    # -- cases -----------------------------------------------------------------

    async def register_case(
        self,
        case_ref: str,
        theme: str,
        subjects: Sequence[tuple[str, str]],
        participants: Sequence[str],
    ) -> dict[str, Any]:
        return await self.call(
            "POST",
            "/api/v1/cases",
            body={
                "case_ref": case_ref,
                "theme": theme,
                "subjects": [{"subject_ref": s, "pid": p} for s, p in subjects],
                "participants": list(participants),
            },
        )

    async def add_participant(self, case_ref: str, org: str) -> dict[str, Any]:
        return await self.call("POST", f"/api/v1/cases/{case_ref}/participants", body={"org": org})

    async def close_case(self, case_ref: str) -> dict[str, Any]:
        return await self.call("POST", f"/api/v1/cases/{case_ref}/close", body={})

    # -- dat -------------------------------------------------------------------

    async def seal_to(
        self,
        org: str,
        *,
        kind: str,
        exchange_id: str,
        case_ref: str,
        subject_ref: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        peer = await self.peer(org)
        return seal(
            sender=self.keys,
            recipient=org,
            recipient_encryption_key=peer.encryption_key,
            kind=kind,
            exchange_id=exchange_id,
            case_ref=case_ref,
            subject_ref=subject_ref,
            body=body,
            created_ms=self._clock.now_ms(),
        )

    async def dat_request(
        self,
        case_ref: str,
        subject_ref: str,
        recipients: Sequence[str],
        body: Mapping[str, Any],
        *,
        exchange_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask each recipient "do you know this person?"; `body` identifies the person and
        is sealed separately to every recipient (the hub sees none of it)."""
        envelopes = await _attachments.seal_each(
            self,
            recipients,
            kind="dat-request",
            exchange_id=exchange_id or str(uuid.uuid4()),
            case_ref=case_ref,
            subject_ref=subject_ref,
            body=body,
        )
        return await self.call(
            "POST",
            "/api/v1/dat-requests",
            body={
                "case_ref": case_ref,
                "subject_ref": subject_ref,
                "envelopes": envelopes,
            },
        )

    async def answer(
        self,
        request: Received,
        decision: str,
        body: Mapping[str, Any] | None = None,
        *,
        reason_code: str | None = None,
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Answer a dat- or wat-request; `attachments` (descriptors from `attach`) go in
        the sealed body, so they need one."""
        reply = Reply(request, decision, body, reason_code, tuple(attachments))
        payload = await self.answer_payload(reply)
        return await self.call(
            "POST", f"/api/v1/exchanges/{request.exchange_id}/answers", body=payload
        )

    async def answer_payload(self, reply: Reply) -> dict[str, Any]:
        """The body of an answer request: decision, reason code, and the reply's body
        sealed to the requester (with the attachments' blob ids)."""
        request, body = reply.request, reply.body
        if request.exchange_id is None:
            raise ValueError("only exchange requests can be answered")
        payload: dict[str, Any] = {"decision": reply.decision}
        if reply.reason_code is not None:
            payload["reason_code"] = reply.reason_code
        if reply.attachments:
            body = _attachments.with_attachments(body or {}, reply.attachments)
            payload["blobs"] = [str(a["blob_id"]) for a in reply.attachments]
        if body is not None:
            kind = "dat-answer" if request.kind == "dat-request" else "wat-answer"
            payload["envelope"] = await self.seal_to(
                request.sender,
                kind=kind,
                exchange_id=request.exchange_id,
                case_ref=request.case_ref,
                subject_ref=request.subject_ref,
                body=body,
            )
        return payload

    async def answer_many(self, replies: Sequence[Reply]) -> list[dict[str, Any]]:
        """Answer up to 100 requests in one signed request (`POST /api/v1/answers`, an
        extension). Returns a result per reply, in order: `{exchange_id, status: 202,
        ledger}` or `{exchange_id, status, problem}`; one refused answer does not
        undo the others."""
        items = [
            {"exchange_id": r.request.exchange_id, **await self.answer_payload(r)} for r in replies
        ]
        data = await self.call("POST", "/api/v1/answers", body={"answers": items})
        return list(data["results"])

    # -- privacy protocol, declarations, wat ---------------------------------------

    async def call_text(self, path: str, query: Mapping[str, str] | None = None) -> bytes:
        qs = urlencode(query or {})
        headers = self.signed_headers("GET", path, qs, b"")
        url = URL(self.base_url + path + (f"?{qs}" if qs else ""), encoded=True)
        async with self._http().get(url, headers=headers) as resp:
            data = await resp.read()
            if resp.status >= 400:
                try:
                    problem = json.loads(data)
                except json.JSONDecodeError:
                    problem = {"code": "bad-response"}
                raise HubError(resp.status, problem if isinstance(problem, dict) else {})
            return data

    async def protocols(self) -> list[dict[str, Any]]:
        data = await self.call("GET", "/api/v1/protocols")
        return list(data["protocols"])

    async def accede(self, protocol_id: str | None = None) -> dict[str, Any]:
        """Sign the accession to a privacy protocol (default: the newest one), after
        checking that the text we fetched is the text whose hash we sign."""
        listed = await self.protocols()
        if not listed:
            raise HubError(404, {"code": "not-found", "detail": "no protocol published"})
        chosen = (
            max(listed, key=lambda p: p["version"])
            if protocol_id is None
            else next((p for p in listed if p["protocol_id"] == protocol_id), None)
        )
        if chosen is None:
            raise HubError(404, {"code": "not-found", "detail": "unknown protocol"})
        text = await self.call_text(f"/api/v1/protocols/{chosen['protocol_id']}/text")
        digest = sha256(text).hex()
        if digest != chosen["text_sha256"]:
            raise EnvelopeError("the protocol text does not match its published hash")
        record = {
            "protocol_id": chosen["protocol_id"],
            "hub": await self.hub_org(),
            "org": self.keys.org,
            "text_sha256": digest,
            "signed_at_ms": self._clock.now_ms(),
        }
        return await self.call(
            "POST",
            f"/api/v1/protocols/{chosen['protocol_id']}/accessions",
            body={**record, "sig": sign_record(self.keys, record)},
        )

    async def hub_org(self) -> str:
        peers = await self.directory()
        hubs = [p.org for p in peers.values() if p.role == "hub"]
        if len(hubs) != 1:
            raise HubError(500, {"code": "bad-response", "detail": "no hub in the directory"})
        return hubs[0]

    async def declaration_text(self, case_ref: str) -> bytes:
        return await self.call_text("/api/v1/declarations/text", {"case_ref": case_ref})

    async def declare(
        self,
        case_ref: str,
        *,
        signer_name: str,
        signer_role: str,
        valid_from_ms: int,
        valid_until_ms: int,
    ) -> dict[str, Any]:
        """Sign the geheimhoudingsverklaring for a case over the exact text the hub serves."""
        text = await self.declaration_text(case_ref)
        record = {
            "hub": await self.hub_org(),
            "case_ref": case_ref,
            "signer": {"name": signer_name, "role": signer_role},
            "valid_from_ms": valid_from_ms,
            "valid_until_ms": valid_until_ms,
            "text_sha256": sha256(text).hex(),
        }
        sig = sign_record(self.keys, {**record, "org": self.keys.org})
        return await self.call("POST", "/api/v1/declarations", body={**record, "sig": sig})

    async def wat_request(
        self,
        case_ref: str,
        subject_ref: str,
        holder: str,
        *,
        categories: Sequence[str],
        purpose: str,
        processing_activity: str,
        legal_basis: Mapping[str, Any],
        body: Mapping[str, Any],
        exchange_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask `holder` what it may share for `purpose`; `body` (sealed) says what exactly."""
        xid = exchange_id or str(uuid.uuid4())
        envelope = await self.seal_to(
            holder,
            kind="wat-request",
            exchange_id=xid,
            case_ref=case_ref,
            subject_ref=subject_ref,
            body=body,
        )
        return await self.call(
            "POST",
            "/api/v1/wat-requests",
            body={
                "case_ref": case_ref,
                "subject_ref": subject_ref,
                "holder": holder,
                "categories": list(categories),
                "purpose": purpose,
                "processing_activity": processing_activity,
                "legal_basis": dict(legal_basis),
                "envelope": envelope,
            },
        )

    async def overdue(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/api/v1/exchanges/overdue"))["overdue"])

    # -- the national check (PROTOCOL §6, §7) ---------------------------------------

    async def pseudonyms(self, people: Sequence[tuple[str, BirthDate]]) -> list[str]:
        """The pids of (BSN, birth date) pairs, computed without sending a BSN anywhere:
        checked and blinded here, evaluated by the pseudonymiser through the hub,
        finalized here. Raises PseudonymInputError (a ValueError) for a BSN that fails
        the 11-test or an impossible date, before anything is sent."""
        today = dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, dt.UTC).date()
        blinded = blind_people(people, today)
        if not blinded:
            return []
        data = await self.call(
            "POST", "/api/v1/pseudonyms/evaluate", body={"blinded": [b.element for b in blinded]}
        )
        evaluated = data.get("evaluated")
        if not isinstance(evaluated, list) or len(evaluated) != len(blinded):
            raise HubError(502, {"code": "bad-response", "detail": "wrong number of elements"})
        return [b.finish(str(e)) for b, e in zip(blinded, evaluated, strict=True)]

    async def pseudonym(self, bsn: str, birth_date: BirthDate) -> str:
        """One person's pid (PROTOCOL §6); see `pseudonyms`."""
        return (await self.pseudonyms([(bsn, birth_date)]))[0]

    async def known_check(
        self, pid: str, purpose: str, case_ref: str | None = None
    ) -> dict[str, Any]:
        """Is this pid in a case at any ZVH? `{check_id, matches, unreachable, ledger}`."""
        body: dict[str, Any] = {"pid": pid, "purpose": purpose}
        if case_ref is not None:
            body["case_ref"] = case_ref
        return await self.call("POST", "/api/v1/known-checks", body=body)

    # -- case messages, referrals, attachments (gateway/adapters/attachments.py) --------

    async def attach(
        self,
        path: Path,
        *,
        media_type: str = "application/octet-stream",
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Encrypt a file (PROTOCOL §4.1) and upload it; returns the descriptor
        `{blob_id, size, key, header, filename, media_type, sha256_plain}` for a sealed body."""
        return await _attachments.attach(self, path, media_type=media_type, filename=filename)

    async def fetch_attachment(self, descriptor: Mapping[str, Any], dest: Path) -> Path:
        """Download and decrypt an attachment into `dest` (nothing there on failure)."""
        return await _attachments.fetch_attachment(self, descriptor, dest)

    async def send_message(
        self,
        case_ref: str,
        recipients: Sequence[str],
        body: Mapping[str, Any],
        *,
        subject_ref: str = "",
        attachments: Sequence[Mapping[str, Any]] = (),
        exchange_id: str | None = None,
    ) -> dict[str, Any]:
        """A secure case message, sealed per recipient; attachments go in the sealed body."""
        return await _attachments.send_message(
            self,
            case_ref,
            recipients,
            body,
            subject_ref=subject_ref,
            attachments=attachments,
            exchange_id=exchange_id,
        )

    async def send_referral(
        self,
        body: Mapping[str, Any],
        *,
        attachments: Sequence[Mapping[str, Any]] = (),
        exchange_id: str | None = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        """A referral (aanmelding), sealed to the region's ZVH organisation."""
        return await _attachments.send_referral(
            self, body, attachments=attachments, exchange_id=exchange_id, to=to
        )

    # -- inbox -----------------------------------------------------------------

    async def fetch(self, *, wait: int = 0, limit: int = 100) -> list[Received]:
        data = await self.call("GET", "/api/v1/inbox", query={"wait": wait, "limit": limit})
        out = []
        for m in data["messages"]:
            # Opening is CPU work (HPKE, two signatures): yield between items, so that a
            # full batch does not hold up the partner's other requests and responses.
            await asyncio.sleep(0)
            try:
                out.append(await self.open(m))
            except (EnvelopeError, KeyError, TypeError, ValueError):
                # One bad item must not block the inbox: hand it over marked, never opened.
                out.append(
                    Received(
                        message_id=int(m.get("message_id", 0)),
                        kind=str(m.get("kind")),
                        exchange_id=m.get("exchange_id"),
                        sender=str(m.get("from")),
                        case_ref=str(m.get("case_ref")),
                        subject_ref=str(m.get("subject_ref")),
                        decision=m.get("decision"),
                        body=None,
                        error="invalid-envelope",
                    )
                )
        return out

    async def open(self, message: Mapping[str, Any]) -> Received:
        """Open a message's envelope after checking the hub's labels against it."""
        envelope = message.get("envelope")
        body = None
        if envelope is not None:
            peer = await self.peer(str(message["from"]))
            labels = {
                "kind": message["kind"],
                "exchange_id": message["exchange_id"],
                "case_ref": message["case_ref"],
                "subject_ref": message["subject_ref"],
                "sender": message["from"],
                "recipient": self.keys.org,
            }
            if any(envelope.get(k) != v for k, v in labels.items()):
                raise EnvelopeError("the inbox labels do not match the envelope")
            body = open_envelope(envelope, recipient=self.keys, sender_signing_key=peer.signing_key)
            if message["kind"] in _attachments.CARRIERS:
                _attachments.check_attachments(body, message.get("blobs"))
        notification = message.get("notification")
        if message["kind"] == "notification" and not isinstance(notification, dict):
            raise EnvelopeError("a notification without its metadata")
        return Received(
            message_id=int(message["message_id"]),
            kind=str(message["kind"]),
            exchange_id=message.get("exchange_id"),
            sender=str(message["from"]),
            case_ref=str(message["case_ref"]),
            subject_ref=str(message["subject_ref"]),
            decision=message.get("decision"),
            body=body,
            reason_code=message.get("reason_code"),
            wat=message.get("wat"),
            notification=notification if isinstance(notification, dict) else None,
        )

    async def ack(self, message_ids: Sequence[int]) -> list[int]:
        if len(message_ids) == 1:
            data = await self.call("POST", f"/api/v1/inbox/{message_ids[0]}/ack", body={})
        else:
            data = await self.call(
                "POST", "/api/v1/inbox/ack", body={"message_ids": list(message_ids)}
            )
        return [int(i) for i in data["acked"]]

    async def run_inbox(
        self,
        handle: Callable[[Received], Awaitable[None]],
        *,
        stop: asyncio.Event,
        wait: int = 20,
    ) -> None:
        """Long-poll until `stop` is set; ack each message after `handle` returned."""
        while not stop.is_set():
            try:
                messages = await self.fetch(wait=wait)
            except (TimeoutError, aiohttp.ClientError, HubError):
                await asyncio.sleep(1.0)
                continue
            done: list[int] = []
            for msg in messages:
                if msg.error is None:
                    await handle(msg)
                else:
                    log.warning(
                        "dropped an inbox item that failed its checks",
                        extra={"kind": msg.kind, "from": msg.sender, "error": msg.error},
                    )
                done.append(msg.message_id)
            if done:
                await self.ack(done)

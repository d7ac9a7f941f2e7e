"""Outbound calls to the hub with idempotency keys: what the local API, the file
drop and the referral form all go through.

Every call carries a key chosen by the caller (the `Idempotency-Key` header, or one
derived from a dropped file). The first time a key is seen, the request is sealed and
signed, and the sealed call is stored *before* it is sent; the hub's answer is
stored with it. The same key with the same request gives the stored answer, also
after a restart; with a different request it is a 409. When the hub could not be
reached, the key stays `started` with its sealed call, and a retry sends those same
bytes, which the hub answers idempotently (PROTOCOL §3.3) - a freshly sealed
envelope would differ and be refused as `exchange-exists`.

Hub refusals (4xx) are final answers and are stored like successes; the hub's
problem is passed on as it came, since it is the partner's own hub speaking about
the partner's own request. A 401 (the hub does not accept this adapter's key) and
429 are not the caller's doing and are not stored.

Must not: log a body, a key or a person's data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel

from gateway.adapters import local_models as m
from gateway.adapters.attachments import region_zvh, seal_each
from gateway.adapters.client import HubClient, HubError
from gateway.adapters.received import Reply
from gateway.clock import Clock
from gateway.crypto.encoding import sha256
from gateway.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
)
from gateway.storage.adapter_store import AdapterStore, Delivery

log = logging.getLogger(__name__)

# What the local API answers on success, per operation (the hub's own 2xx is not kept).
SUCCESS_STATUS = {op[0]: op[4] for op in m.OPERATIONS}
ANSWERS_FOR = {
    "dat-request": ("known", "not-known"),
    "wat-request": ("release", "partial", "refuse"),
}


class HubUnavailable(ServiceUnavailable):
    """The hub did not answer (or failed); the key stays open for a retry."""

    status = 502
    code = "hub-unavailable"
    title = "The hub could not be reached"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool


# A prepared hub call: (method, path, body), sealed and ready to sign.
HubCall = dict[str, Any]
Sender = Callable[[], Awaitable[dict[str, Any]]]


def request_hash(operation: str, request: BaseModel) -> str:
    """SHA-256 over the operation and the validated request (defaults filled in), so
    `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same request."""
    data = {"operation": operation, "request": request.model_dump(mode="json")}
    return sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hex()


class Outbound:
    def __init__(
        self,
        client: HubClient,
        store: AdapterStore,
        clock: Clock,
        *,
        attachment_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        # Attachments are read only from inside this folder: a caller must never make the
        # adapter send one of its own files (its key file, its database) to a partner.
        self.attachment_dir = attachment_dir.resolve() if attachment_dir is not None else None
        self._inflight: set[str] = set()
        # Operations served by a HubClient method that signs inside (the accession, over
        # the protocol text it fetches): no sealed bytes to store, so a retry calls again
        # (the hub treats the same accession as idempotent, a newer one replaces it).
        self._direct: dict[str, Callable[[BaseModel], Awaitable[dict[str, Any]]]] = {
            "accessions": self._accede,
        }

    def supports(self, operation: str) -> bool:
        return operation in self._direct or operation in _BUILDERS

    async def perform(self, operation: str, key: str, request: BaseModel) -> Outcome:
        digest = request_hash(operation, request)
        if key in self._inflight:
            raise Conflict(
                "A request with this Idempotency-Key is in progress.", code="idempotency-key-in-use"
            )
        self._inflight.add(key)
        try:
            return await self._perform(operation, key, request, digest)
        finally:
            self._inflight.discard(key)

    async def _perform(self, operation: str, key: str, request: BaseModel, digest: str) -> Outcome:
        record = await self.store.get_idempotency(key)
        if record is not None and (
            record.request_sha256 != digest or record.operation != operation
        ):
            raise Conflict(
                "This Idempotency-Key was used for a different request.",
                code="idempotency-key-reused",
            )
        if record is not None and record.state == "done":
            assert record.status is not None
            assert record.response is not None
            return Outcome(record.status, record.response, replayed=True)
        call: HubCall | None = record.hub_request if record is not None else None
        if record is None:
            if operation not in self._direct:
                call = await _BUILDERS[operation](self, request)
            await self.store.claim_idempotency(key, operation, digest, call, self.clock.now_ms())
        try:
            if call is not None:
                data = await self.client.call(call["method"], call["path"], body=call["body"])
            else:
                data = await self._direct[operation](request)
        except HubError as exc:
            if exc.status in (401, 429) or exc.status >= 500:
                log.warning("hub refused or failed", extra={"op": operation, "status": exc.status})
                raise HubUnavailable(
                    f"The hub answered {exc.status}; retry with the same key."
                ) from exc
            problem = _problem_from_hub(exc)
            await self.store.finish_idempotency(key, exc.status, problem, self.clock.now_ms())
            return Outcome(exc.status, problem, replayed=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("hub unreachable", extra={"op": operation, "error": type(exc).__name__})
            raise HubUnavailable("The hub did not answer; retry with the same key.") from exc
        status = SUCCESS_STATUS[operation]
        await self.store.finish_idempotency(key, status, data, self.clock.now_ms())
        return Outcome(status, data, replayed=False)

    # -- building sealed calls ---------------------------------------------------

    async def _seal(self, org: str, **fields: Any) -> dict[str, Any]:
        with self._directory_errors():
            return await self.client.seal_to(org, **fields)

    @contextlib.contextmanager
    def _directory_errors(self) -> Iterator[None]:
        """Sealing looks the recipient up in the hub's directory: an unknown one is the
        caller's 400, an unreadable directory a 503."""
        try:
            yield
        except HubError as exc:
            if exc.status == 404:
                raise InvalidRequest(
                    "Unknown recipient.",
                    errors=[
                        {
                            "loc": ["recipients"],
                            "msg": "unknown organisation",
                            "type": "unknown_org",
                        }
                    ],
                ) from exc
            raise HubUnavailable("The hub's directory could not be read.") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubUnavailable("The hub's directory could not be read.") from exc
        except ValueError as exc:  # canonical JSON: no floats, no odd keys
            raise InvalidRequest(
                "The body cannot be sealed.",
                errors=[
                    {
                        "loc": ["body"],
                        "msg": "use strings, integers, booleans, lists and "
                        "objects (no fractional numbers)",
                        "type": "value_error",
                    }
                ],
            ) from exc

    async def _case(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.CaseRequest)
        return {"method": "POST", "path": "/api/v1/cases", "body": request.model_dump(mode="json")}

    async def _dat(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.DatRequest)
        xid = request.exchange_id or str(uuid.uuid4())
        with self._directory_errors():
            envelopes = await seal_each(
                self.client,
                request.recipients,
                kind="dat-request",
                exchange_id=xid,
                case_ref=request.case_ref,
                subject_ref=request.subject_ref,
                body=request.body,
            )
        body = {
            "case_ref": request.case_ref,
            "subject_ref": request.subject_ref,
            "envelopes": envelopes,
        }
        return {"method": "POST", "path": "/api/v1/dat-requests", "body": body}

    async def _wat(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.WatRequest)
        xid = request.exchange_id or str(uuid.uuid4())
        envelope = await self._seal(
            request.holder,
            kind="wat-request",
            exchange_id=xid,
            case_ref=request.case_ref,
            subject_ref=request.subject_ref,
            body=request.body,
        )
        body = request.model_dump(mode="json", exclude={"body", "exchange_id"})
        return {
            "method": "POST",
            "path": "/api/v1/wat-requests",
            "body": {**body, "envelope": envelope},
        }

    async def _answer(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.AnswerRequest)
        received = await self.store.request_for_exchange(request.exchange_id)
        if received is None:
            raise NotFound("No dat- or wat-request with this exchange id reached this adapter.")
        return await self.answer_call(
            received, request.decision, request.reason_code, request.body, loc=()
        )

    async def answer_call(
        self,
        received: Delivery,
        decision: str,
        reason_code: str | None,
        body: dict[str, Any] | None,
        *,
        loc: tuple[str, ...],
    ) -> HubCall:
        """The sealed answer to a received request (local API, file drop, webhook reply)."""
        allowed = ANSWERS_FOR.get(received.kind, ())
        if decision not in allowed:
            raise InvalidRequest(
                "This decision does not answer this kind of request.",
                errors=[
                    {
                        "loc": [*loc, "decision"],
                        "msg": f"must be one of {', '.join(allowed)}",
                        "type": "decision",
                    }
                ],
            )
        assert received.exchange_id is not None
        with self._directory_errors():
            payload = await self.client.answer_payload(Reply(received, decision, body, reason_code))
        return {
            "method": "POST",
            "path": f"/api/v1/exchanges/{received.exchange_id}/answers",
            "body": payload,
        }

    async def _attachments(self, refs: list[m.AttachmentRef]) -> list[dict[str, Any]]:
        """Encrypt and upload each file (PROTOCOL §4.1); the descriptors go in the body."""
        descriptors = []
        for i, ref in enumerate(refs):
            path = self._attachment_path(ref.path, i)
            try:
                descriptors.append(
                    await self.client.attach(path, media_type=ref.media_type, filename=ref.filename)
                )
            except OSError as exc:
                raise InvalidRequest(
                    "An attachment cannot be read.",
                    errors=[
                        {
                            "loc": ["attachments", i, "path"],
                            "msg": "not a readable file",
                            "type": "file",
                        }
                    ],
                ) from exc
            except HubError as exc:
                if exc.status == 413:
                    raise PayloadTooLarge("An attachment is larger than the hub accepts.") from exc
                raise HubUnavailable(f"The attachment upload failed ({exc.status}).") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise HubUnavailable("The attachment upload failed.") from exc
        return descriptors

    def _attachment_path(self, given: str, i: int) -> Path:
        loc = ["attachments", i, "path"]
        if self.attachment_dir is None:
            raise InvalidRequest(
                "This adapter takes no attachments ([local] attachment_dir is not set).",
                errors=[{"loc": loc, "msg": "attachments are off", "type": "config"}],
            )
        path = (self.attachment_dir / given).resolve()
        if not path.is_relative_to(self.attachment_dir) or not path.is_file():
            raise InvalidRequest(
                "An attachment must be a file inside the adapter's attachment folder.",
                errors=[{"loc": loc, "msg": "not a file in the attachment folder", "type": "file"}],
            )
        return path

    async def _message(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.MessageRequest)
        descriptors = await self._attachments(request.attachments)
        body = {**request.body, "attachments": descriptors} if descriptors else request.body
        xid = str(uuid.uuid4())
        with self._directory_errors():
            envelopes = await seal_each(
                self.client,
                request.recipients,
                kind="message",
                exchange_id=xid,
                case_ref=request.case_ref,
                subject_ref=request.subject_ref,
                body=body,
            )
        wire = {
            "case_ref": request.case_ref,
            "subject_ref": request.subject_ref,
            "envelopes": envelopes,
            "blobs": [str(d["blob_id"]) for d in descriptors],
        }
        return {"method": "POST", "path": "/api/v1/messages", "body": wire}

    async def _referral(self, request: BaseModel) -> HubCall:
        assert isinstance(request, m.ReferralRequest)
        try:
            zvh = await region_zvh(self.client)
        except HubError as exc:
            if exc.status == 404:
                raise NotFound("The region has no (single) ZVH organisation to refer to.") from exc
            raise HubUnavailable("The hub's directory could not be read.") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HubUnavailable("The hub's directory could not be read.") from exc
        descriptors = await self._attachments(request.attachments)
        body = {**request.body, "attachments": descriptors} if descriptors else request.body
        envelope = await self._seal(
            zvh,
            kind="referral",
            exchange_id=str(uuid.uuid4()),
            case_ref="",
            subject_ref="",
            body=body,
        )
        wire = {"envelope": envelope, "blobs": [str(d["blob_id"]) for d in descriptors]}
        return {"method": "POST", "path": "/api/v1/referrals", "body": wire}

    async def _accede(self, request: BaseModel) -> dict[str, Any]:
        assert isinstance(request, m.AccessionRequest)
        return await self.client.accede(request.protocol_id)


_BUILDERS: dict[str, Callable[[Outbound, BaseModel], Awaitable[HubCall]]] = {
    "cases": Outbound._case,
    "dat-requests": Outbound._dat,
    "wat-requests": Outbound._wat,
    "answers": Outbound._answer,
    "messages": Outbound._message,
    "referrals": Outbound._referral,
}


def _problem_from_hub(exc: HubError) -> dict[str, Any]:
    """The hub's RFC 9457 problem, reduced to the members the local API documents."""
    problem = exc.problem
    out: dict[str, Any] = {
        "type": str(problem.get("type", f"urn:zvh-gateway:problem:{exc.code}")),
        "title": str(problem.get("title", "Refused by the hub")),
        "status": exc.status,
        "detail": str(problem.get("detail", "")),
        "code": exc.code,
    }
    errors = problem.get("errors")
    if isinstance(errors, list):
        out["errors"] = [
            {
                "loc": list(e.get("loc", [])),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "invalid")),
            }
            for e in errors
            if isinstance(e, dict)
        ]
    if isinstance(problem.get("ledger"), list):
        out["ledger"] = problem["ledger"]
    return out


def is_problem(outcome: Outcome) -> bool:
    return outcome.status >= 400


def problem_of(exc: ProblemError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:zvh-gateway:problem:{exc.code}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
    }
    body.update(exc.extra())
    return body

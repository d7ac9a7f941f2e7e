"""Raw HTTP against a running hub, for tests that must break a request on purpose.

`HubClient` always signs correctly and turns problems into exceptions; these helpers
send exactly the bytes and headers a test asks for (a raw, still percent-encoded
target included) and hand back status, content type and body untouched. The
signature base builder here is written from RFC 9421 independently of
`gateway.crypto.httpsig`, so that hand-built Signature-Input fields (a missing
component, an extra parameter) are signed correctly and fail only for their flaw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from gateway.adapters.attachments import seal_each
from gateway.adapters.client import HubClient
from gateway.crypto.encoding import b64_encode, b64u_encode, sha256
from gateway.crypto.httpsig import content_digest, sign_request
from gateway.crypto.keys import OrgKeys
from gateway.crypto.verifier import Item
from tests.conftest import Network, synthetic_pid

CASE = "C-1"
SUBJECT = "S1"
THEME = "huiselijk-geweld"
PROBLEM_TYPE = "application/problem+json"
JSON_TYPE = "application/json"
# The members RFC 9457 defines plus the protocol's `code` (PROTOCOL §3).
PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code"})


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP response, read whole."""

    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def body(self) -> dict[str, Any]:
        data = self.json()
        assert isinstance(data, dict), self.text
        return data


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code; return its body."""
    assert reply.status == status, reply.text
    assert reply.content_type == PROBLEM_TYPE, reply.content_type
    body = reply.body()
    assert body["code"] == code, body
    assert body["status"] == status
    assert set(body) >= PROBLEM_FIELDS
    assert isinstance(body["detail"], str)
    return body


def assert_ok(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.text
    assert reply.content_type == JSON_TYPE, reply.content_type
    return reply.body()


def assert_ledger_refs(body: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """`ledger` as PROTOCOL §5 puts it in responses: [{index, leaf_hash}, ...]."""
    refs = body["ledger"]
    assert isinstance(refs, list)
    assert len(refs) == count, refs
    for ref in refs:
        assert set(ref) == {"index", "leaf_hash"}, ref
        assert isinstance(ref["index"], int)
        assert ref["index"] >= 0
        assert isinstance(ref["leaf_hash"], str)
        assert len(bytes.fromhex(ref["leaf_hash"])) == 32
        assert ref["leaf_hash"] == ref["leaf_hash"].lower()
    return refs


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def raw_signature(
    keys: OrgKeys,
    components: Sequence[tuple[str, str]],
    params: str,
    *,
    label: str = "sig1",
) -> dict[str, str]:
    """Signature-Input and Signature over exactly `components` (name, value) and the
    serialised signature parameters `params` (everything after the inner list)."""
    inner = "(" + " ".join(f'"{name}"' for name, _ in components) + ")" + params
    lines = [f'"{name}": {value}' for name, value in components]
    lines.append(f'"@signature-params": {inner}')
    base = "\n".join(lines).encode("ascii")
    return {
        "Signature-Input": f"{label}={inner}",
        "Signature": f"{label}=:{b64_encode(keys.sign(base))}:",
    }


def fresh_params(keys: OrgKeys, *, created: int | None = None, extra: str = "") -> str:
    """The protocol's parameters in the protocol's order, plus `extra` verbatim."""
    created = int(time.time()) if created is None else created
    nonce = b64u_encode(os.urandom(16))
    return (
        f';created={created};nonce="{nonce}"'
        f';keyid="{keys.org}/{keys.signing_kid}";alg="ed25519"{extra}'
    )


class Wire:
    """Sends requests to one hub over a session of its own (no pooled connections, so a
    restarted hub on the same port is reached without stale sockets)."""

    def __init__(self, base_url: str, authority: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.authority = authority
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self._session.close()

    async def send(
        self,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    ) -> Reply:
        """`target` is the raw path and query, sent as is (no re-encoding); `headers`
        may repeat a name (a list of pairs), which HTTP joins into one field."""
        url = URL(self.base_url + target, encoded=True)
        async with self._session.request(
            method, url, data=body or None, headers=CIMultiDict(headers)
        ) as resp:
            text = await resp.text()
            return Reply(resp.status, resp.content_type, text)

    def sign(
        self,
        keys: OrgKeys,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        created: int | None = None,
        authority: str | None = None,
        signed_target: str | None = None,
        nonce: bytes | None = None,
    ) -> dict[str, str]:
        """Correct headers for `target` (or for `signed_target`, to sign something other
        than what is sent), Content-Type included when there is a body."""
        path, _, query = (signed_target or target).partition("?")
        content_type = JSON_TYPE if body else None
        headers = sign_request(
            keys=keys,
            method=method,
            authority=authority or self.authority,
            path=path,
            query=query,
            body=body,
            content_type=content_type,
            created=int(time.time()) if created is None else created,
            nonce=nonce,
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def signed(
        self,
        keys: OrgKeys,
        method: str,
        target: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
    ) -> Reply:
        """A correctly signed request; `payload` is sent as compact JSON, `raw` verbatim."""
        body = raw if raw is not None else (b"" if payload is None else encode_json(payload))
        return await self.send(
            method, target, body=body, headers=self.sign(keys, method, target, body)
        )

    def components(self, method: str, target: str, body: bytes = b"") -> list[tuple[str, str]]:
        """The covered components of PROTOCOL §2 with their values, in order."""
        path, _, query = target.partition("?")
        out = [
            ("@method", method),
            ("@authority", self.authority),
            ("@path", path),
            ("@query", "?" + query),
        ]
        if body:
            out += [("content-digest", content_digest(body)), ("content-type", JSON_TYPE)]
        return out


@dataclass(frozen=True, slots=True)
class LedgerLeaf:
    index: int
    entry_type: str
    leaf_data: bytes
    leaf_hash: bytes
    body: dict[str, Any] | None


async def query_one(database: Path, sql: str, *params: Any) -> tuple[Any, ...] | None:
    """One row from the hub's SQLite file, read-only and off the event loop."""

    def read() -> tuple[Any, ...] | None:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        finally:
            conn.close()
        return row

    return await asyncio.to_thread(read)


async def read_leaf(database: Path, index: int) -> LedgerLeaf:
    row = await query_one(
        database, "SELECT idx, type, leaf_data, leaf_hash, body FROM ledger WHERE idx = ?", index
    )
    assert row is not None, f"no ledger entry {index}"
    body = None if row[4] is None else json.loads(bytes(row[4]))
    return LedgerLeaf(int(row[0]), str(row[1]), bytes(row[2]), bytes(row[3]), body)


async def assert_durable(database: Path, ref: Mapping[str, Any]) -> LedgerLeaf:
    """The ref a response named is in the ledger file, and its hash is the RFC 6962 leaf
    hash of the stored leaf data (PROTOCOL §5)."""
    leaf = await read_leaf(database, int(ref["index"]))
    assert leaf.leaf_hash.hex() == ref["leaf_hash"]
    assert sha256(b"\x00" + leaf.leaf_data) == leaf.leaf_hash
    return leaf


async def unacked_count(database: Path, org: str) -> int:
    """Messages in `org`'s inbox not acknowledged yet (leased or not)."""
    sql = "SELECT COUNT(*) FROM inbox WHERE org = ? AND acked_ms IS NULL"
    row = await query_one(database, sql, org)
    assert row is not None
    return int(row[0])


async def ledger_size(database: Path) -> int:
    row = await query_one(database, "SELECT COUNT(*) FROM ledger")
    assert row is not None
    return int(row[0])


def locs(problem: Mapping[str, Any]) -> list[list[str | int]]:
    """The field paths of a 400 problem's `errors`."""
    errors = problem["errors"]
    assert isinstance(errors, list)
    assert errors
    return [list(e["loc"]) for e in errors]


async def open_case(
    net: Network,
    case_ref: str = CASE,
    participants: Sequence[str] = ("politie-test", "vt-test"),
    subjects: Sequence[str] = (SUBJECT,),
) -> dict[str, Any]:
    """Register a case as the region's ZVH organisation (through the client library)."""
    zvh = net.client("zvh-test")
    return await zvh.register_case(
        case_ref, THEME, [(s, synthetic_pid()) for s in subjects], participants
    )


async def dat_body(
    sender: HubClient,
    recipients: Sequence[str],
    *,
    exchange_id: str,
    case_ref: str = CASE,
    subject_ref: str = SUBJECT,
    content: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid dat-request body: one envelope sealed to each recipient."""
    envelopes = await seal_each(
        sender,
        recipients,
        kind="dat-request",
        exchange_id=exchange_id,
        case_ref=case_ref,
        subject_ref=subject_ref,
        body=dict(content or {"question": "known?"}),
    )
    return {"case_ref": case_ref, "subject_ref": subject_ref, "envelopes": envelopes}


def verifier_calls(network: Network, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the number of items of each call to the hub's signature verifier
    (the real one still answers)."""
    verifier = network.hub.verifier
    calls: list[int] = []
    real = verifier.verify

    async def counted(items: Sequence[Item]) -> list[bool]:
        calls.append(len(items))
        return await real(items)

    monkeypatch.setattr(verifier, "verify", counted)
    return calls

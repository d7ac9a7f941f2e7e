"""`zvh-gateway ledger prove`: check a hub's public checkpoint and an inclusion proof
offline, trusting only the hub key the caller pins (never one the hub serves)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from gateway.ledger.checkpoint import parse_checkpoint, verify_checkpoint
from gateway.ledger.merkle import verify_inclusion


@dataclass(frozen=True, slots=True)
class ProofResult:
    ok: bool
    index: int
    size: int
    leaf_hash: str
    root: str
    origin: str
    problem: str | None = None


async def prove(
    url: str,
    index: int,
    hub_key: bytes,
    *,
    expect_leaf_hash: str | None = None,
    timeout_s: float = 10.0,
) -> ProofResult:
    base = url.rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        async with http.get(f"{base}/api/v1/ledger/checkpoint") as resp:
            resp.raise_for_status()
            note = await resp.text()
        try:
            origin = parse_checkpoint(note)[0].origin
            cp = verify_checkpoint(note, origin, hub_key)
        except ValueError as exc:
            return ProofResult(False, index, 0, "", "", "", f"checkpoint: {exc}")
        if index >= cp.size:
            return ProofResult(
                False,
                index,
                cp.size,
                "",
                cp.root.hex(),
                origin,
                "the entry is not yet covered by the latest checkpoint",
            )
        params = {"index": str(index), "size": str(cp.size)}
        async with http.get(f"{base}/api/v1/ledger/proofs/inclusion", params=params) as resp:
            resp.raise_for_status()
            proof = await resp.json()
    leaf = str(proof.get("leaf_hash", ""))
    try:
        ok = verify_inclusion(
            index,
            cp.size,
            bytes.fromhex(leaf),
            [bytes.fromhex(p) for p in proof.get("path", [])],
            cp.root,
        )
    except ValueError:
        ok = False
    problem = None if ok else "the inclusion proof does not verify against the signed root"
    if ok and expect_leaf_hash is not None and expect_leaf_hash.lower() != leaf:
        ok, problem = False, "the hub proved a different leaf at that index"
    return ProofResult(ok, index, cp.size, leaf, cp.root.hex(), origin, problem)

"""The policy layer through the HTTP API, one table (tests/policy/table.py): every 403 and
409 code of PROTOCOL §3 with its ledger entry, each allow path with its entry, the order
of precedence where two codes apply, and the accession and declaration cases."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Network
from tests.policy.support import world
from tests.policy.table import ROWS, Row


def _params() -> list[Any]:
    return [
        pytest.param(
            row,
            id=row.name,
            marks=[pytest.mark.xfail(strict=True, reason=f"BUG: {row.bug}")] if row.bug else [],
        )
        for row in ROWS
    ]


@pytest.mark.parametrize("row", _params())
async def test_policy_table(bare_network: Network, row: Row) -> None:
    async with world(bare_network, row.members) as w:
        reply = await row.act(w)
        body = await w.expect(reply, row.want)
        if row.after is not None:
            await row.after(w, body)


def test_the_table_reaches_every_code() -> None:
    """Every 403 and 409 code of PROTOCOL §3, and every allow entry the brief names."""
    codes = {row.want.code for row in ROWS if row.want.status in (403, 409)}
    assert codes >= {
        "forbidden-role",
        "not-a-member",
        "declaration-required",
        "not-a-participant",
        "dat-required",
        "legal-basis-missing",
        "category-not-allowed",
        "case-exists",
        "exchange-exists",
        "case-closed",
    }
    entries = {row.want.entry for row in ROWS if row.want.status < 400}
    assert entries >= {
        "dat-request",
        "dat-answer",
        "wat-request",
        "wat-answer",
        "accession",
        "declaration",
        "case-registered",
    }

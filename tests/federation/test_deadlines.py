"""Timeouts: when the index or the pseudonymiser is slow or down, the hub answers
within its deadline with what it has and names the service that did not answer."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.adapters.client import HubError
from tests.conftest import BIRTH, BSN
from tests.federation.conftest import run_national
from tests.federation.support import CASE_THEME, black_hole

DEADLINE_S = 1.0


async def test_hung_or_stopped_index_is_named_unreachable_within_the_deadline(
    tmp_path: Path,
) -> None:
    async with run_national(tmp_path, national={"timeout_s": DEADLINE_S}) as nat:
        a, b = nat.regions
        pid = await nat.client(a.zvh).pseudonym(BSN, BIRTH)
        await nat.client(a.zvh).register_case("C-1", CASE_THEME, [("S1", pid)], [a.vt])
        om = nat.client(b.om)
        await nat.stop_index()
        port = urlsplit(nat.urls[nat.index.node.keys.org]).port
        assert port is not None
        async with black_hole(port):  # accepts, never answers
            start = time.monotonic()
            res = await om.known_check(pid, "zsm-advies")
            elapsed = time.monotonic() - start
        assert res["unreachable"] == ["index"]
        assert res["matches"] == []
        assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + 0.5
        # Its own hub still knows its own open case.
        own = await nat.client(a.zvh).known_check(pid, CASE_THEME)
        assert [m["hub"] for m in own["matches"]] == [a.hub]
        # Down (connection refused): answered at once.
        start = time.monotonic()
        res = await om.known_check(pid, "zsm-advies")
        assert res["unreachable"] == ["index"]
        assert time.monotonic() - start < DEADLINE_S
        text = nat.hub(1).metrics.render().decode()
        for reason in ("timeout", "connect"):
            assert (
                'zvh_gateway_federation_call_errors_total{operation="lookup",'
                f'reason="{reason}",service="index"}} 1.0'
            ) in text
        assert 'zvh_gateway_known_checks_total{result="partial"} 2.0' in text


async def test_hung_pseudonymiser_gives_503_within_the_deadline(tmp_path: Path) -> None:
    async with run_national(tmp_path, hubs=1, national={"timeout_s": DEADLINE_S}) as nat:
        zvh = nat.client(nat.regions[0].zvh)
        await nat.servers["pseudonymiser"].stop()
        port = urlsplit(nat.urls[nat.pseudonymiser.node.keys.org]).port
        assert port is not None
        async with black_hole(port):
            start = time.monotonic()
            with pytest.raises(HubError) as err:
                await zvh.pseudonym(BSN, BIRTH)
            elapsed = time.monotonic() - start
        assert (err.value.status, err.value.code) == (503, "service-unavailable")
        assert elapsed < DEADLINE_S + 0.5
        with pytest.raises(HubError) as err:
            await zvh.pseudonym(BSN, BIRTH)
        assert err.value.status == 503

"""Fixtures of the adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the tests' calls to adapters' local APIs."""
    async with aiohttp.ClientSession() as s:
        yield s

"""Golden vectors of the wire protocol: `v1.json` (PROTOCOL §1, §2, §4, §5, §6) and a loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

V1_PATH = Path(__file__).with_name("v1.json")


def load_v1() -> dict[str, Any]:
    """A fresh parse of v1.json per call, so a test that mutates it cannot affect another."""
    data: dict[str, Any] = json.loads(V1_PATH.read_text(encoding="utf-8"))
    return data

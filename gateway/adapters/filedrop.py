"""The file drop, for legacy systems that can write and read files but not speak HTTP.

Folders under the configured `dir`:

- `in/`: requests to send. Only files named `*.json` or `*.csv` whose name does not
  start with `.` are picked up; a writer writes under another name (for example
  `.x.json.tmp` or `x.json.part`) and renames when done, so a half-written file is
  never read.
- `out/`: incoming items (answers, requests, messages), one JSON file each, written
  atomically by the delivery (`delivery.FileDropSink`).
- `done/`: processed files, with `<name>.result.json` holding the hub's answers.
- `failed/`: files that could not be sent, with `<name>.reason.txt` saying why (the
  row and the column; never a value from the file).

A file is all or nothing at validation: one bad row fails the whole file and nothing
of it is sent. Each request of a file is sent with the idempotency key
`filedrop:<file name>:<sha256 of the file>:<n>`, so a file picked up again after a
crash (before it was moved) is not sent twice. When the hub cannot be reached the file
stays in `in/` and is tried again at the next scan.

Must not: log or write to a reason file any value from a dropped file.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.adapters.delivery import write_atomically
from gateway.adapters.local_models import REQUEST_MODELS
from gateway.adapters.outbound import HubUnavailable, Outbound
from gateway.crypto.encoding import sha256
from gateway.errors import ProblemError

log = logging.getLogger(__name__)

# `type` in a dropped request -> the local API operation it is.
TYPES = {
    "case": "cases",
    "dat-request": "dat-requests",
    "wat-request": "wat-requests",
    "answer": "answers",
    "message": "messages",
    "referral": "referrals",
}
LIST_COLUMNS = frozenset({"recipients", "participants", "categories"})
NESTED_PREFIXES = ("body.", "legal_basis.")
MAX_FILE_BYTES = 16 * 1024 * 1024


class DropError(ValueError):
    """A dropped file that cannot be sent; the message names rows and columns only."""


@dataclass(frozen=True, slots=True)
class Parsed:
    operation: str
    request: BaseModel


def _validate(raw: Any, where: str) -> Parsed:
    if not isinstance(raw, dict):
        raise DropError(f"{where}: must be a JSON object")
    kind = raw.get("type")
    if kind not in TYPES:
        raise DropError(f"{where}: type must be one of {', '.join(TYPES)}")
    operation = TYPES[str(kind)]
    fields = {k: v for k, v in raw.items() if k != "type"}
    try:
        return Parsed(operation, REQUEST_MODELS[operation].model_validate(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(request)'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise DropError(f"{where}: {problems}") from None


def parse_json(data: bytes) -> list[Parsed]:
    """One request object, or a list of them."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DropError(f"not valid UTF-8 JSON (line {getattr(exc, 'lineno', '?')})") from None
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise DropError("the file holds no request")
    return [_validate(item, f"request {i + 1}") for i, item in enumerate(items)]


def _set_nested(target: dict[str, Any], column: str, value: str) -> None:
    *parents, leaf = column.split(".")
    for part in parents:
        inner = target.setdefault(part, {})
        if not isinstance(inner, dict):
            raise DropError(f"column {column}: clashes with another column")
        target = inner
    if isinstance(target.get(leaf), dict):
        raise DropError(f"column {column}: clashes with another column")
    target[leaf] = value


def csv_row_to_request(header: list[str], row: list[str]) -> dict[str, Any]:
    """A CSV row -> a request object: `type` as in JSON; `recipients`, `participants`
    and `categories` separated by `;`; `body.<name>` and `legal_basis.<name>` columns
    into those objects (nested with more dots); empty cells are left out."""
    out: dict[str, Any] = {}
    for column, cell in zip(header, row, strict=True):
        value = cell.strip()
        if value == "":
            continue
        if column in LIST_COLUMNS:
            out[column] = [part.strip() for part in value.split(";") if part.strip()]
        elif column.startswith(NESTED_PREFIXES):
            _set_nested(out, column, value)
        else:
            out[column] = value
    return out


def parse_csv(data: bytes) -> list[Parsed]:
    """A header row, then one request per row (see `csv_row_to_request`)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DropError("not valid UTF-8") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise DropError(f"not valid CSV: {exc}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DropError("the file is empty")
    header = [h.strip() for h in rows[0]]
    if "type" not in header:
        raise DropError("line 1: the header has no column 'type'")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DropError(f"line 1: column {duplicates[0]} appears twice")
    if len(rows) == 1:
        raise DropError("the file holds no request (only a header)")
    parsed = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DropError(f"line {number}: {len(row)} cells, the header has {len(header)}")
        try:
            raw = csv_row_to_request(header, row)
        except DropError as exc:
            raise DropError(f"line {number}: {exc}") from None
        parsed.append(_validate(raw, f"line {number}"))
    return parsed


def parse_file(name: str, data: bytes) -> list[Parsed]:
    if len(data) > MAX_FILE_BYTES:
        raise DropError(f"larger than {MAX_FILE_BYTES} bytes")
    return parse_csv(data) if name.lower().endswith(".csv") else parse_json(data)


def ready_files(in_dir: Path) -> list[Path]:
    """Finished files only: `*.json` / `*.csv`, not hidden (the write-then-rename rule)."""
    if not in_dir.is_dir():
        return []
    return sorted(
        p
        for p in in_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".json", ".csv")
    )


def _move(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    n = 1
    while target.exists():
        target = folder / f"{src.stem}.{n}{src.suffix}"
        n += 1
    os.replace(src, target)
    return target


class FileDrop:
    def __init__(self, root: Path, outbound: Outbound, scan_interval_s: float) -> None:
        self.root = root
        self.in_dir = root / "in"
        self.out_dir = root / "out"
        self.done_dir = root / "done"
        self.failed_dir = root / "failed"
        self.outbound = outbound
        self.scan_interval_s = scan_interval_s

    def prepare(self) -> None:
        for folder in (self.in_dir, self.out_dir, self.done_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.scan_once()
            except Exception:  # a scan must never stop the adapter
                log.exception("file drop scan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.scan_interval_s)

    async def scan_once(self) -> int:
        handled = 0
        for path in await asyncio.to_thread(ready_files, self.in_dir):
            if await self.process(path):
                handled += 1
        return handled

    async def process(self, path: Path) -> bool:
        """Send one file; True when it was moved to done/ or failed/."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return False  # renamed away meanwhile, or not readable yet
        digest = sha256(data).hex()
        try:
            parsed = parse_file(path.name, data)
        except DropError as exc:
            await self._fail(path, [f"not sent: {exc}"])
            return True
        results: list[dict[str, Any]] = []
        refused: list[str] = []
        for n, item in enumerate(parsed, start=1):
            if not self.outbound.supports(item.operation):
                refused.append(f"request {n}: {item.operation} are not available in this release")
                results.append({"request": n, "status": 501})
                continue
            key = f"filedrop:{path.name}:{digest}:{n}"
            try:
                outcome = await self.outbound.perform(item.operation, key, item.request)
            except HubUnavailable:
                log.warning("file drop: hub unavailable, will retry the file")
                return False  # stays in in/: the keys make the retry safe
            except ProblemError as exc:
                refused.append(f"request {n}: {exc.code}: {exc.detail}")
                results.append({"request": n, "status": exc.status, "code": exc.code})
                continue
            results.append({"request": n, "status": outcome.status, "response": outcome.body})
            if outcome.status >= 400:
                refused.append(f"request {n}: refused by the hub: {outcome.body.get('code')}")
        report = json.dumps({"file": path.name, "results": results}, indent=2).encode()
        if refused:
            sent = [r["request"] for r in results if int(r["status"]) < 400]
            lines = [*refused]
            if sent:
                lines.append(f"sent: requests {', '.join(str(s) for s in sent)}")
            await self._fail(path, lines, report)
        else:
            moved = await asyncio.to_thread(_move, path, self.done_dir)
            await asyncio.to_thread(
                write_atomically, self.done_dir, f"{moved.name}.result.json", report
            )
        log.info("file drop: file processed", extra={"requests": len(parsed), "ok": not refused})
        return True

    async def _fail(self, path: Path, reasons: Iterable[str], report: bytes | None = None) -> None:
        moved = await asyncio.to_thread(_move, path, self.failed_dir)
        text = "\n".join(reasons) + "\n"
        await asyncio.to_thread(
            write_atomically, self.failed_dir, f"{moved.name}.reason.txt", text.encode()
        )
        if report is not None:
            await asyncio.to_thread(
                write_atomically, self.failed_dir, f"{moved.name}.result.json", report
            )

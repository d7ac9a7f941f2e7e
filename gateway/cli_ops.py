"""The `backup` and `restore` commands of the CLI (docs/operations.md §5)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.services import ops


def add_ops(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bk = sub.add_parser("backup", help="copy the hub's database, online, to one file")
    bk.add_argument("--config", required=True, type=Path)
    bk.add_argument("--out", required=True, type=Path)
    bk.add_argument("--force", action="store_true", help="replace --out if it exists")
    rs = sub.add_parser(
        "restore", help="replace the hub's (stopped) database by a backup whose ledger verifies"
    )
    rs.add_argument("--config", required=True, type=Path)
    rs.add_argument("--from", dest="source", required=True, type=Path)
    rs.add_argument("--force", action="store_true", help="replace an existing database")
    rs.add_argument("--json", action="store_true")


def backup(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    done = ops.backup(settings, args.out, force=args.force)
    info = done.info
    signed = "none" if info.checkpoint_size is None else str(info.checkpoint_size)
    print(
        f"backup of {settings.node.org} written to {info.path} ({info.size_bytes} bytes): "
        f"ledger size {info.ledger_size}, last signed checkpoint size {signed}"
    )
    print(done.blobs.summary())
    return 0 if done.blobs.complete else 3


def restore(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    result = ops.restore(settings, args.source, SystemClock(), force=args.force)
    report = result.verify
    if args.json:
        print(
            json.dumps(
                {
                    "installed": result.installed,
                    "database": str(result.database),
                    "previous": None if result.previous is None else str(result.previous),
                    "ledger_size": result.info.ledger_size,
                    "verify": dataclasses.asdict(report),
                    "blobs": None if result.blobs is None else result.blobs.as_json(),
                },
                indent=2,
            )
        )
    elif result.installed:
        print(
            f"restored {result.source} to {result.database}: ledger OK: {report.entries} "
            f"entries, {report.checkpoints} checkpoints, {report.bodies_checked} bodies "
            f"checked, {report.purged} purged, {report.uncovered} not yet covered by a "
            "checkpoint"
            + (f"; the replaced database is kept as {result.previous}" if result.previous else "")
        )
        print(result.blobs.summary() if result.blobs else "")
    else:
        print(
            f"NOT restored: the ledger in {result.source} is BAD at index "
            f"{report.first_bad_index}: {report.problem}; {result.database} is unchanged"
        )
    blobs_ok = result.blobs is None or result.blobs.complete
    return (0 if blobs_ok else 3) if result.installed else 1

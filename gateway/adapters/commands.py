"""The adapter's commands, hooked into `zvh-gateway` by `gateway.cli`:

    zvh-gateway init-adapter --dir DIR --org ORG --hub-url URL --key-file FILE [...]
    zvh-gateway adapter --config FILE
    zvh-gateway adapter dead-letters list  --config FILE [--json]
    zvh-gateway adapter dead-letters retry --config FILE [MESSAGE_ID]

Argument parsing and printing only; the work is in `runner` and `adapter_store`.
Exit codes as for every command: 0 success, 1 nothing to do / a check failed,
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import stat
from pathlib import Path

from gateway.adapters.adapter_config import (
    ensure_token,
    load_adapter_settings,
    render_adapter_config,
    settings_summary,
)
from gateway.adapters.runner import build_adapter
from gateway.clock import SystemClock
from gateway.errors import ConfigError
from gateway.logs import configure
from gateway.storage.adapter_store import offline_dead_letters, offline_retry_dead


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser("init-adapter", help="write a partner adapter's config and token in DIR")
    i.add_argument("--dir", required=True, type=Path)
    i.add_argument("--org", required=True)
    i.add_argument("--hub-url", required=True)
    i.add_argument("--key-file", required=True, type=Path, help="from `keys generate`")
    i.add_argument("--port", type=int, default=8481, help="the local API's port")
    i.add_argument("--webhook-url", help="the partner system's URL for inbox items")
    i.add_argument("--filedrop-dir", help="folder for in/ out/ done/ failed/")
    i.add_argument("--form", action="store_true", help="serve the referral form")
    i.add_argument("--max-attempts", type=int, default=8)
    i.add_argument("--backoff-base-s", type=float, default=1.0)
    i.add_argument("--backoff-max-s", type=float, default=300.0)
    a = sub.add_parser("adapter", help="run a partner's adapter, or manage its dead letters")
    a.add_argument("--config", type=Path)
    dl = (
        a.add_subparsers(dest="adapter_cmd")
        .add_parser("dead-letters", help="inbox items the partner system did not take")
        .add_subparsers(dest="dl_cmd", required=True)
    )
    ls = dl.add_parser("list", help="list the dead letters (metadata only)")
    ls.add_argument("--config", dest="dl_config", required=True, type=Path)
    ls.add_argument("--json", action="store_true")
    rt = dl.add_parser("retry", help="deliver dead letters again (all, or one)")
    rt.add_argument("--config", dest="dl_config", required=True, type=Path)
    rt.add_argument("message_id", nargs="?", type=int)


def cmd_init_adapter(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    config = folder / "adapter.toml"
    if config.exists():
        raise ConfigError(f"{config} exists already")
    key_file = args.key_file.resolve()
    if not key_file.exists():
        raise ConfigError(f"--key-file {key_file} does not exist (make it with `keys generate`)")
    if stat.S_IMODE(key_file.stat().st_mode) & 0o077:
        raise ConfigError(f"--key-file {key_file} can be read by group or others: chmod 600 it")
    if args.webhook_url is None and args.filedrop_dir is None:
        raise ConfigError("give --webhook-url or --filedrop-dir: incoming items need a place")
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(
        render_adapter_config(
            org=args.org,
            hub_url=args.hub_url,
            key_file=str(key_file),
            port=args.port,
            webhook_url=args.webhook_url,
            filedrop_dir=args.filedrop_dir,
            form=args.form,
            max_attempts=args.max_attempts,
            backoff_base_s=args.backoff_base_s,
            backoff_max_s=args.backoff_max_s,
        ),
        encoding="utf-8",
    )
    settings = load_adapter_settings(config)  # what we wrote must load
    ensure_token(settings.local.token_file)
    print(
        f"adapter {args.org} initialised:\n  config {config}\n  token  "
        f"{settings.local.token_file} (mode 0600)\nstart it with: zvh-gateway adapter "
        f"--config {config}"
    )
    return 0


def cmd_adapter(args: argparse.Namespace) -> int:
    if args.adapter_cmd == "dead-letters":
        return _dead_letters(args)
    if args.config is None:
        raise ConfigError("adapter: --config FILE is required")
    settings = load_adapter_settings(args.config)
    configure(settings.adapter.log_level)

    async def run() -> None:
        adapter = build_adapter(settings)
        await adapter.start()
        print(json.dumps({"event": "adapter ready", **settings_summary(settings)}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await adapter.stop()

    asyncio.run(run())
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    settings = load_adapter_settings(args.dl_config)
    if args.dl_cmd == "list":
        items = offline_dead_letters(settings.database)
        if args.json:
            print(json.dumps([d.summary() for d in items], indent=2))
        else:
            print(f"{'message_id':>10} {'kind':14} {'attempts':>8}  last_error")
            for d in items:
                print(f"{d.message_id:>10} {d.kind:14} {d.attempts:>8}  {d.last_error or ''}")
        return 0
    retried = offline_retry_dead(settings.database, args.message_id, SystemClock().now_ms())
    if not retried:
        print("no such dead letter" if args.message_id is not None else "no dead letters")
        return 1
    print(f"queued again: {', '.join(str(i) for i in retried)}")
    return 0

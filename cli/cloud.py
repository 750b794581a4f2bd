"""``soulid login | train | remote | jobs``: credentials, remote Soul ID
training and the job ledger."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from ..backends.credentials import PROVIDERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("login", help="store a provider API key in the user's credentials file (mode 0600)")
    p.add_argument("provider", choices=PROVIDERS)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("train", help="train a Soul ID on a provider from its perfect and good photos, "
                                     "or a persona LoRA on this machine (--provider local)")
    p.add_argument("name", help="Soul ID name in the library")
    p.add_argument("--provider", default="higgsfield", choices=("higgsfield", "local"))
    p.add_argument("--model-version", default="v1", choices=("v1", "v2", "cinema"))
    p.add_argument("--remote-name", default=None, help="name on the provider (default: the Soul ID's)")
    p.add_argument("--new", action="store_true", help="train again even if this exact training is in the ledger")
    p.add_argument("--max-usd", type=float, default=None,
                   help="refuse if the provider's estimate is above this (default: $SOULID_MAX_USD when set)")
    p.add_argument("--json", action="store_true")
    from .local_training import add_local_train_arguments

    add_local_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("remote", help="list or delete Soul IDs trained on a provider")
    p.add_argument("action", choices=("list", "delete"))
    p.add_argument("id", nargs="?", help="remote Soul ID to delete")
    p.add_argument("--provider", default="higgsfield", choices=("higgsfield",))
    p.add_argument("--soul", default=None, help="also drop the id from this library Soul ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_remote)

    p = sub.add_parser("jobs", help="the cloud job ledger: list, resume or cancel jobs")
    p.add_argument("action", nargs="?", default="list", choices=("list", "resume", "cancel"))
    p.add_argument("id", nargs="?", help="request id or idempotency key (prefix of 8+ characters)")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)


def _library(args):
    from ..soul.library import Library

    return Library(getattr(args, "library", None))


#: Words that end a job's progress: the line is finished there on a terminal.
_FINAL = ("succeeded", "failed", "canceled", "cancelled", "done", "saved")


def progress_printer(quiet: bool = False):
    """A progress callback printing changed messages to stderr: on a terminal
    one line that overwrites itself (finished at 100 % or a final word),
    otherwise one line per change (logs, pipes)."""
    last = [""]
    tty = sys.stderr.isatty()

    def cb(frac, msg):
        if msg == last[0] or quiet:
            return
        last[0] = msg
        if not tty:
            print(f"  {msg}", file=sys.stderr, flush=True)
            return
        pct = f"{100 * frac:3.0f}% " if frac is not None else ""
        final = (frac is not None and frac >= 1.0) or any(w in msg for w in _FINAL)
        sys.stderr.write(f"\r\x1b[K  {pct}{msg}" + ("\n" if final else ""))
        sys.stderr.flush()

    return cb


def interrupt_flag():
    """``(interrupt callable, restore)``: Ctrl-C sets a flag the job engine sees
    (so a queued job is canceled at the provider) instead of killing the process."""
    import signal
    import threading

    ev = threading.Event()
    try:
        old = signal.signal(signal.SIGINT, lambda *_: ev.set())
    except ValueError:  # not the main thread
        return ev.is_set, lambda: None
    return ev.is_set, lambda: signal.signal(signal.SIGINT, old)


def cmd_login(args) -> int:
    from ..backends.credentials import mask, save_key

    prompt = "KEY_ID:KEY_SECRET" if args.provider == "higgsfield" else "API key"
    if sys.stdin.isatty():
        key = getpass.getpass(f"{args.provider} {prompt}: ")
    else:
        key = sys.stdin.readline()
    try:
        path = save_key(args.provider, key)
    except ValueError as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 2
    print(f"saved {args.provider} key {mask(key.strip())} to {path} (mode 0600)")
    return 0


def cmd_train(args) -> int:
    if args.provider == "local":
        from .local_training import cmd_train_local

        return cmd_train_local(args)
    from ..backends.training import train_remote

    from .generation import budget

    lib = _library(args)
    soul = lib.load(args.name)
    cap = budget(args)
    n = len(soul.photos_rated(("perfect", "good")))
    print(f"{args.provider}: training {soul.name!r} ({args.model_version}) uploads {n} photo(s) rated perfect or good"
          + (f"; budget ${cap:.2f}" if cap is not None else "; no budget set (--max-usd or $SOULID_MAX_USD)"),
          file=sys.stderr)
    options = {"new": args.new} if cap is None else {"new": args.new, "max_usd": cap}
    stop, restore = interrupt_flag()
    try:
        rid = train_remote(soul, args.provider, args.model_version, name=args.remote_name,
                           progress=progress_printer(args.json), interrupt=stop, options=options)
    finally:
        restore()
    lib.save(soul, overwrite=True)
    if args.json:
        print(json.dumps({"soul": soul.name, "provider": rid.provider, "id": rid.id,
                          "model_version": rid.model_version, "photos": rid.extra.get("photos")}))
    else:
        print(f"{soul.name}: trained on {rid.provider} as {rid.id} (model_version {rid.model_version}, "
              f"{rid.extra.get('photos')} photos)")
    return 0


def cmd_remote(args) -> int:
    from ..backends.training import delete_remote, list_remote

    if args.action == "list":
        items = list_remote(args.provider)
        if args.json:
            print(json.dumps(items))
        else:
            for it in items:
                print(f"{it.get('id')}  {it.get('status', ''):<12} {it.get('model_version', ''):<7} {it.get('name', '')}")
            if not items:
                print(f"(no Soul IDs on {args.provider})")
        return 0
    if not args.id:
        print("soulid: remote delete needs the remote id", file=sys.stderr)
        return 2
    soul = _library(args).load(args.soul) if args.soul else None
    deleted = delete_remote(args.id, args.provider, soul=soul)
    if soul is not None:
        _library(args).save(soul, overwrite=True)
    print(json.dumps({"id": args.id, "deleted": deleted}) if args.json else
          (f"deleted {args.id}" if deleted else f"{args.id} was already gone"))
    return 0


def _backend_for(provider: str):
    from ..backends.base import get_backend

    return get_backend(provider)


def cmd_jobs(args) -> int:
    from ..backends.engine import CloudError
    from ..backends.ledger import Ledger

    led = Ledger()
    if args.action == "list":
        rows = led.list(args.limit)
        if args.json:
            print(json.dumps([{"request_id": r.request_id, "key": r.idem_key, "provider": r.provider,
                               "endpoint": r.endpoint, "state": r.state, "cost": r.cost, "files": r.files,
                               "error": r.error, "updated": r.updated} for r in rows]))
            return 0
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated))
            print(f"{when}  {r.provider:<10} {r.state:<10} {(r.request_id or '-'):<36}  {r.endpoint}"
                  + (f"  ({r.error})" if r.error else ""))
        if not rows:
            print(f"(no jobs in {led.path})")
        return 0
    if not args.id:
        print(f"soulid: jobs {args.action} needs a request id", file=sys.stderr)
        return 2
    row = led.get(args.id)
    if row is None:
        print(f"soulid: no job {args.id!r} in {led.path}", file=sys.stderr)
        return 2
    be = _backend_for(row.provider)
    eng = be.engine(be.api_for(row.endpoint))
    if args.action == "cancel":
        row = eng.cancel(args.id)
        print(json.dumps({"request_id": row.request_id, "state": row.state}) if args.json
              else f"{row.request_id}: {row.state}")
        return 0
    from ..backends.engine import Interrupted

    stop, restore = interrupt_flag()
    try:
        out = eng.resume(args.id, progress_printer(args.json), stop)
    except Interrupted as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 130
    except CloudError as e:
        print(f"soulid: {e}", file=sys.stderr)
        return 1
    finally:
        restore()
    files = [str(f) for f in out.files]
    print(json.dumps({"request_id": out.request_id, "state": out.state, "files": files}) if args.json
          else f"{out.request_id}: {out.state}\n" + "\n".join(files))
    return 0

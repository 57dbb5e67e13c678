"""Command line of the fetch stage: ``python -m wildmerge.hub {update,fetch,fetch-data}``.

``update`` moves the lock forward (README: hub checkpoints); ``fetch`` and ``fetch-data`` run one
checkpoint's or one benchmark dataset's fetch, as the fetch jobs do."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wildmerge.hub.datasets import check_locked, fetch_dataset
from wildmerge.hub.models import fetch, update_lock
from wildmerge.hub.retry import HubError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wildmerge.hub", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help=update_lock.__doc__.splitlines()[0])
    fe = sub.add_parser("fetch", help=fetch.__doc__)
    fe.add_argument("repo_id")
    fe.add_argument("--revision")
    fe.add_argument("--out", type=Path, required=True)
    fe.add_argument("--key", default="checkpoint", help="the config key named in errors")
    da = sub.add_parser("fetch-data", help=fetch_dataset.__doc__.splitlines()[0])
    da.add_argument("benchmark")
    da.add_argument("dataset")
    da.add_argument("--name")
    da.add_argument("--revision")
    da.add_argument("--file", help="only this file of the dataset repository (a task's hf://datasets/ data_files)")
    da.add_argument("--out", type=Path)
    da.add_argument("--check", action="store_true", help="only check the locked commit is cached (offline)")
    for p in (up, fe, da):
        p.add_argument("--lock", type=Path, default=Path("results/hub.lock"), help="the study's lock file")
    up.add_argument("--hub-root", type=Path, default=Path("resources/hub"), help="fetched checkpoint folders")
    up.add_argument("--data-root", type=Path, default=Path("resources/data"), help="fetched benchmark records")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "fetch":
            fetch(args.repo_id, args.revision, args.out, args.lock, args.key)
            return 0
        if args.command == "fetch-data":
            if args.check:
                check_locked(args.benchmark, args.dataset, args.name, args.revision, args.lock, args.file)
            elif args.out is None:
                ap.error("fetch-data: --out is required (or --check)")
            else:
                fetch_dataset(args.benchmark, args.dataset, args.name, args.revision, args.out, args.lock, file=args.file)
            return 0
        changed = update_lock(args.lock, args.hub_root, args.data_root)
    except HubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(changed)} lock entr(y/ies) moved forward" + "".join(f"\n  {e.key} -> {e.commit}" for e in changed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

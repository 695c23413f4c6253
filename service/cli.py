"""The ``adain`` command: the model's commands (``stylize``, ``video``, ``export``: model/cli.py)
and the service's ``keys``, which manages the tenants' keys file (service/tenants.py)::

    adain keys add NAME [--admin] [--file keys.toml]   # prints a new key once; stores its SHA-256
    adain keys list [--file keys.toml]                 # tenants, roles, digest prefixes

``--file`` defaults to ``ADAIN_KEYS_FILE``. And ``models``, the decoder versions (service/decoders.py)::

    adain models import PATH --name NAME               # a decoder (.safetensors, reference .pth) as a version
    adain models list                                  # versions, the default and the canary
    adain models default NAME [--canary PCT --candidate NAME]

``--dir`` defaults to ``ADAIN_MODELS_DIR`` (else the service's STATE_DIR/models)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from model import cli as model_cli
from service.tenants import KeysFileError, TenantLimits, add_key, read_keys_file


def keys_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adain keys", description="API keys of the service's tenants")
    default = os.environ.get("ADAIN_KEYS_FILE")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="make a key for tenant NAME (a new tenant, or its second key while rotating)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="a new tenant with the admin role (sees every tenant's data)")
    listing = sub.add_parser("list", help="the tenants in the file")
    for s in (add, listing):
        s.add_argument("--file", type=Path, default=default, required=default is None,
                       help="the keys file (default ADAIN_KEYS_FILE)")
    return p


def keys(argv: list[str]) -> int:
    args = keys_parser().parse_args(argv)
    try:
        if args.action == "add":
            key = add_key(args.file, args.name, args.admin)
            print(f"tenant {args.name}: its key, shown only this once (the file keeps its SHA-256):", file=sys.stderr)
            print(key)
            return 0
        for digest, caller, where in read_keys_file(args.file, TenantLimits()):
            print(f"{caller.tenant}\t{caller.role}\t{digest[:12]}...\t{where}")
        return 0
    except KeysFileError as e:
        sys.exit(f"error: {e}")


def models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adain models", description="the decoder versions of the model store")
    sub = p.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="store a decoder (.safetensors, reference decoder.pth, a checkpoint) as NAME")
    imp.add_argument("path", type=Path)
    imp.add_argument("--name", required=True)
    listing = sub.add_parser("list", help="the versions, the default and the canary")
    default = sub.add_parser("default", help="make NAME the default (replicas follow without a restart)")
    default.add_argument("name")
    default.add_argument("--candidate", help="a version a share of requests try first")
    default.add_argument("--canary", type=float, default=0.0, help="that share, in percent")
    for s in (imp, listing, default):
        s.add_argument("--dir", type=Path, default=None, help="the store (default ADAIN_MODELS_DIR)")
    return p


def models(argv: list[str]) -> int:
    from service.decoders import BadVersion, ModelStore, Rollout
    from service.settings import Settings

    args = models_parser().parse_args(argv)
    store = ModelStore.of(Settings(), args.dir)
    try:
        if args.action == "import":
            print(store.import_decoder(args.path, args.name))
        elif args.action == "default":
            store.set_rollout(Rollout(args.name, args.candidate, args.canary if args.candidate else 0.0))
        else:
            r = store.rollout()
            for name in store.names():
                mark = " (default)" if name == r.default else f" (canary {r.percent:g} %)" if name == r.candidate else ""
                print(f"{name}{mark}\t{store.card(name).get('sha256', '')[:12]}")
        return 0
    except BadVersion as e:
        sys.exit(f"error: {e}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys(argv[1:])
    if argv[:1] == ["models"]:
        return models(argv[1:])
    return model_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m service``: run the API (and the web page) with uvicorn.

Every setting is a flag here and an ADAIN_* environment variable (the flag wins): ``--queue-depth
4`` is ``ADAIN_QUEUE_DEPTH=4``. ``--help`` lists them all, from the one Settings class."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from service.app import create_app
from service.context import LOG_FORMAT, install_log_fields
from service.protocol import guarded_protocol
from service.settings import Settings
from service.tenants import KeysFileError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        # values stay strings: Settings parses and checks them exactly as it does the environment's
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=f"ADAIN_{name.upper()}",
                       help=f"{field.description or ''} (default {default!r})".replace("%", "%%"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = Settings(**{k: v for k, v in vars(args).items() if v is not None})
    install_log_fields()
    # one format for our lines and uvicorn's (log_config=None below: its loggers reach this handler),
    # each with the request id and tenant of the request that caused it
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    try:
        app = create_app(settings)
    except KeysFileError as e:
        sys.exit(f"adain-service: not starting: {e}")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, log_config=None,
                http=guarded_protocol(settings.header_timeout), limit_concurrency=settings.max_connections,
                timeout_graceful_shutdown=int(settings.request_timeout) + 5, server_header=False)


if __name__ == "__main__":
    main()

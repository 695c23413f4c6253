"""``python -m service``: run the API (and the web page) with uvicorn.

Every flag has an ADAIN_* environment variable (flag wins); see README for the full list."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from service.app import create_app
from service.protocol import guarded_protocol
from service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    p.add_argument("--host", help="bind address (default 127.0.0.1; 0.0.0.0 in containers)")
    p.add_argument("--port", type=int)
    p.add_argument("--decoder", help="decoder .safetensors or reference decoder.pth")
    p.add_argument("--vgg", help="reference vgg_normalised.pth instead of the bundled VGG-19")
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--workers", type=int, help="model worker threads")
    p.add_argument("--queue-depth", type=int, help="waiting requests before 503")
    p.add_argument("--presets-dir", help="folder of preset style images")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "log_level"}
    settings = Settings(**overrides)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                http=guarded_protocol(settings.header_timeout), limit_concurrency=settings.max_connections,
                timeout_graceful_shutdown=int(settings.request_timeout) + 5, server_header=False)


if __name__ == "__main__":
    main()

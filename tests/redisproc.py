"""A real redis-server (Debian's package) on a free port, for the tests that need Redis: started
with AOF on in a test folder, so a restart keeps what was written."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from waiting import HANG

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, folder: Path, args: tuple[str, ...] = ()) -> None:
        self.folder, self.port, self.args = folder, free_port(), args
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + HANG
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(HANG)
        self.proc = None


def have_redis() -> bool:
    return Path(REDIS).exists()


@contextmanager
def run_redis(folder: Path, *args: str) -> Iterator[RedisServer]:
    """A redis-server of our own on a free port; ``args`` are more of its options."""
    if not have_redis():
        why = "redis-server is not installed (apt-get install redis-server; .ci/run does)"
        pytest.fail(why) if os.environ.get("ADAIN_REQUIRE_BROWSER") else pytest.skip(why)
    server = RedisServer(folder, args)
    server.start()
    try:
        yield server
    finally:
        server.stop()

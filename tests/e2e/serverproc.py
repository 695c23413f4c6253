"""Start a real `python -m service` process on 127.0.0.1 and a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from waiting import HANG

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log
        self.port = int(url.rsplit(":", 1)[1])

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": HANG, **kw})

    def rss_mb(self) -> tuple[float, float]:
        return rss_mb(self.proc.pid)

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples whose line starts with ``name`` (labels included)."""
        text = httpx.get(f"{self.url}/metrics", timeout=HANG).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@contextmanager
def run_server(tmp_path: Path, log_level: str = "warning", **env: str) -> Iterator[Server]:
    """Start the service with ADAIN_* settings from ``env`` (its state in ``tmp_path`` unless
    ADAIN_STATE_DIR says otherwise); wait until /readyz says ready."""
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"server-{port}.log"
    full_env = {**os.environ, "ADAIN_PORT": str(port), "ADAIN_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
                "ADAIN_STATE_DIR": str(tmp_path / "state"), **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--log-level", log_level], cwd=REPO,
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + HANG
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"server not ready after {HANG:g} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield Server(proc, url, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(HANG)
            except subprocess.TimeoutExpired:
                proc.kill()

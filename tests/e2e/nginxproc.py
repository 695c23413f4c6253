"""Render frontend/nginx.conf for test ports and run a real nginx in front of the service."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from serverproc import REPO, free_port
from waiting import HANG

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(tmp: Path, port: int, upstream: str, root: Path = REPO / "frontend" / "public") -> Path:
    """The compose template filled in (as the nginx image's envsubst does), inside a minimal main
    config that keeps every file nginx writes under ``tmp``."""
    site = (REPO / "frontend" / "nginx.conf").read_text()
    for name, value in {"NGINX_PORT": f"127.0.0.1:{port}", "NGINX_ROOT": str(root),
                        "ADAIN_API_UPSTREAM": upstream}.items():
        site = site.replace("${" + name + "}", value)
    (tmp / "site.conf").write_text(site)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(exist_ok=True)
    main = tmp / "nginx.conf"
    main.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""")
    return main


def check_config(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True)


@contextmanager
def run_nginx(tmp: Path, upstream: str) -> Iterator[str]:
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = render(tmp, port, upstream)
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + HANG
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"nginx did not start: {proc.stdout.read().decode()}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)

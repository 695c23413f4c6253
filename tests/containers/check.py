"""Build the Dockerfile's images with podman and run them as docker-compose.yml does (`make container-test`).

    python tests/containers/check.py [--keep] [--fresh-base]

No registry can be reached from these machines, so the images the Dockerfile and the compose file
start FROM are made here: a Debian bookworm root file system (debootstrap), then stand-ins for
python:3.11-slim-bookworm, nginx:stable and redis:7.4 (tests/containers/*.Containerfile), passed in
through the same build arguments and compose variables a user would set. The serve, train and web
targets are built unchanged; torch is the CPU wheel on this machine's disk, mounted into the build
with a pip.conf naming it (nothing of either stays in the image). Then, step by step:

  serve    run as compose runs it (non-root, read-only root, tmpfs /tmp, capabilities dropped, the
           state volume): HEALTHCHECK passes, /readyz, a /stylize PNG of the right size, a style
           registered into the volume, the page; no training code and no tests in the image
  train    a few steps on generated images with /data and /runs mounted, killed, resumed; the
           checkpoint read back on the host
  compose  `podman-compose up` with the stand-in images: page, readiness and a stylization through
           nginx on the published port; `--scale api=2` behind the same nginx, a style registered
           once used through both replicas (Redis)

Sizes and times are printed; the exit status says whether every step passed. The images are built by
tests/containers/images.py (standard library only: CI starts it before the project is installed);
they stay in podman's store, so a later run reuses their layers. --keep leaves the compose stack up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import torch
from images import (
    NGINX,
    PROJECT,
    PYTHON,
    REDIS,
    REPO,
    SERVE,
    TARGETS,
    TRAIN,
    UID,
    WEB,
    WORK,
    build_base,
    build_target,
    check,
    podman,
    prepare,
    sh,
)
from PIL import Image

results: list[tuple[str, bool, str]] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def step(name: str, fn: Callable[[], str]) -> bool:
    log(f"--- {name}")
    t0 = time.monotonic()
    try:
        detail = fn()
        ok = True
    except Exception as e:  # a failed step is reported and the next ones still run
        detail, ok = f"{type(e).__name__}: {e}", False
    detail = f"{detail} ({time.monotonic() - t0:.0f} s)"
    results.append((name, ok, detail))
    log(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
             ) -> float:
    """Seconds until url answers as wanted."""
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < seconds:
        try:
            r = httpx.get(url, timeout=5)
            if ok(r):
                return time.monotonic() - t0
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {seconds:.0f} s: {last}")


def png(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def stylize(base: str, key: str | None = None, **fields: str) -> tuple[int, int]:
    """A 160x120 content, content_size 0 (kept): the PNG that comes back must be 160x120."""
    files = {"content": ("c.png", png(160, 120, 1), "image/png")}
    if "style_id" not in fields:
        files["style"] = ("s.png", png(96, 96, 2), "image/png")
    r = httpx.post(f"{base}/stylize", files=files, data={"content_size": "0", **fields}, timeout=120,
                   headers={"X-API-Key": key} if key else None)
    check(r.status_code == 200, f"/stylize: {r.status_code} {r.text[:300]}")
    check(r.headers["content-type"] == "image/png", f"/stylize content-type {r.headers['content-type']}")
    image = Image.open(io.BytesIO(r.content))
    image.load()
    check(image.size == (160, 120), f"/stylize returned {image.size}, wanted (160, 120)")
    return image.size


def register(base: str, key: str | None = None) -> str:
    r = httpx.post(f"{base}/styles", files={"style": ("s.png", png(80, 80, 3), "image/png")},
                   data={"name": "container check"}, timeout=60, headers={"X-API-Key": key} if key else None)
    check(r.status_code == 201, f"POST /styles: {r.status_code} {r.text[:300]}")
    return r.json()["id"]


# ---------------------------------------------------------------------------------------- images

def image_holds(image: str) -> tuple[list[str], list[str]]:
    """/app's entries and the adain-service distribution's files outside model/ and service/."""
    probe = ("import importlib.metadata as m, json, pathlib; "
             "files = [str(f) for f in m.files('adain-service') if f.parts[0] not in ('model', 'service')]; "
             "print(json.dumps([sorted(p.name for p in pathlib.Path('/app').iterdir()), files]))")
    out = podman("run", "--rm", "--entrypoint", "python", image, "-c", probe, quiet=True).stdout
    return tuple(json.loads(out.splitlines()[-1]))


def serve() -> str:
    """The serve image as compose's api service runs it, and the web image (Kubernetes') in front of it."""
    port, web_port = free_port(), free_port()
    cleanup = [("rm", "-f", "ct-web"), ("rm", "-f", "ct-serve"), ("volume", "rm", "-f", "ct-serve-state"),
               ("network", "rm", "-f", "ct-net")]
    for args in cleanup:
        podman(*args, quiet=True, check=False)
    podman("network", "create", "ct-net", quiet=True)
    t0 = time.monotonic()
    # the api service's settings in docker-compose.yml, flag for flag
    podman("run", "-d", "--name", "ct-serve", "--network", "ct-net", "--read-only", "--tmpfs", "/tmp",
           "--user", UID, "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "256",
           "--memory", "6g", "-v", "ct-serve-state:/var/lib/adain", "-e", "TMPDIR=/var/lib/adain",
           "-p", f"127.0.0.1:{port}:8000", SERVE, quiet=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/readyz", 180)
        ready = time.monotonic() - t0  # from `podman run`
        health = podman("healthcheck", "run", "ct-serve", quiet=True, check=False)
        check(health.returncode == 0, f"HEALTHCHECK failed: {health.stdout} {health.stderr}")
        readiness = httpx.get(f"{base}/readyz").json()
        check(readiness["ready"] and readiness["store_ok"], f"/readyz {readiness}")
        stylize(base)
        register(base)  # into SQLite on the volume: the non-root user can write it
        page = httpx.get(f"{base}/")
        check(page.status_code == 200 and "<html" in page.text, f"page: {page.status_code}")
        app, extra = image_holds(SERVE)
        check(app == ["README.md", "frontend", "model", "pyproject.toml", "service", "weights"], f"/app holds {app}")
        check(not [f for f in extra if f.startswith(("training", "tests"))], f"installed beyond the service: {extra}")

        # as deploy/k8s/base/web.yaml runs it: an unprivileged user, read-only, its three writable folders
        # (emptyDirs: world-writable folders; podman's --tmpfs would take the image folder's mode)
        empty_dirs = []
        for name, target in [("conf", "/etc/nginx/conf.d"), ("cache", "/var/cache/nginx"), ("run", "/var/run")]:
            folder = Path(tempfile.mkdtemp(prefix=f"web-{name}-", dir=WORK))
            folder.chmod(0o1777)
            empty_dirs += ["-v", f"{folder}:{target}"]
        podman("run", "-d", "--name", "ct-web", "--network", "ct-net", "--user", "10101:10101", "--read-only",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *empty_dirs,
               "-e", "ADAIN_API_UPSTREAM=ct-serve:8000", "-p", f"127.0.0.1:{web_port}:8080", WEB, quiet=True)
        web = f"http://127.0.0.1:{web_port}"
        wait_for(f"{web}/readyz", 60)
        check("<html" in httpx.get(f"{web}/").text, "the web image does not serve the page")
        stylize(web)
        return (f"ready {ready:.1f} s after `podman run`, healthcheck ok, {readiness['store']} store on the volume; "
                f"the web image serves the page and proxies /stylize")
    finally:
        (WORK / "serve.log").write_text(podman("logs", "ct-serve", quiet=True, check=False).stdout)
        for args in cleanup:
            podman(*args, quiet=True, check=False)
        for folder in WORK.glob("web-*"):
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------- train

def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def train() -> str:
    folder = Path(tempfile.mkdtemp(prefix="train-", dir=WORK))
    data, runs = folder / "data", folder / "runs"
    rng = np.random.default_rng(0)
    for kind in ("content", "style"):
        (data / kind).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(data / kind / f"{i}.jpg")
    runs.mkdir()
    os.chown(runs, int(UID), -1)  # the image's user writes /runs (README: chown or --user)
    ckpt = runs / "smoke" / "checkpoint.pt"
    args = ["training.train", "--content-dir", "/data/content", "--style-dir", "/data/style", "--out", "/runs/smoke",
            "--image-size", "64", "--crop-size", "64", "--batch-size", "2", "--save-every", "2", "--eval-every", "0",
            "--no-tensorboard"]
    mounts = ["-v", f"{data}:/data:ro", "-v", f"{runs}:/runs"]
    podman("rm", "-f", "ct-train", quiet=True, check=False)
    podman("run", "-d", "--name", "ct-train", "--shm-size", "1g", *mounts, TRAIN, *args, "--max-iter", "100000",
           quiet=True)
    try:
        t0 = time.monotonic()
        while not ckpt.exists() or checkpoint_step(ckpt) < 6:
            check(time.monotonic() - t0 < 180, "no checkpoint on the host after 180 s")
            check(podman("container", "exists", "ct-train", check=False).returncode == 0, "trainer exited")
            time.sleep(1)
        podman("kill", "ct-train", quiet=True)  # SIGKILL: no chance to save, the last atomic checkpoint stays
    finally:
        (WORK / "train.log").write_text(podman("logs", "ct-train", quiet=True, check=False).stdout)
        podman("rm", "-f", "ct-train", quiet=True, check=False)
    killed_at = checkpoint_step(ckpt)
    out = podman("run", "--rm", "--shm-size", "1g", *mounts, TRAIN, *args, "--max-iter", str(killed_at + 4),
                 "--resume", "/runs/smoke/checkpoint.pt", quiet=True)
    check(f"resumed from /runs/smoke/checkpoint.pt at step {killed_at}" in out.stdout + out.stderr,
          f"no resume line: {out.stdout[-500:]} {out.stderr[-500:]}")
    final = checkpoint_step(ckpt)
    check(final == killed_at + 4, f"checkpoint at step {final} after resuming from {killed_at} for 4 steps")
    shutil.rmtree(folder, ignore_errors=True)
    return f"killed at step {killed_at}, resumed to {final}; checkpoint read on the host"


# --------------------------------------------------------------------------------------- compose

def compose_env(port: int) -> dict[str, str]:
    """The variables a user sets to run the compose file on local images (the Redis password as
    `make keys` puts it in .env)."""
    return {**os.environ, "PYTHON_IMAGE": PYTHON, "NGINX_IMAGE": NGINX, "REDIS_IMAGE": REDIS,
            "ADAIN_WEB_PORT": str(port), "COMPOSE_PROJECT_NAME": PROJECT,
            "ADAIN_REDIS_PASSWORD": secrets.token_urlsafe(24)}


KEYS_FILE = REPO / "secrets" / "keys.toml"


def compose_key() -> tuple[str, str | None]:
    """A tenant in secrets/keys.toml as `make keys` makes it (digests only, readable by the
    container's user): its key, and the file as it was before (None: there was none), to put back."""
    from service.tenants import add_key

    before = KEYS_FILE.read_text() if KEYS_FILE.exists() else None
    KEYS_FILE.parent.mkdir(exist_ok=True)
    key = add_key(KEYS_FILE, f"container-check-{secrets.token_hex(4)}", admin=True)
    KEYS_FILE.chmod(0o644)
    return key, before


def restore_keys(before: str | None) -> None:
    """The user's keys file as it was: the check's tenant does not outlive the check."""
    if before is None:
        KEYS_FILE.unlink(missing_ok=True)
    else:
        KEYS_FILE.write_text(before)


def compose(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess:
    exe = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    return sh(exe, "-f", REPO / "docker-compose.yml", *args, env=env, cwd=REPO, quiet=True, **kw)


def api_containers() -> list[str]:
    out = podman("ps", "--filter", f"label=com.docker.compose.project={PROJECT}",
                 "--filter", "label=com.docker.compose.service=api", "--format", "{{.Names}}", quiet=True)
    return sorted(out.stdout.split())


def served_stylize(container: str) -> int:
    logs = podman("logs", container, quiet=True, check=False)
    return (logs.stdout + logs.stderr).count('"POST /stylize HTTP/1.1" 200')


def compose_stack(keep: bool) -> str:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env, (key, keys_before) = compose_env(port), compose_key()
    compose(env, "down", "-v", check=False)
    try:
        t0 = time.monotonic()
        compose(env, "up", "-d")
        # podman 4.3 cannot wait for `service_healthy`: podman-compose starts all three at once, so
        # readiness is polled through nginx (the api retries Redis by itself)
        wait_for(f"{base}/readyz", 240, lambda r: r.status_code == 200 and r.json().get("store_ok"))
        ready = time.monotonic() - t0
        page = httpx.get(f"{base}/")
        check(page.status_code == 200 and "<html" in page.text, f"page through nginx: {page.status_code}")
        check("nosniff" in page.headers.get("x-content-type-options", ""), "nginx's headers missing")
        check(httpx.get(f"{base}/readyz").json()["store"] == "redis", "the api is not on Redis")
        anonymous = httpx.post(f"{base}/styles", files={"style": ("s.png", png(8, 8, 4), "image/png")}, timeout=60)
        check(anonymous.status_code == 401, f"compose answers a caller without a key: {anonymous.status_code}")
        stylize(base, key)
        style_id = register(base, key)

        compose(env, "up", "-d", "--scale", "api=2")
        names = api_containers()
        check(len(names) == 2, f"api containers after --scale api=2: {names}")
        compose(env, "restart", "web")  # nginx resolves `api` when it starts (as the compose file says)
        wait_for(f"{base}/readyz", 240)
        for name in names:  # each replica ready before counting where requests land
            health = podman("healthcheck", "run", name, quiet=True, check=False)
            t1 = time.monotonic()
            while health.returncode and time.monotonic() - t1 < 180:
                time.sleep(1)
                health = podman("healthcheck", "run", name, quiet=True, check=False)
            check(health.returncode == 0, f"{name} never healthy")
        before = {n: served_stylize(n) for n in names}
        for _ in range(6):
            stylize(base, key, style_id=style_id)  # registered once, before the second replica existed
        served = {n: served_stylize(n) - before[n] for n in names}
        check(all(v > 0 for v in served.values()), f"stylizations per replica {served}: one replica got none")
        return (f"stack ready {ready:.0f} s after `up`; scaled to {len(names)} api replicas, "
                f"6 stylizations with a shared style through nginx: {sorted(served.values())} per replica")
    finally:
        logs = compose(env, "logs", check=False)
        (WORK / "compose.log").write_text(logs.stdout + logs.stderr)
        if not keep:
            compose(env, "down", "-v", check=False)
            remove_project()
            restore_keys(keys_before)


def project_containers() -> list[str]:
    """Every container of the compose project, running or not (``--scale``'s too)."""
    out = podman("ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}",
                 quiet=True, check=False)
    return sorted(out.stdout.split())


def remove_project() -> None:
    """podman-compose's `down` leaves the containers `--scale` added (and a container still
    stopping may refuse removal for a moment): removed here by label, a few tries."""
    for _ in range(5):
        names = project_containers()
        if not names:
            return
        done = podman("rm", "-f", "-t", "5", *names, quiet=True, check=False)
        if done.returncode:
            log(f"podman rm {' '.join(names)}: {done.stderr.strip()[-300:]}")
        time.sleep(1)


def nothing_left() -> str:
    """The check's own containers are all gone (it ran `down` and removed what that left)."""
    ours = podman("ps", "-a", "--format", "{{.Names}}", quiet=True, check=False).stdout.split()
    left = [n for n in ours if n.startswith(("ct-", PROJECT))] + project_containers()
    check(not left, f"containers left running after the check: {sorted(set(left))}")
    return "no container of the check is left"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the compose stack running")
    parser.add_argument("--fresh-base", action="store_true", help="debootstrap the base again")
    args = parser.parse_args()
    if not shutil.which("podman"):
        print("podman is not installed (apt-get install podman runc debootstrap)", file=sys.stderr)
        return 2
    prepare()
    t0 = time.monotonic()
    if step("base images", lambda: build_base(args.fresh_base)):  # a no-op where images.py has run
        serve_ok, train_ok, _ = [step(f"build {target}", lambda t=target, tag=tag: build_target(t, tag))
                                 for target, tag in TARGETS]
        if serve_ok:
            step("serve", serve)
        if train_ok:
            step("train", train)
        if serve_ok:
            step("compose", lambda: compose_stack(args.keep))
    if not args.keep:
        step("clean up", nothing_left)

    print(f"\ncontainer check, {time.monotonic() - t0:.0f} s in all:")
    for name, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(json.dumps({name: ok for name, ok, _ in results}))
    return 0 if results and all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

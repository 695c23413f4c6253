"""The container check's images (`make container-test` runs this first; CI runs it alone, early, at low
priority, while the tests run): a debootstrap bookworm base, stand-ins for python:3.11-slim-bookworm,
nginx:stable and redis:7.4 (tests/containers/*.Containerfile), then the Dockerfile's serve, train and
web targets built unchanged but for those images and torch's CPU wheel from this machine's disk.
Standard library only, so it can run before the project is installed.

    python3 tests/containers/images.py [--fresh-base]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = REPO / "build" / "containers"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WHEELS = Path("/opt/wheels")             # torch's CPU wheel lies here on these machines
TORCH_CPU = "torch==2.13.0+cpu"
BASE, PYTHON, NGINX, REDIS = ("localhost/adain-bookworm", "localhost/adain-python",
                              "localhost/adain-nginx", "localhost/adain-redis")
SERVE, TRAIN, WEB = "localhost/adain-service:latest", "localhost/adain-train:latest", "localhost/adain-web:latest"
PROJECT = "adain-ct"
UID = "10001"                            # the images' `adain` user
# crun, podman's default ulimits and systemd cgroups are refused on these VMs (ENVIRONMENT.md)
CONTAINERS_CONF = """[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
# pip inside the build: the host's CA bundle, the local wheel folder, torch pinned to its CPU build
PIP_CONF = """[global]
cert = /run/adain-host/ca.crt
find-links = /run/adain-host/wheels
constraint = /run/adain-host/constraints.txt
"""

def sh(*cmd: str | Path, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a command; its output goes to the log unless quiet (then it is returned)."""
    args = [str(c) for c in cmd]
    out = subprocess.run(args, check=False, text=True, capture_output=quiet, **kw)
    if check and out.returncode:
        detail = f"\n{out.stdout}\n{out.stderr}" if quiet else ""
        raise RuntimeError(f"{' '.join(args)} exited {out.returncode}{detail}")
    return out


def podman(*args: str | Path, **kw) -> subprocess.CompletedProcess:
    return sh("podman", *args, **kw)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image, quiet=True).stdout) / 1e6


def debian_mirror() -> str:
    """The mirror apt uses on this host (debootstrap needs one), else Debian's own."""
    for source in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if source.exists():
            m = re.search(r"(?:URIs:|deb)\s+(https?://\S+/debian)\b", source.read_text())
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"


def build_base(fresh: bool) -> str:
    if fresh or not exists(BASE):
        rootfs = WORK / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        sh("debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror(), quiet=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", BASE, stdin=tar.stdout, quiet=True)
        check(tar.wait() == 0, "tar of the root file system failed")
        shutil.rmtree(rootfs)
    for name, image in [("python", PYTHON), ("nginx", NGINX), ("redis", REDIS)]:
        podman("build", "-q", "--format", "docker", "-t", image, "-f", HERE / f"{name}.Containerfile", HERE,
               quiet=True)
    return f"{BASE} {size_mb(BASE):.0f} MB, {PYTHON} {size_mb(PYTHON):.0f} MB"


def build_target(target: str, tag: str) -> str:
    """docker build --target TARGET with only the image arguments changed, torch from the local wheel."""
    mounts = ["-v", f"{WORK / 'pip.conf'}:/etc/pip.conf:ro",
              "-v", f"{WORK / 'constraints.txt'}:/run/adain-host/constraints.txt:ro",
              "-v", f"{CA_BUNDLE}:/run/adain-host/ca.crt:ro",
              "-v", f"{WHEELS}:/run/adain-host/wheels:ro"]
    t0 = time.monotonic()
    out = podman("build", "--format", "docker", "--target", target, "-t", tag,  # docker format keeps HEALTHCHECK
                 "--build-arg", f"PYTHON_IMAGE={PYTHON}", "--build-arg", f"NGINX_IMAGE={NGINX}",
                 "--build-arg", "TORCH_INDEX=https://pypi.org/simple", *mounts, REPO, quiet=True, check=False)
    (WORK / f"build-{target}.log").write_text(out.stdout + out.stderr)
    check(out.returncode == 0, f"build failed, see {WORK / f'build-{target}.log'}:\n{out.stderr[-2000:]}")
    return f"{tag} {size_mb(tag):.0f} MB, built in {time.monotonic() - t0:.0f} s"


# ----------------------------------------------------------------------------------------- serve

def prepare() -> None:
    """podman's settings for these machines and the build's pip.conf, in build/containers/."""
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "containers.conf").write_text(CONTAINERS_CONF)
    (WORK / "pip.conf").write_text(PIP_CONF)
    (WORK / "constraints.txt").write_text(TORCH_CPU + "\n")
    os.environ["CONTAINERS_CONF"] = str(WORK / "containers.conf")


TARGETS = [("serve", SERVE), ("train", TRAIN), ("web", WEB)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh-base", action="store_true", help="debootstrap the base again")
    args = parser.parse_args()
    prepare()
    for name, fn in [("base images", lambda: build_base(args.fresh_base))] + [
            (f"build {target}", lambda t=target, tag=tag: build_target(t, tag)) for target, tag in TARGETS]:
        t0 = time.monotonic()
        print(f"{name}: {fn()} ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

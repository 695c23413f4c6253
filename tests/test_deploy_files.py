"""Static checks of what the container files reference (no Docker engine here to build them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from service.app import create_app
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
# variables read by nginx's template, compose itself, or model/paths.py rather than Settings
NON_SERVICE_VARS = {"ADAIN_API_UPSTREAM", "ADAIN_WEB_PORT", "ADAIN_WEIGHTS_DIR"}


def dockerfile_targets() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE, re.M | re.I))


def test_compose_services_build_targets_that_exist():
    services = COMPOSE["services"]
    assert set(services) == {"api", "web", "redis", "trainer"}
    assert services["trainer"]["profiles"] == ["train"]
    for name in ("api", "trainer"):
        build = services[name]["build"]
        assert (REPO / build["context"]).is_dir()
        assert build["target"] in dockerfile_targets()
    assert dockerfile_targets() >= {"base", "serve", "train"}
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["web"]  # the only published port
    assert services["web"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_env_vars_are_real_settings():
    fields = {f"ADAIN_{name.upper()}" for name in Settings.model_fields}
    for service in COMPOSE["services"].values():
        for var in service.get("environment", {}) or {}:
            if var.startswith("ADAIN_") and var not in NON_SERVICE_VARS:
                assert var in fields, f"{var} is not a setting"
    for var in re.findall(r"\b(ADAIN_[A-Z_]+)=", DOCKERFILE):
        assert var in fields | NON_SERVICE_VARS, f"Dockerfile sets unknown {var}"


def test_compose_volume_sources_exist():
    ignored = (REPO / ".gitignore").read_text().split()
    named = set(COMPOSE.get("volumes") or {})
    for service in COMPOSE["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named, f"{source} is not a declared volume"
                continue
            path = (REPO / source).resolve()
            # data/, runs/ and secrets/ are the user's (the corpus tool, training, make keys), never committed
            assert path.exists() or f"{Path(source).name}/" in ignored or f"{Path(source).parts[0]}/" in ignored, source


def test_healthchecks_hit_real_endpoints():
    paths = set(create_app(Settings(frontend_dir=REPO / "nope")).openapi()["paths"])
    checks = [" ".join(s["healthcheck"]["test"]) for s in COMPOSE["services"].values() if "healthcheck" in s]
    checks += re.findall(r"HEALTHCHECK[^\n]*\n[^\n]*", DOCKERFILE)
    assert len(checks) >= 3
    urls = [m.group(1) for c in checks if (m := re.search(r"http://127\.0\.0\.1(?::\d+)?(/[a-z]+)", c))]
    assert len(urls) >= 3 and "redis-cli ping" in " ".join(checks)
    for endpoint in urls:
        assert endpoint in paths, endpoint


def test_dockerfile_copy_sources_exist():
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE, re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), source
    assert "USER adain" in DOCKERFILE and "HEALTHCHECK" in DOCKERFILE


@pytest.mark.skipif(not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_nginx_accepts_the_rendered_config(tmp_path):
    import sys

    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from nginxproc import check_config, render

    r = check_config(render(tmp_path, 8089, "127.0.0.1:8000"))
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


def test_compose_is_safe_as_shipped():
    """Keys and a Redis password are required (make keys writes them); Redis has protected mode."""
    api, redis = COMPOSE["services"]["api"], COMPOSE["services"]["redis"]
    assert api["environment"]["ADAIN_KEYS_FILE"] == "/etc/adain/keys.toml"
    assert "./secrets/keys.toml:/etc/adain/keys.toml:ro" in api["volumes"]
    assert api["environment"]["ADAIN_REDIS_URL"].startswith("redis://:${ADAIN_REDIS_PASSWORD:?")
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith("${ADAIN_REDIS_PASSWORD:?")
    assert command[command.index("--protected-mode") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"

# Two commands for a newcomer: `make run` (service + web page) and `make test`.
PYTHON ?= python3
, := ,
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CHECKOV := $(VENV)/checkov/bin/checkov
# jemalloc told to keep freed memory: 2-4x faster torch on these VMs (see ../shared/ENVIRONMENT.md).
JEMALLOC := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2))
RUN_ENV := $(if $(JEMALLOC),LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1$(,)muzzy_decay_ms:-1$(,)retain:true)

.PHONY: install run test docs screenshots publish container-test keys calibrate corpus train bench quality load audit clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the build that installs from this machine's disk
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,onnx]'
	touch $(STAMP)

# checkov (tests/test_kubernetes.py) in a venv of its own: its pins clash with scikit-image's
$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q 'checkov>=3.2'


run: $(STAMP)
	$(RUN_ENV) $(PY) -m service

test: $(STAMP) $(CHECKOV)
	$(RUN_ENV) $(PY) -m pytest -q --durations=15

# docs/settings.md from the one Settings class (tests/test_docs.py fails when it is out of date)
docs: $(STAMP)
	$(PY) scripts/settings_doc.py

# docs/page/: the page's states (empty, result, history, video and live running) on a desktop and a phone
screenshots: $(STAMP)
	mkdir -p docs/page
	ADAIN_SCREENSHOTS_DIR=$(CURDIR)/docs/page $(RUN_ENV) $(PY) -m pytest -q tests/e2e/test_page_state.py -k "running or rest or live_progress"

# docker compose's secrets: a tenant (NAME, default admin; its key printed once) in secrets/keys.toml,
# readable by the container's user (it holds only SHA-256 digests), and a Redis password in .env
keys: $(STAMP)
	mkdir -p secrets
	$(VENV)/bin/adain keys add $(or $(NAME),admin) $(if $(NAME),,--admin) --file secrets/keys.toml
	chmod 644 secrets/keys.toml
	grep -qs '^ADAIN_REDIS_PASSWORD=' .env || \
	  echo "ADAIN_REDIS_PASSWORD=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(32))')" >> .env

# the Dockerfile's images built with podman and run as docker-compose.yml runs them (root, ~6 min;
# needs podman, runc and debootstrap from Debian; see tests/containers/images.py and check.py)
container-test: $(STAMP)
	$(PY) tests/containers/check.py $(ARGS)

calibrate: $(STAMP)
	$(PY) -m training.calibrate

corpus: $(STAMP)
	$(PY) -m training.corpus --out data/

# the shipped decoder's recipe, phase by phase into runs/v7 (run again to resume);
# make train ARGS="-- --device cuda" passes flags to every phase
train: $(STAMP)
	$(RUN_ENV) $(PY) -m training.recipe training/recipes/v7.toml --data data --out runs/v7 $(ARGS)

# a finished run's decoder into the model store with the gate's held-out numbers (docs/models.md):
# make publish RUN=runs/v7/p3 NAME=v8; the default changes only with `adain models default NAME`
publish: $(STAMP)
	$(PY) -m training.publish $(RUN) --name $(NAME) --val-content-dir data/val/content --val-style-dir data/val/style

bench: $(STAMP)
	$(RUN_ENV) $(PY) bench/perf.py
	$(PY) bench/train_speed.py

# held-out quality of AdaIN, EFDM and the other inference-time options, a contact sheet, time per image
quality: $(STAMP)
	$(RUN_ENV) $(PY) bench/quality.py --sheet docs/matching/contact_sheet.jpg --time 512 $(ARGS)

# overload: 60 s of 32 clients flooding a real server; exits 1 if anything but 200/429/503 comes back
load: $(STAMP)
	$(RUN_ENV) $(PY) bench/load.py $(ARGS)

# known vulnerabilities in the installed packages (needs internet access to PyPI / OSV)
audit: $(STAMP)
	$(PY) -m pip install -q pip-audit
	$(PY) -m pip_audit

clean:
	rm -rf $(VENV) .pytest_cache

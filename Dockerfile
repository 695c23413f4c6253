# syntax=docker/dockerfile:1
# Multi-stage image for adain-service.
#   docker build --target serve -t adain-service .     # the API + web page (CPU; see README for CUDA)
#   docker build --target train -t adain-train .       # the training job (adds training/)
#   docker build --target web -t adain-web .           # nginx with the page and its config (Kubernetes)
# CUDA: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 on a host with the
# NVIDIA container toolkit, and run with --gpus all (docker-compose.yml reserves a GPU when asked).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NGINX_IMAGE=nginx:stable

FROM ${PYTHON_IMAGE} AS base
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
# torch alone from TORCH_INDEX (the CPU build by default: ~0.7 GB instead of CUDA's ~5 GB); the rest
# from PyPI. torchvision is not needed to serve or train.
RUN pip install --index-url ${TORCH_INDEX} --extra-index-url https://pypi.org/simple torch \
    && pip install . && rm -rf build *.egg-info

FROM base AS serve
COPY weights ./weights
COPY frontend/public ./frontend/public
# The state folder (registered styles in SQLite, video jobs) belongs to the service's user, so a
# named volume mounted there starts out writable (Docker and podman copy the owner into it).
RUN useradd --system --uid 10001 --no-create-home adain \
    && mkdir -p /var/lib/adain && chown adain /var/lib/adain
USER adain
VOLUME ["/var/lib/adain"]
ENV ADAIN_HOST=0.0.0.0 ADAIN_PORT=8000 ADAIN_WEIGHTS_DIR=/app/weights ADAIN_STATE_DIR=/var/lib/adain \
    ADAIN_DECODER=/app/weights/decoder.safetensors ADAIN_PRESETS_DIR=/app/weights/presets \
    ADAIN_FRONTEND_DIR=/app/frontend/public
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"
CMD ["python", "-m", "service"]

# The serving image never holds training code; this one adds it.
FROM base AS train
RUN pip install tensorboard
COPY weights ./weights
COPY training ./training
RUN useradd --system --uid 10001 --create-home adain && mkdir -p /data /runs && chown adain /data /runs
USER adain
ENV ADAIN_WEIGHTS_DIR=/app/weights
VOLUME ["/data", "/runs"]
# jemalloc is preloaded by the base image's LD_PRELOAD; the trainer's own re-exec is then a no-op.
# By default the shipped decoder's recipe on /data into /runs (run it again to resume after a stop);
# `docker run adain-train training.train --content-dir ...` runs the trainer alone.
ENTRYPOINT ["python", "-m"]
CMD ["training.recipe", "training/recipes/v7.toml", "--data", "/data", "--out", "/runs/v7"]

# nginx with the page and frontend/nginx.conf (a template the image's entrypoint fills from
# NGINX_PORT, NGINX_ROOT and ADAIN_API_UPSTREAM): what docker-compose mounts, baked in for
# Kubernetes (deploy/k8s/base/web.yaml).
FROM ${NGINX_IMAGE} AS web
COPY frontend/nginx.conf /etc/nginx/templates/default.conf.template
COPY frontend/public /usr/share/nginx/html
ENV NGINX_PORT=8080 NGINX_ROOT=/usr/share/nginx/html ADAIN_API_UPSTREAM=adain-api:8000
EXPOSE 8080

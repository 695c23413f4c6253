"""What the app holds for its lifetime: settings, the one Stylizer, style registry, queue, metrics."""

from __future__ import annotations

import logging
import time

import torch

from model.stylizer import Stylizer
from service.batching import Batcher
from service.metrics import Metrics
from service.queue import ModelQueue
from service.registry import StyleRegistry
from service.settings import Settings

log = logging.getLogger("adain.service")


class AppState:
    def __init__(self, settings: Settings, stylizer: Stylizer | None = None) -> None:
        self.settings = settings
        self.stylizer = stylizer
        self.registry = StyleRegistry(settings.style_cache_size)
        self.queue = ModelQueue(settings.workers, settings.queue_depth, settings.request_timeout)
        self.metrics = Metrics(self.live_values)
        self.batcher: Batcher | None = None
        self.ready = False
        self.load_seconds = 0.0

    def load(self) -> None:
        """Load weights once (unless injected), warm up, encode presets; then ready."""
        s = self.settings
        start = time.perf_counter()
        if s.torch_threads:
            torch.set_num_threads(s.torch_threads)
        if self.stylizer is None:
            self.stylizer = Stylizer.load(s.decoder, vgg_path=s.vgg, device=s.device, precision=s.precision)
        if s.warmup:
            self.stylizer.warmup()
        if s.batch_max > 1:
            self.batcher = Batcher(self.stylizer.render, s.batch_max, s.batch_wait_ms / 1000,
                                   on_batch=self.metrics.batch_size.observe)
        n = self.registry.load_presets(
            s.presets_dir, lambda img: self.stylizer.encode_style(img, s.default_style_size), s.default_style_size)
        self.load_seconds = time.perf_counter() - start
        self.ready = True
        log.info("ready in %.2f s on %s/%s with %d presets (decoder %s)", self.load_seconds,
                 self.stylizer.device, self.stylizer.precision, n, s.decoder)

    def close(self) -> None:
        self.ready = False
        self.queue.shutdown()
        if self.batcher is not None:
            self.batcher.close()

    def live_values(self) -> dict[str, float]:
        return {
            "queue_depth": self.queue.waiting, "in_flight": self.queue.in_flight,
            "cache_hits": self.registry.hits, "cache_misses": self.registry.misses,
            "cache_entries": len(self.registry), "load_seconds": self.load_seconds, "ready": float(self.ready),
        }

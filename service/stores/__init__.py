"""Durable stores of the service's data: registered styles and video jobs, shared by every
replica. ``open_style_store`` and ``open_job_store`` pick Redis when ``ADAIN_REDIS_URL`` is set,
else SQLite in ``ADAIN_STATE_DIR``."""

from __future__ import annotations

from service.settings import Settings
from service.stores.base import StoreDown, StoreFull, StyleEntry, StyleStore, Timing
from service.stores.jobs import JobStore, VideoJob
from service.stores.sqlite import SQLiteJobs, SQLiteStyles


def open_style_store(settings: Settings, timing: Timing | None = None) -> StyleStore:
    if settings.redis_url:
        from service.stores.redis import RedisStyles  # redis-py is only needed when configured

        return RedisStyles(settings.redis_url, settings.max_registered_styles, timing)
    return SQLiteStyles(settings.state_dir / "styles.sqlite3", settings.max_registered_styles, timing)


def open_job_store(settings: Settings) -> JobStore:
    """Video jobs: their state in Redis or SQLite, their files in ``settings.videos_dir`` either way."""
    folder = settings.videos_dir
    if settings.redis_url:
        from service.stores.redis import RedisJobs

        return RedisJobs(settings.redis_url, folder, settings.video_ttl)
    return SQLiteJobs(settings.state_dir / "videos.sqlite3", folder, settings.video_ttl)


__all__ = ["JobStore", "StoreDown", "StoreFull", "StyleEntry", "StyleStore", "VideoJob", "open_job_store",
           "open_style_store"]

"""Durable stores of the service's data: registered styles (and, later, jobs), shared by every
replica. ``open_style_store`` picks Redis when ``ADAIN_REDIS_URL`` is set, else SQLite in
``ADAIN_STATE_DIR``."""

from __future__ import annotations

from service.settings import Settings
from service.stores.base import StoreDown, StoreFull, StyleEntry, StyleStore, Timing
from service.stores.sqlite import SQLiteStyles


def open_style_store(settings: Settings, timing: Timing | None = None) -> StyleStore:
    if settings.redis_url:
        from service.stores.redis import RedisStyles  # redis-py is only needed when configured

        return RedisStyles(settings.redis_url, settings.max_registered_styles, timing)
    return SQLiteStyles(settings.state_dir / "styles.sqlite3", settings.max_registered_styles, timing)


__all__ = ["StoreDown", "StoreFull", "StyleEntry", "StyleStore", "open_style_store"]

"""The settings page is the Settings class: docs/settings.md as `make docs` writes it, every
setting in it with a description (a setting added without `make docs` fails here)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from settings_doc import OUT, render  # noqa: E402
from service.settings import Settings  # noqa: E402


def test_the_settings_page_is_written_from_the_settings_class():
    assert OUT.read_text() == render(), "docs/settings.md is out of date: run make docs"
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == [], f"settings without a description: {undescribed}"
    readme = (REPO / "README.md").read_text()
    assert "docs/settings.md" in readme

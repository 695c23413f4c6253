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


def test_the_project_stays_readable_in_an_afternoon():
    """The sizes docs/code.md promises a newcomer: a short README, train.py the loop and its
    helpers beside it, no function longer than a screen."""
    import ast

    lines = lambda path: len((REPO / path).read_text().splitlines())  # noqa: E731
    assert lines("README.md") <= 150
    assert lines("training/train.py") <= 300
    for helper in ("training/data.py", "training/logs.py", "training/checkpoint.py", "training/options.py"):
        assert lines(helper) <= 250, helper
    long = []
    for folder in ("service", "model", "training"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert long == [], f"functions over 60 lines: {long}"

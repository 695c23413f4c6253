"""docs/settings.md from the one Settings class (service/settings.py): every ADAIN_* variable, its
default and what it does, in the class's own sections. `make docs` writes it; a test fails when a
setting changes and the page was not written again.

    .venv/bin/python scripts/settings_doc.py [--check]"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from service.settings import STATE_DIR, Settings  # noqa: E402

OUT = REPO / "docs" / "settings.md"
HEAD = """# Settings

Every setting is an environment variable `ADAIN_<NAME>` (or a flag of `python -m service`), read
once at start by the one `Settings` class in `service/settings.py`. This page is written from that
class by `make docs` (a test fails when they differ): change the class, then run `make docs`. One
more is read before the class exists: `ADAIN_WEIGHTS_DIR` (default `weights`), the folder the
default weights come from (`model/paths.py`).
"""


def sections() -> dict[str, str]:
    """Field name -> the comment heading it stands under in service/settings.py."""
    out, current = {}, ""
    for line in (REPO / "service" / "settings.py").read_text().splitlines():
        if m := re.match(r"^    # (.+)$", line):
            current = m.group(1).split(":")[0]
        elif m := re.match(r"^    (\w+): ", line):
            out[m.group(1)] = current
    return out


def shown(value: object) -> str:
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, Path):
        for base, name in ((STATE_DIR, "STATE_DIR"), (REPO, "")):
            if value.is_relative_to(base):
                return f"`{name + '/' if name else ''}{value.relative_to(base)}`"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def render() -> str:
    where = sections()
    lines, section = [HEAD], None
    for name, field in Settings.model_fields.items():
        if where.get(name, "") != section:
            section = where.get(name, "")
            lines += [f"\n## {section.capitalize() or 'Other'}\n", "| variable | default | what it does |", "|---|---|---|"]
        default = field.default_factory() if field.default_factory else field.default
        what = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `ADAIN_{name.upper()}` | {shown(default)} | {what} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else f"{OUT} is out of date: run make docs")
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(Settings.model_fields)} settings)")

"""Where the bundled weights live. Everything else takes explicit paths."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# ADAIN_WEIGHTS_DIR lets an installed copy (or a container) point at another weights folder.
WEIGHTS_DIR = Path(os.environ.get("ADAIN_WEIGHTS_DIR", REPO_ROOT / "weights"))
VGG_SCALES = WEIGHTS_DIR / "vgg19_normalisation.safetensors"
DECODER = WEIGHTS_DIR / "decoder.safetensors"
PRESETS_DIR = WEIGHTS_DIR / "presets"

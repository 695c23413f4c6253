"""How every test waits: for an event, never for a speed.

A busy machine is slow, not wrong, so no test bounds how long something takes. A test polls for the
state that proves its point (a metric, a job state, a log line) under ``HANG``: a ceiling that only a
hang reaches. Speeds and ratios of timings are printed by bench/, not asserted here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# seconds: minutes past anything a loaded 2-core machine needs (ADAIN_TEST_HANG: shorter, to see a
# test fail quickly against code that hangs)
HANG = float(os.environ.get("ADAIN_TEST_HANG", 300))


def wait_for(condition: Callable[[], T], what: str, ceiling: float = HANG, every: float = 0.05) -> T:
    """Poll ``condition()`` until it returns something true and return that; fail as a hang (naming
    ``what`` was awaited) when ``ceiling`` seconds pass first."""
    deadline = time.monotonic() + ceiling
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {ceiling:g} s for {what}: a hang")
        time.sleep(every)
    return value

"""Micro-batching: network passes of concurrent requests of the same size run as one batch.

A GPU stylizes 8 images at 512² in little more than the time of one, so when several requests
arrive together their passes are worth merging. Job threads (``ADAIN_WORKERS`` of them) decode,
encode styles, prepare their plans and encode the output in parallel; at the network stage each
calls ``submit`` with its plan and blocks. One batching thread takes the oldest waiting plan,
waits up to ``max_wait`` seconds for up to ``max_batch - 1`` more of the same size, runs them as
one ``Stylizer.render`` call and hands each job its image. Other sizes wait for their own batch.
``max_batch`` 1 turns it off (the default on a CPU, where one image already keeps every core busy)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from model.plan import Plan

Render = Callable[[Sequence[Plan]], list[Image.Image]]  # Stylizer.render


@dataclass
class _Item:
    plan: Plan
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Image.Image | None = None
    error: BaseException | None = None


class Batcher:
    def __init__(self, render: Render, max_batch: int, max_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.render = render
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_batch = on_batch or (lambda n: None)
        self._waiting: list[_Item] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, plan: Plan) -> Image.Image:
        """Render one plan in the next batch of its size; blocks until it is done."""
        item = _Item(plan)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is shut down")
            self._waiting.append(item)
            self._cond.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if not self._waiting:
                return None  # closed and nothing left
            size = self._waiting[0].plan.size
            deadline = self._waiting[0].arrived + self.max_wait

            def same() -> list[_Item]:
                return [it for it in self._waiting if it.plan.size == size][:self.max_batch]

            while len(same()) < self.max_batch and not self._closed and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch = same()
            taken = {id(it) for it in batch}
            self._waiting = [it for it in self._waiting if id(it) not in taken]
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                for it, out in zip(batch, self.render([it.plan for it in batch])):
                    it.result = out
                self.on_batch(len(batch))
            except BaseException as e:  # noqa: BLE001 - handed to every waiting job, which re-raises
                for it in batch:
                    it.error = e
            finally:
                for it in batch:
                    it.done.set()

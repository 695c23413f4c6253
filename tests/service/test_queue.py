"""The model queue shares the model fairly: tenants in turn (deterministic order, weights), a
tenant's share of the queue, and pieces of work: a cancelled or timed-out large render stops at
its next tile, so the model is free again at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from helpers import STYLE_A, files, noise_image, png
from service.errors import Cancelled, TooManyRequests
from service.queue import ModelQueue, Turn
from service.tenants import Caller, TenantLimits
from waiting import HANG, wait_for


def caller(name: str, weight: int = 1, depth: int = 8) -> Caller:
    return Caller(name, "user", TenantLimits(weight=weight, queue_depth=depth))


def served_order(submissions: list[Caller]) -> list[str]:
    """With the one worker held by tenant H, submit jobs in this order, then release: the order
    the jobs ran in (no timing involved: each job is queued before the worker is released)."""
    queue = ModelQueue(workers=1, depth=16, timeout=HANG)
    held, release, order = threading.Event(), threading.Event(), []

    def hold(turn: Turn) -> None:
        held.set()
        release.wait(HANG)

    async def main() -> None:
        first = asyncio.ensure_future(queue.run(caller("H"), hold))
        await asyncio.to_thread(held.wait, HANG)
        jobs = []
        for c in submissions:
            jobs.append(asyncio.ensure_future(queue.run(c, lambda turn, name=c.tenant: order.append(name))))
            while queue.waiting < len(jobs):  # queued (its thread waits for its turn) before the next
                await asyncio.sleep(0.005)
        release.set()
        await asyncio.gather(first, *jobs)

    asyncio.run(main())
    queue.shutdown()
    return order


def test_tenants_are_served_in_turn_not_first_come_first_served():
    a, b = caller("A"), caller("B")
    assert served_order([a, a, a, b]) == ["A", "B", "A", "A"]
    c = caller("C")
    assert served_order([a, a, b, b, c]) == ["A", "B", "C", "A", "B"]


def test_a_tenants_weight_is_its_turns_in_a_row():
    a, b = caller("A", weight=2), caller("B")
    assert served_order([a, a, a, a, b, b]) == ["A", "A", "B", "A", "A", "B"]


def test_a_tenant_over_its_share_of_the_queue_gets_429_while_others_get_in():
    queue = ModelQueue(workers=1, depth=8, timeout=HANG)
    release = threading.Event()
    greedy, polite = caller("greedy", depth=2), caller("polite", depth=2)

    async def main() -> None:
        jobs = [asyncio.ensure_future(queue.run(greedy, lambda turn: release.wait(HANG))) for _ in range(3)]
        await asyncio.sleep(0.1)
        with pytest.raises(TooManyRequests) as e:
            await queue.run(greedy, lambda turn: None)
        assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 1 and "greedy" in e.value.detail
        other = asyncio.ensure_future(queue.run(polite, lambda turn: "served"))
        await asyncio.sleep(0.1)
        release.set()
        assert await other == "served"
        await asyncio.gather(*jobs)

    asyncio.run(main())
    queue.shutdown()


def test_between_two_tiles_another_tenant_is_served():
    """A piece-by-piece job gives the slot to a waiting tenant at its checkpoint and resumes after."""
    queue = ModelQueue(workers=1, depth=8, timeout=HANG)
    events: list[str] = []
    started = threading.Event()

    def big(turn: Turn) -> None:
        for i in range(3):
            started.set()
            if i == 0:  # B is queued before the first checkpoint, however slow this machine
                wait_for(lambda: queue.waiting, "B's job to queue")
            events.append(f"tile{i}")
            turn.checkpoint()

    async def main() -> None:
        job = asyncio.ensure_future(queue.run(caller("A"), big))
        await asyncio.to_thread(started.wait, HANG)
        await queue.run(caller("B"), lambda turn: events.append("small"))
        await job

    asyncio.run(main())
    queue.shutdown()
    assert events.index("small") < events.index("tile2") and events[-1] == "tile2"


def test_a_cancelled_tiled_render_stops_at_the_next_tile(stylizer):
    """The real Stylizer drawing a 512x512 image in 64-px tiles (64 cores, 129 steps): cancelled
    during its first tile, it draws no other."""
    queue = ModelQueue(workers=1, depth=2, timeout=HANG)
    tiles = []
    handle = stylizer.decoder.register_forward_hook(lambda *a: tiles.append(1))
    old_tile, stylizer.tile = stylizer.tile, 64
    first_tile = threading.Event()

    def render(turn: Turn) -> None:
        plan = stylizer.prepare(noise_image(512, 512, seed=3), [noise_image(64, 64, seed=4)])

        def progress(done: int, total: int) -> None:
            if tiles and not first_tile.is_set():
                first_tile.set()
                turn.cancel.wait(HANG)  # the client hangs up while the first tile is done
            turn.checkpoint()

        stylizer.render([plan], progress)

    async def main() -> None:
        job = asyncio.ensure_future(queue.run(caller("A"), render))
        await asyncio.to_thread(first_tile.wait, HANG)
        job.cancel()  # as when the client hangs up
        with pytest.raises(asyncio.CancelledError):
            await job
        # the thread stops at its next checkpoint and frees its place
        await asyncio.to_thread(wait_for, lambda: queue.in_flight == 0 and queue.waiting == 0, "the slot freed")

    try:
        asyncio.run(main())
    finally:
        handle.remove()
        stylizer.tile = old_tile
    queue.shutdown()
    assert queue.in_flight == 0 and len(tiles) == 1


def test_a_504_on_a_large_image_frees_the_model_for_the_next_request(make_client, stylizer, monkeypatch):
    """Every core of a 1536x1536 image in 128-px tiles (144 of them) against a 2 s deadline: the
    abandoned render stops at its next tile (the decoder runs at most once more after the 504), so
    the model is free for the next request instead of drawing the rest."""
    monkeypatch.setattr(stylizer, "tile", 128)  # the shared test model, as ADAIN_TILE_SIZE=128 loads it
    client = make_client(request_timeout=2, timeout_per_megapixel=0, workers=1)
    engine = client.app.state.engine
    tiles: list[int] = []
    handle = stylizer.decoder.register_forward_hook(lambda *a: tiles.append(1))
    try:
        r = client.post("/stylize", files=files(png(noise_image(1536, 1536, seed=5)), STYLE_A))
        assert r.status_code == 504, r.text
        drawn = len(tiles)
        wait_for(lambda: engine.queue.in_flight == 0, "the abandoned render to stop")
        assert len(tiles) <= drawn + 1 < 144, (drawn, len(tiles))
    finally:
        handle.remove()
    monkeypatch.setattr(engine.settings, "request_timeout", HANG)  # the next request's deadline is not the point
    small = client.post("/stylize", files=files(png(noise_image(96, 64, seed=6)), STYLE_A))
    assert small.status_code == 200 and small.headers["x-image-width"] == "96"


def test_shutdown_stops_a_running_render_at_its_next_piece():
    queue = ModelQueue(workers=1, depth=2, timeout=HANG)
    pieces, started = [], threading.Event()

    def endless(turn: Turn) -> None:
        while True:
            started.set()
            pieces.append(1)
            time.sleep(0.01)
            turn.checkpoint()

    async def main() -> None:
        job = asyncio.ensure_future(queue.run(caller("A"), endless))
        await asyncio.to_thread(started.wait, HANG)
        await asyncio.to_thread(queue.shutdown)  # returns: the endless job stopped at a checkpoint
        with pytest.raises(Cancelled):
            await job

    asyncio.run(main())

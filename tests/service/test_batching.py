"""Micro-batching: same-size concurrent passes run as one batch and give each request its own
image, as if it had run alone (the same prepared plans, PSNR >= 60 dB in fp32: convolution
kernels may round differently per batch size)."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from helpers import CONTENT, STYLE_A, STYLE_B, files, noise_image, png, psnr
from model.plan import Options
from service.batching import Batcher


@pytest.fixture
def codes(stylizer):
    return [stylizer.encode_style(noise_image(64, 64, seed=s), 64) for s in (2, 3, 4, 5)]


def counting(stylizer):
    calls: list[int] = []
    lock = threading.Lock()

    def render(plans):
        with lock:
            calls.append(len(plans))
        return stylizer.render(plans)

    return render, calls


def test_one_batch_gives_each_plan_its_own_image(stylizer, codes):
    """Four plans of one size, one of them masked and one recoloured (preserve_color), in one pass:
    each image is the one its plan gives alone."""
    render, calls = counting(stylizer)
    batcher = Batcher(render, max_batch=4, max_wait=5.0)
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (0, 0, 24, 32))
    style = noise_image(64, 64, seed=7)
    plans = [
        stylizer.prepare(noise_image(48, 32, seed=10), [codes[0]], Options(alpha=1.0, content_size=0)),
        stylizer.prepare(noise_image(48, 32, seed=11), [codes[1], codes[2]],
                         Options(weights=(1, 3), alpha=0.5, color_match=0.0, content_size=0)),
        stylizer.prepare(noise_image(48, 32, seed=12), [codes[2], codes[3]],
                         Options(alpha=0.8, color_match=1.0, content_size=0), mask=mask),
        stylizer.prepare(noise_image(48, 32, seed=13), [style],
                         Options(preserve_color=True, content_size=0, style_size=64)),
    ]
    try:
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(batcher.submit, plans))
    finally:
        batcher.close()
    assert calls == [4]  # all four in one pass (full batch: no waiting for the deadline)
    alone = [stylizer.render([p])[0] for p in plans]
    for out, own in zip(outs, alone):
        assert out.size == (48, 32) and psnr(out, own) >= 60
    # each got its own style, not a neighbour's
    for i, out in enumerate(outs):
        assert all(psnr(out, other) < 40 for j, other in enumerate(alone) if j != i)


def test_sizes_are_batched_separately_and_the_wait_is_bounded(stylizer, codes):
    render, calls = counting(stylizer)
    seen: list[int] = []
    batcher = Batcher(render, max_batch=8, max_wait=0.2, on_batch=seen.append)
    plans = [stylizer.prepare(noise_image(w, 32, seed=i), [codes[i]], Options(content_size=0))
             for i, w in enumerate((48, 32, 48))]
    try:
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(batcher.submit, plans))
    finally:
        batcher.close()
    assert sorted(calls) == [1, 2] and sorted(seen) == [1, 2]
    assert [o.size for o in outs] == [(48, 32), (32, 32), (48, 32)]


def test_an_error_reaches_every_request_of_the_batch_and_the_batcher_goes_on(stylizer, codes):
    def failing(plans):
        if len(plans) == 2:
            raise RuntimeError("the device fell over")
        return stylizer.render(plans)

    batcher = Batcher(failing, max_batch=2, max_wait=5.0)
    plan = stylizer.prepare(noise_image(32, 32, seed=1), [codes[0]], Options(content_size=0))
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(batcher.submit, plan) for _ in range(2)]
            for f in futures:
                with pytest.raises(RuntimeError, match="fell over"):
                    f.result()
        assert batcher.submit(plan).size == (32, 32)
    finally:
        batcher.close()


def test_the_service_batches_concurrent_requests_and_agrees_with_unbatched(make_client):
    """Through the app: 4 concurrent requests (plain, weighted, masked) with 4 workers and batch_max
    4 share passes, and each answer is the unbatched server's for the same request."""
    mask = Image.new("L", (96, 64), 255)
    mask.paste(0, (48, 0, 96, 64))
    requests = [(files(CONTENT, STYLE_A), {}), (files(CONTENT, STYLE_B), {"alpha": "0.6"}),
                (files(CONTENT, STYLE_A, STYLE_B), {"weights": "1,2"}),
                (files(CONTENT, STYLE_A, STYLE_B, mask=png(mask)), {})]
    batched = make_client(workers=4, batch_max=4, batch_wait_ms=500)
    with ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda r: batched.post("/stylize", files=r[0], data=r[1]), requests))
    assert [r.status_code for r in rs] == [200] * 4
    metrics = batched.get("/metrics").text
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("adain_batch_size_count"))
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("adain_batch_size_sum"))
    assert total == 4 and count < 4, (count, total)
    single = make_client()
    for r, (parts, data) in zip(rs, requests):
        alone = single.post("/stylize", files=parts, data=data)
        assert psnr(Image.open(io.BytesIO(r.content)), Image.open(io.BytesIO(alone.content))) >= 60
